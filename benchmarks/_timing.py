"""Side-by-side timing: alternate two variants, report the median ratio."""

import statistics
import time

import numpy as np


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


def regression_data(rows, features=64):
    """Random float32 `(x, y)` of `rows` rows: what the fit timings train."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype("float32")
    y = rng.normal(size=(rows, 1)).astype("float32")
    return x, y


def one_epoch_fit(model, x, y):
    """Compiles `model` (Adam, MSE) and traces it with one epoch.

    Returns a function that fits one more epoch (batch 256), to be timed.
    """
    model.compile("adam", "mse")
    model.fit(x, y, batch_size=256, epochs=1, verbose=0)  # trace once

    def fit():
        model.fit(x, y, batch_size=256, epochs=1, verbose=0)

    return fit
