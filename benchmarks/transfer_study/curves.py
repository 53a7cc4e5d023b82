"""Per-axis statistics: best factors, their drift and the cost of reuse.

An *axis* is a list of configurations (the same setup, one of width,
depth or data size varied); a *curve* is one configuration's test losses,
one row per seed, one column per factor (`seed_losses`).
"""

import zlib

import numpy as np

BOOTSTRAP_SAMPLES = 1000
TARGET_DRIFT = 2.0


def best_factor(factors, losses):
    """`(best, at_edge)`: the vertex of a parabola in log10(factor).

    The parabola goes through the mean test losses at the lowest grid point
    and its two neighbours, and its vertex is kept between the neighbours. A
    wider least-squares fit would lean away from the steep side (the cliff
    where a too strong penalty collapses the network), the wrong way. When
    the lowest point is a grid end, the end itself is returned, flagged: the
    best factor may lie beyond.
    """
    losses = np.asarray(losses, dtype=float)
    logs = np.log10(factors)
    index = int(np.argmin(losses))
    if index in (0, len(losses) - 1):
        return float(factors[index]), True
    left, middle, right = losses[index - 1 : index + 2]
    curvature = left - 2 * middle + right
    # Unit steps: the grid is even in log10(factor).
    # A diverged neighbour (infinite loss) or a flat stretch: the grid point.
    usable = np.isfinite(curvature) and curvature > 0
    offset = 0.5 * (left - right) / curvature if usable else 0.0
    step = logs[index + 1] - logs[index]
    return float(10 ** (logs[index] + np.clip(offset, -1, 1) * step)), False


def matches(record, config):
    """Whether `record` was trained in the configuration `config` (the
    `Group` fields but the seed, by name)."""
    return all(record[field] == value for field, value in config.items())


def seed_losses(records, config, variant_name, lattice_only=True):
    """`(factors, losses, metrics, collapsed)`, one row per seed.

    `config` holds the `Group` fields but the seed, by name. A diverged run
    (NaN loss) counts as the worst possible. With `lattice_only`, only the
    grid's half-decade lattice: an extra default off it (AdamW's 0.004) is
    for the collapse check, not for locating the best factor.
    """
    chosen = [
        r
        for r in records
        if r["variant"] == variant_name
        and matches(r, config)
        and (not lattice_only or _on_lattice(r))
    ]
    factors = np.array(sorted({r["factor"] for r in chosen}))
    seeds = sorted({r["seed"] for r in chosen})
    shape = (len(seeds), len(factors))
    losses, metrics, collapsed = (
        np.full(shape, np.inf),
        np.zeros(shape),
        (np.zeros(shape)),
    )
    for r in chosen:
        at = seeds.index(r["seed"]), int(np.searchsorted(factors, r["factor"]))
        losses[at] = np.nan_to_num(
            r["test_data_loss"], nan=np.inf, posinf=np.inf
        )
        metrics[at] = r["test_metric"] or 0.0
        collapsed[at] = r["collapsed"]
    return factors, losses, metrics, collapsed


def _on_lattice(record):
    """On the half-decade lattice (a derived record: its source factor)."""
    half_decades = 2 * np.log10(record.get("source_factor", record["factor"]))
    return abs(half_decades - round(half_decades)) < 1e-6


def complete_seeds(records, configs_by_axis):
    """The seeds every configuration of a setup has been trained with
    (none, for no configuration)."""
    configs = [c for configs in configs_by_axis.values() for c in configs]
    if not configs:
        return []
    found = None
    for config in configs:
        seeds = {r["seed"] for r in records if matches(r, config)}
        found = seeds if found is None else found & seeds
    return sorted(found)


def mean_interval(values, rng, samples=BOOTSTRAP_SAMPLES):
    """`[low, high]`: the 95 % bootstrap interval of the mean of `values`.

    The values (one per seed) are resampled with replacement `samples`
    times; the ends are the 2.5 and 97.5 percentiles of the means.
    """
    values = np.asarray(values, dtype=float)
    draws = rng.integers(0, len(values), (samples, len(values)))
    means = values[draws].mean(axis=1)
    return [float(q) for q in np.percentile(means, [2.5, 97.5])]


def entry_rng(key):
    """A bootstrap generator of its own for each entry, seeded by its key.

    An entry's interval then does not depend on which other setups are
    summarized, nor in which order.
    """
    return np.random.default_rng(zlib.crc32(key.encode()))


def axis_entry(curves, key):
    """One variant along one axis: best factors, drift, interval, reuse.

    See `summary.summarize` for the fields. With one seed there is nothing
    to resample: `drift_interval` is `None`. The reuse cost is `None` when
    the smallest model's best factor lies outside the largest model's grid
    (a derived variant's grids shift with the depth, see `derived.py`);
    between two of its grid points, the value is interpolated linearly in
    log10(factor) and `reused_on_grid` is `False`.
    """
    means = [
        (f, losses.mean(axis=0), m.mean(axis=0)) for f, losses, m, _ in curves
    ]
    bests = [best_factor(factors, loss) for factors, loss, _ in means]
    factors = [best for best, _ in bests]
    num_seeds = len(curves[0][1])
    interval = None
    if num_seeds > 1:
        rng = entry_rng(key)
        drifts = []
        for _ in range(BOOTSTRAP_SAMPLES):
            draw = rng.integers(0, num_seeds, num_seeds)
            drifts.append(
                _drift(
                    [
                        best_factor(f, losses[draw].mean(axis=0))[0]
                        for f, losses, _, _ in curves
                    ]
                )
            )
        interval = [float(q) for q in np.percentile(drifts, [2.5, 97.5])]
    plateau_rng = entry_rng(key + "/plateau")
    plateaus = [plateau(f, losses, plateau_rng) for f, losses, _, _ in curves]
    small, large = means[0], means[-1]
    reused = small[0][int(np.argmin(small[1]))]
    best_at = int(np.argmin(large[1]))
    lowest = [float(np.min(loss)) for _, loss, _ in means]
    inside = large[0][0] * (1 - 1e-9) <= reused <= large[0][-1] * (1 + 1e-9)
    return {
        "best_factors": factors,
        "at_edge": [edge for _, edge in bests],
        "drift": _drift(factors),
        "drift_interval": interval,
        "plateaus": plateaus,
        "plateau_gap": plateau_gap(plateaus),
        "best_test_data_loss": lowest,
        "depth_of_minimum": [
            float(min(loss[0], loss[-1]) / low - 1)
            for (_, loss, _), low in zip(means, lowest, strict=True)
        ],
        "reused_factor": float(reused),
        "reused_on_grid": bool(np.any(np.isclose(large[0], reused))),
        "reused_loss_increase": float(
            value_at(large[0], large[1], reused) / large[1][best_at] - 1
        )
        if inside
        else None,
        "reused_metric_change": float(
            value_at(large[0], large[2], reused) - large[2][best_at]
        )
        if inside
        else None,
    }


def plateau(factors, losses, rng):
    """`[low, high]`: the grid factors the seeds cannot tell from the best.

    The best is the grid factor of the lowest mean test loss. Another is
    in its plateau when the 95 % bootstrap interval of the mean paired
    difference `loss(f) - loss(best)` (seeds resampled, the same draw for
    every factor) reaches down to zero: its lower end is at most zero. A
    diverged run (infinite loss) keeps its factor out (the best, even
    diverged, is its own plateau). With one seed there
    is nothing to resample: the plateau is the best factor alone. The
    plateau is reported as its smallest and largest factor.
    """
    losses = np.asarray(losses, dtype=float)
    best = int(np.argmin(losses.mean(axis=0)))
    num_seeds = len(losses)
    inside = [best]
    if num_seeds > 1:
        draws = rng.integers(0, num_seeds, (BOOTSTRAP_SAMPLES, num_seeds))
        differences = losses - losses[:, best : best + 1]
        finite = np.all(np.isfinite(differences), axis=0)
        means = np.where(finite, differences, 0.0)[draws].mean(axis=1)
        lower = np.percentile(means, 2.5, axis=0)
        inside += [
            i for i in range(len(factors)) if finite[i] and lower[i] <= 0
        ]
    return [float(factors[min(inside)]), float(factors[max(inside)])]


def plateau_gap(plateaus):
    """How far apart plateaus lie: `1.0` if one factor is in them all.

    Else the smallest ratio, largest over smallest, of one factor chosen in
    each: the largest lower end over the smallest upper end.
    """
    return float(
        max(1.0, max(p[0] for p in plateaus) / min(p[1] for p in plateaus))
    )


def value_at(factors, values, factor):
    """`values` at `factor`: exact on the grid, else linear in log10."""
    return float(np.interp(np.log10(factor), np.log10(factors), values))


def _drift(factors):
    return float(max(factors) / min(factors))
