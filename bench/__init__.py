"""forkpoint's benchmark suite: ``python -m bench.run`` (``make bench``) writes bench/RESULTS.md.

Every contender runs in one process, alternating repetition by repetition, and
the report gives medians plus the median of per-repetition ratios: the machine
is noisy, ratios taken within one repetition are what count.
"""
