from fluxomail.ids import new_id


def test_ids_sort_by_time():
    early = new_id("sends", at_ms=1_700_000_000_000)
    late = new_id("sends", at_ms=1_700_000_000_001)
    assert early < late
    assert early.startswith("sends_") and len(early) == len("sends_") + 26


def test_ids_made_in_the_same_millisecond_keep_their_order():
    ids = [new_id("sends", at_ms=1_800_000_000_000) for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
