"""From the run records to best factors, drifts and the cost of reuse."""

import numpy as np

from transfer_study.settings import (
    AXES,
    L2_VARIANTS,
    SETUPS,
    plain_variants,
    summarized_variants,
)

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
        and all(r[field] == value for field, value in config.items())
        and (_on_lattice(r) or not lattice_only)
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
        losses[at] = np.nan_to_num(r["test_data_loss"], nan=np.inf)
        metrics[at] = r["test_metric"] or 0.0
        collapsed[at] = r["collapsed"]
    return factors, losses, metrics, collapsed


def _on_lattice(record):
    half_decades = 2 * np.log10(record["factor"])
    return abs(half_decades - round(half_decades)) < 1e-6


def axis_configs(data, optimizer, settings):
    """Per axis, the configurations along it, smallest model first."""
    width, depth = settings.reference
    sweep_size, other_size = settings.num_train[data]

    def config(w, d, n):
        return {
            "data": data,
            "optimizer": optimizer,
            "width": w,
            "depth": d,
            "num_train": n,
        }

    return {
        "width": [config(w, depth, sweep_size) for w in settings.widths],
        "depth": [config(width, d, sweep_size) for d in settings.depths],
        "data size": [
            config(width, depth, n) for n in sorted((sweep_size, other_size))
        ],
    }


def summarize(records, settings):
    """Best factors and their drift, with intervals; reuse; collapse.

    Per setup (data set and optimizer) and variant, for each axis (width,
    depth, data size; data size only for the `num_examples` variant):

    - `best_factors` of the configurations along the axis (smallest model
      first), located on the mean test data loss over the seeds by
      `best_factor`, and `at_edge` (the best is a grid end, so a drift is a
      bound only);
    - `drift` (largest / smallest best factor) and `drift_interval`, the
      95 % bootstrap interval of the drift: the seeds are resampled with
      replacement, the same draw for every configuration of the axis (a
      seed fixes the batch order and the initializer seeds of all of them);
    - `best_test_data_loss` per configuration (the lowest mean over the
      grid) and `depth_of_minimum`: how far, relative, the loss at the grid
      ends lies above it (the smaller end's);
    - reusing the smallest model's best grid factor on the largest:
      `reused_loss_increase` (relative) and `reused_metric_change`, both
      against the largest model's own best grid factor.

    Per setup and depth, the share of seeds collapsed at each variant's
    default factor. Over setups: `worst_drift` per variant (its largest
    drift over every setup and axis it is trained on), `worst_drift_upper`
    (the largest upper interval end) and `worst_reused_loss_increase`;
    `recommended`: the coupled variant whose worst drift over Adam and SGD,
    on both data sets and all three axes, is smallest; `within_target`
    says whether that drift is at most 2x with no best factor at a grid
    end, and `worst_drift_upper` how far the intervals reach.
    """
    rng = np.random.default_rng(0)
    setups = []
    for data, optimizer in SETUPS:
        configs_by_axis = axis_configs(data, optimizer, settings)
        scales = []
        for variant in summarized_variants(optimizer):
            row = {"variant": variant.name}
            for axis, configs in configs_by_axis.items():
                if variant.num_examples and axis != "data size":
                    continue
                curves = [
                    seed_losses(records, c, variant.name) for c in configs
                ]
                row[axis] = _axis_entry(curves, rng)
            scales.append(row)
        setups.append(
            {
                "data": data,
                "optimizer": optimizer,
                "scales": scales,
                "collapse_at_default_by_depth": _collapse_by_depth(
                    records, configs_by_axis["depth"], optimizer
                ),
            }
        )
    summary = {"setups": setups}
    summary["worst_drift"] = _over_setups(setups, "drift", max)
    summary["worst_drift_upper"] = _over_setups(
        setups, "drift_interval", lambda values: max(v[1] for v in values)
    )
    summary["worst_reused_loss_increase"] = _over_setups(
        setups, "reused_loss_increase", max
    )
    summary["any_at_edge"] = _over_setups(
        setups, "at_edge", lambda values: any(any(v) for v in values)
    )
    summary["recommended"] = _recommended(summary)
    return summary


def _axis_entry(curves, rng):
    """One variant along one axis; see `summarize`."""
    means = [
        (f, losses.mean(axis=0), m.mean(axis=0)) for f, losses, m, _ in curves
    ]
    bests = [best_factor(factors, loss) for factors, loss, _ in means]
    factors = [best for best, _ in bests]
    num_seeds = len(curves[0][1])
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
    small, large = means[0], means[-1]
    reused = small[0][int(np.argmin(small[1]))]
    at = int(np.flatnonzero(large[0] == reused)[0])
    best_at = int(np.argmin(large[1]))
    lowest = [float(np.min(loss)) for _, loss, _ in means]
    return {
        "best_factors": factors,
        "at_edge": [edge for _, edge in bests],
        "drift": _drift(factors),
        "drift_interval": [
            float(q) for q in np.percentile(drifts, [2.5, 97.5])
        ],
        "best_test_data_loss": lowest,
        "depth_of_minimum": [
            float(min(loss[0], loss[-1]) / low - 1)
            for (_, loss, _), low in zip(means, lowest, strict=True)
        ],
        "reused_factor": float(reused),
        "reused_loss_increase": float(large[1][at] / large[1][best_at] - 1),
        "reused_metric_change": float(large[2][at] - large[2][best_at]),
    }


def _drift(factors):
    return float(max(factors) / min(factors))


def _collapse_by_depth(records, depth_configs, optimizer):
    """Per depth and variant, the share of seeds collapsed at the default."""
    collapse = {}
    for config in depth_configs:
        rates = {}
        for variant in plain_variants(optimizer):
            factors, _, _, collapsed = seed_losses(
                records, config, variant.name, lattice_only=False
            )
            default = variant.default_factor
            index = int(np.flatnonzero(factors == default)[0])
            rates[variant.name] = float(collapsed[:, index].mean())
        collapse[str(config["depth"])] = rates
    return collapse


def _over_setups(setups, field, reduce):
    """Per variant, `reduce` of `field` over every setup and axis."""
    values = {}
    for setup in setups:
        for row in setup["scales"]:
            values.setdefault(row["variant"], []).extend(
                row[axis][field] for axis in AXES if axis in row
            )
    return {name: reduce(found) for name, found in values.items()}


def _recommended(summary):
    """The coupled variant with the smallest worst drift, and how far."""
    worst = summary["worst_drift"]
    name = min((v.name for v in L2_VARIANTS), key=worst.__getitem__)
    return {
        "variant": name,
        "worst_drift": worst[name],
        "worst_drift_upper": summary["worst_drift_upper"][name],
        "within_target": worst[name] <= TARGET_DRIFT
        and not summary["any_at_edge"][name],
        "target": TARGET_DRIFT,
    }
