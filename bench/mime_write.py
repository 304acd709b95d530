"""Microbenchmark of writing a send's MIME message: `python -m bench.mime_write`.

CPU microseconds (process time) per message for the benchmark's small body and its 10 KB HTML
body, built as sends.services builds them: Django's message() and sends.mime.as_bytes (what
every message went through before the direct writer), then sends.mime.message_bytes (the
direct writer for the usual shape).

`python -m bench.mime_write --sends [--html] --db NAME --redis-db N`: whole sends instead, in
one process with bench.profile's setup, in blocks of 150 with the direct writer off and on in
turn (12 of each): CPU ms per send, and the median of the paired differences.
"""

import json
import os
import statistics
import sys
import time


def messages() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxomail.settings")
    import django

    django.setup()
    from bench.run import HTML_BODY, SMALL_BODY
    from sends import mime

    def email(body: dict) -> mime.Email:
        message = mime.Email(
            subject=body["subject"],
            body=body["content"],
            from_email="Bench <bench@example.com>",
            to=[body["to"]],
            headers={
                "Message-ID": "<177000000000.12345.1234567890123456789@example.com>",
                "Feedback-ID": "snd_0123456789abcdefghij:bench:default:fluxomail",
            },
        )
        message.attach_alternative(body["htmlContent"], "text/html")
        return message

    ways = {
        "message()+as_bytes": lambda message: mime.as_bytes(message.message()),
        "message_bytes": mime.message_bytes,
    }
    rounds, per_round = 7, 2000
    for name, body in (("small", SMALL_BODY), ("html 10 KB", HTML_BODY)):
        message = email(body)
        for way, write in ways.items():
            times = []
            for _ in range(rounds):
                started = time.process_time()
                for _ in range(per_round):
                    write(message)
                times.append((time.process_time() - started) * 1e6 / per_round)
            print(f"{name:11} {way:19} {statistics.median(times):7.1f} CPU µs (median of {rounds})")


def sends(rest: list[str]) -> None:
    from bench.profile import in_process_client, post_send
    from bench.run import HTML_BODY, SMALL_BODY, SmtpCounter, parse_args

    html = "--html" in rest
    body = json.dumps(HTML_BODY if html else SMALL_BODY)
    args = parse_args([arg for arg in rest if arg != "--html"])
    smtp = SmtpCounter()
    try:
        client, token = in_process_client(args, smtp, "mime_write")
        from sends import mime

        direct = mime._direct_bytes

        def send() -> None:
            assert post_send(client, token, body).status_code == 200

        for _ in range(30):  # warm caches, connections and imports
            send()
        spent: dict[str, list[float]] = {"message()": [], "direct": []}
        for _ in range(12):
            for way in spent:
                mime._direct_bytes = direct if way == "direct" else (lambda email: None)
                started = time.process_time()
                for _ in range(150):
                    send()
                spent[way].append((time.process_time() - started) * 1000 / 150)
        mime._direct_bytes = direct
        for way, figures in spent.items():
            print(f"{way:9} median {statistics.median(figures):.2f} CPU ms per send")
        paired = [a - b for a, b in zip(spent["message()"], spent["direct"], strict=True)]
        print(f"saved: median of the paired differences {statistics.median(paired):.2f} ms")
    finally:
        smtp.stop()


def main() -> int:
    if "--sends" in sys.argv:
        sends([arg for arg in sys.argv[1:] if arg != "--sends"])
    else:
        messages()
    return 0


if __name__ == "__main__":
    sys.exit(main())
