from datetime import UTC, datetime

from fluxomail.ids import first_id_at, new_id


def test_ids_sort_by_time():
    early = new_id("sends", at_ms=1_700_000_000_000)
    late = new_id("sends", at_ms=1_700_000_000_001)
    assert early < late
    assert early.startswith("sends_") and len(early) == len("sends_") + 26


def test_ids_made_in_the_same_millisecond_keep_their_order():
    ids = [new_id("sends", at_ms=1_800_000_000_000) for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


def test_first_id_at_bounds_the_ids_made_from_that_millisecond_on():
    moment = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)
    ms = 1_795_521_600_123  # moment, in milliseconds
    floor = first_id_at("sends", moment)
    assert new_id("sends", at_ms=ms - 1) < floor
    assert all(floor <= new_id("sends", at_ms=ms) for _ in range(100))
    assert floor < new_id("sends", at_ms=ms + 1)
