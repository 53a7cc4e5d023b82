"""A synthetic low-signal tabular data set, generated, never downloaded.

It imitates the data of tournament-style finance competitions: many weak
features binned into five levels, a target that is mostly noise, binned the
same way, and predictions scored by the correlation of their ranks with the
target. A deep network under too strong a weight penalty collapses to one
constant prediction on such data: the case this package is about.
"""

import numpy as np

_LEVELS = np.array([0.0, 0.25, 0.5, 0.75, 1.0], dtype="float32")
# Share of rows in each target level, from lowest to highest.
_TARGET_SHARES = np.array([0.05, 0.2, 0.5, 0.2, 0.05])


def make_low_signal_tabular(
    num_train=16000, num_test=4000, num_features=64, signal=0.15, seed=0
):
    """Returns `(x_train, y_train), (x_test, y_test)` of low-signal data.

    Each feature is a noisy view of one of a few hidden factors, binned into
    the five levels `0, 0.25, 0.5, 0.75, 1`. The target is a weak mix of
    linear and interaction terms of those factors plus Gaussian noise, binned
    into the same levels with shares 5/20/50/20/5 %. `signal` is the standard
    deviation of the signal part relative to the noise, so the best possible
    correlation is about `signal / sqrt(1 + signal**2)` before binning.

    Examples:
        >>> (x, y), (x_test, y_test) = make_low_signal_tabular(100, 50, 8)
        >>> x.shape, y.shape, x_test.shape, sorted(set(y.tolist()))
        ((100, 8), (100,), (50, 8), [0.0, 0.25, 0.5, 0.75, 1.0])

    Args:
        num_train: Number of training rows. Defaults to `16000`.
        num_test: Number of test rows. Defaults to `4000`.
        num_features: Number of features. Defaults to `64`.
        signal: Non-negative float, the signal-to-noise ratio of the target.
            Defaults to `0.15`.
        seed: Integer seed; the same seed gives the same arrays. Defaults
            to `0`.

    Returns:
        Two tuples of float32 arrays, features of shape
        `(rows, num_features)` and targets of shape `(rows,)`.
    """
    rng = np.random.default_rng(seed)
    num_rows = num_train + num_test
    num_factors = max(2, num_features // 8)
    factors = rng.normal(size=(num_rows, num_factors))
    loadings = rng.normal(size=(num_factors, num_features))
    features = factors @ loadings / np.sqrt(num_factors)
    features += rng.normal(size=features.shape)

    weights = rng.normal(size=num_factors)
    truth = factors @ weights + factors[:, 0] * factors[:, 1]
    truth = (truth - truth.mean()) / truth.std()
    target = signal * truth + rng.normal(size=num_rows)

    x = np.stack([_bin(column) for column in features.T], axis=1)
    y = _bin(target, _TARGET_SHARES)
    return (x[:num_train], y[:num_train]), (x[num_train:], y[num_train:])


def _bin(values, shares=None):
    """Bins `values` by rank into the five levels with the given shares."""
    shares = np.full(len(_LEVELS), 0.2) if shares is None else shares
    edges = np.quantile(values, np.cumsum(shares)[:-1])
    return _LEVELS[np.searchsorted(edges, values, side="right")]


def rank_correlation(y_true, y_pred):
    """Pearson correlation of the ranks of `y_pred` with `y_true`.

    Ties share their average rank, so exactly constant predictions give
    `nan` (no ranking at all) rather than an arbitrary number.

    Examples:
        >>> rank_correlation([0.0, 0.5, 1.0], [0.1, 0.7, 0.2])
        0.5
        >>> rank_correlation([0.0, 0.5, 1.0], [0.3, 0.3, 0.3])
        nan

    Args:
        y_true: Array of targets.
        y_pred: Array of predictions of the same length.

    Returns:
        A Python float in `[-1, 1]`, or `nan`.
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    ranks = _average_ranks(np.asarray(y_pred, dtype=np.float64).ravel())
    if np.ptp(ranks) == 0 or np.ptp(y_true) == 0:
        return float("nan")
    return float(np.corrcoef(ranks, y_true)[0, 1])


def _average_ranks(values):
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts_group = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    ranks[order] = ((starts + ends - 1) / 2)[group]
    return ranks
