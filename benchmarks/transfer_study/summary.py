"""From the run records to best factors, drifts and the cost of reuse."""

import numpy as np

from transfer_study.settings import (
    AXES,
    DEFAULT_FACTOR,
    PLAIN_SCALES,
    SETUPS,
    VARIANTS,
)


def best_factor(factors, losses):
    """`(best, at_edge)`: the argmin refined by a parabola in log10."""
    logs = np.log10(factors)
    index = int(np.argmin(losses))
    if index in (0, len(losses) - 1):
        return float(factors[index]), True
    left, middle, right = losses[index - 1 : index + 2]
    curvature = left - 2 * middle + right
    offset = 0.0 if curvature <= 0 else 0.5 * (left - right) / curvature
    step = logs[index + 1] - logs[index]
    return float(10 ** (logs[index] + np.clip(offset, -1, 1) * step)), False


def curve(records, config, variant_name):
    """Mean over seeds per factor: `(factors, loss, metric, collapse)`.

    `config` holds the `Group` fields but the seed, by name.
    """
    chosen = [
        r
        for r in records
        if all(r[field] == value for field, value in config.items())
        and r["variant"] == variant_name
    ]
    factors = sorted({r["factor"] for r in chosen})
    by_factor = [[r for r in chosen if r["factor"] == f] for f in factors]
    # A diverged run (NaN loss) counts as the worst possible.
    return (
        np.array(factors),
        np.nan_to_num(
            [np.mean([r["test_data_loss"] for r in rs]) for rs in by_factor],
            nan=np.inf,
        ),
        np.array(
            [np.mean([r["test_metric"] or 0.0 for r in rs]) for rs in by_factor]
        ),
        np.array([np.mean([r["collapsed"] for r in rs]) for rs in by_factor]),
    )


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
    """Best factors, drifts, the cost of reusing a factor, collapse rates.

    Per setup (data set and optimizer) and variant, for each axis (width,
    depth, data size; data size only for the `num_examples` variants):
    `best_factors` of the configurations along the axis (smallest model
    first), `at_edge` (the best is a grid end, so the drift is a lower
    bound), `drift` (largest / smallest best factor), the lowest mean test
    data loss of each configuration and the test metric there, and the
    reuse of the smallest model's best grid factor on the largest model:
    `reused_loss_increase` (relative) and `reused_metric_change`, both
    against the largest model's own best grid factor. Per setup and depth,
    the share of seeds collapsed at factor 0.01 under each plain scale.
    `overall_drift`: per variant, the geometric mean of its drifts;
    `worst_reused_metric_change`: its most negative metric change.
    """
    summary = {"setups": []}
    for data, optimizer in SETUPS:
        configs_by_axis = axis_configs(data, optimizer, settings)
        scales = []
        for variant in VARIANTS:
            row = {"variant": variant.name}
            for axis, configs in configs_by_axis.items():
                if variant.num_examples and axis != "data size":
                    continue
                curves = [curve(records, c, variant.name) for c in configs]
                row[axis] = _axis_entry(curves)
            scales.append(row)
        summary["setups"].append(
            {
                "data": data,
                "optimizer": optimizer,
                "scales": scales,
                "collapse_at_default_by_depth": _collapse_by_depth(
                    records, configs_by_axis["depth"], settings
                ),
            }
        )
    setups = summary["setups"]
    summary["overall_drift"] = _over_all_axes(setups, "drift", _geometric_mean)
    summary["worst_reused_metric_change"] = _over_all_axes(
        setups, "reused_metric_change", min
    )
    return summary


def _axis_entry(curves):
    """One variant along one axis; see `summarize`."""
    bests = [best_factor(factors, loss) for factors, loss, _, _ in curves]
    factors = [best for best, _ in bests]
    small, large = curves[0], curves[-1]
    reused = small[0][int(np.argmin(small[1]))]
    at = int(np.flatnonzero(large[0] == reused)[0])
    best_at = int(np.argmin(large[1]))
    lowest = [int(np.argmin(c[1])) for c in curves]
    return {
        "best_factors": factors,
        "at_edge": [edge for _, edge in bests],
        "best_test_data_loss": [
            float(c[1][i]) for c, i in zip(curves, lowest, strict=True)
        ],
        "best_test_metric": [
            float(c[2][i]) for c, i in zip(curves, lowest, strict=True)
        ],
        "drift": max(factors) / min(factors),
        "reused_factor": float(reused),
        "reused_loss_increase": float(large[1][at] / large[1][best_at] - 1),
        "reused_metric_change": float(large[2][at] - large[2][best_at]),
    }


def _collapse_by_depth(records, depth_configs, settings):
    """Per depth and plain scale, the share of seeds collapsed at 0.01."""
    collapse = {}
    for config in depth_configs:
        rates = {}
        for scale in PLAIN_SCALES:
            factors, _, _, collapsed = curve(records, config, scale)
            rates[scale] = float(
                collapsed[int(np.flatnonzero(factors == DEFAULT_FACTOR)[0])]
            )
        collapse[str(config["depth"])] = rates
    return collapse


def _over_all_axes(setups, field, reduce):
    """Per variant, `reduce` of `field` over every setup and axis."""
    result = {}
    for variant in VARIANTS:
        rows = [
            next(r for r in setup["scales"] if r["variant"] == variant.name)
            for setup in setups
        ]
        result[variant.name] = reduce(
            [row[axis][field] for row in rows for axis in AXES if axis in row]
        )
    return result


def _geometric_mean(values):
    return float(np.exp(np.mean(np.log(values))))
