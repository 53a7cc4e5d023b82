"""Side-by-side timing: alternate two variants, report the median ratio."""

import statistics
import time


def median_ratio(run_candidate, run_baseline, pairs):
    """Times `pairs` alternating runs of each; returns (ratio, a, b).

    The order inside each pair alternates too, so that a slow-down of the
    machine at one moment hits both variants alike. `ratio` is the median
    of the per-pair ratios candidate / baseline; `a` and `b` are the lists
    of candidate and baseline seconds.
    """
    candidate_seconds, baseline_seconds = [], []
    for index in range(pairs):
        order = [
            (run_candidate, candidate_seconds),
            (run_baseline, baseline_seconds),
        ]
        if index % 2:
            order.reverse()
        for run, seconds in order:
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
    ratios = [
        a / b for a, b in zip(candidate_seconds, baseline_seconds, strict=True)
    ]
    return statistics.median(ratios), candidate_seconds, baseline_seconds
