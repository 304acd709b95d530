"""`make bench`: Fluxomail's throughput against the stack's own limit (see bench/run.py)."""
