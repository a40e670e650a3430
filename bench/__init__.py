"""mesh's benchmarks: `python -m bench <name>` (see `python -m bench --help`).

Each benchmark measures mesh against a plain aio-pika baseline in the same run, so the figures
are comparable on a noisy machine: what matters is the ratio, not the absolute numbers.
"""
