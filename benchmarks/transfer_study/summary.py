"""From the run records to best factors, drifts and the cost of reuse."""

import numpy as np

from transfer_study.derived import CANDIDATE_AXES, with_derived_records
from transfer_study.settings import (
    AXES,
    L2_VARIANTS,
    SETUPS,
    plain_variants,
    summarized_variants,
    trains_derived,
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
    """On the half-decade lattice (a derived record: its source factor)."""
    half_decades = 2 * np.log10(record.get("source_factor", record["factor"]))
    return abs(half_decades - round(half_decades)) < 1e-6


def axis_configs(setup, settings):
    """Per axis, the configurations along it, smallest model first."""
    shapes = settings.shapes_of(setup)
    width, depth = shapes.reference
    sweep_size, other_size = settings.num_train[setup.data]

    def config(w, d, n):
        return {
            **setup._asdict(),
            "width": w,
            "depth": d,
            "num_train": n,
        }

    return {
        "width": [config(w, depth, sweep_size) for w in shapes.widths],
        "depth": [config(width, d, sweep_size) for d in shapes.depths],
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
    candidate_rng = np.random.default_rng(2)
    records = with_derived_records(records)
    setups = []
    for setup in SETUPS:
        configs_by_axis = axis_configs(setup, settings)
        seeds = complete_seeds(records, configs_by_axis)
        if not seeds:
            continue
        chosen = [r for r in records if r["seed"] in seeds]
        scales = []
        for variant in summarized_variants(setup):
            row = {"variant": variant.name}
            for axis, configs in configs_by_axis.items():
                if variant.num_examples and axis != "data size":
                    continue
                curves = [seed_losses(chosen, c, variant.name) for c in configs]
                row[axis] = _axis_entry(curves, rng)
            scales.append(row)
        candidates = (
            []
            if setup.optimizer == "adamw"
            else _candidate_rows(chosen, configs_by_axis, candidate_rng)
        )
        setups.append(
            {
                **setup._asdict(),
                "seeds": seeds,
                "scales": scales,
                "candidates": candidates,
                "collapse_at_default_by_depth": _collapse_by_depth(
                    chosen, configs_by_axis["depth"], setup
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
    summary["candidates"] = candidate_summary(setups)
    summary["baselines"] = baselines(records, settings)
    summary["across_families"] = across_families(records, settings, rng)
    return summary


def _candidate_rows(records, configs_by_axis, rng):
    """The candidate rules (`derived.CANDIDATES`) along their axes."""
    rows = []
    for name, axes in CANDIDATE_AXES.items():
        row = {"variant": name}
        for axis in axes:
            curves = [
                seed_losses(records, c, name) for c in configs_by_axis[axis]
            ]
            row[axis] = _axis_entry(curves, rng)
        rows.append(row)
    return rows


OPTIMIZER_RULE = {"adam": "none/kernels", "sgd": "none/kernels^2"}
"""The depth exponent by optimizer: 1 under Adam, 2 under SGD."""


def candidate_summary(setups):
    """Worst drift of each candidate rule over the coupled setups.

    Beside the candidates themselves, `by optimizer` combines them:
    `none/kernels` under Adam and `none/kernels^2` under SGD.
    """
    coupled = [s for s in setups if s["optimizer"] != "adamw"]
    pickers = {name: (lambda setup, name=name: name) for name in CANDIDATE_AXES}
    pickers["by optimizer"] = lambda setup: OPTIMIZER_RULE[setup["optimizer"]]
    found = []
    for rule, pick in pickers.items():
        entries = []
        for setup in coupled:
            rows = {
                row["variant"]: row
                for row in setup["scales"] + setup["candidates"]
            }
            row = rows[pick(setup)]
            entries += [row[axis] for axis in AXES if axis in row]
        if not entries:
            continue
        worst = max(entry["drift"] for entry in entries)
        found.append(
            {
                "rule": rule,
                "worst_drift": worst,
                "worst_drift_upper": max(
                    entry["drift_interval"][1] for entry in entries
                ),
                "within_target": worst <= TARGET_DRIFT
                and not any(any(entry["at_edge"]) for entry in entries),
                "comparisons": len(entries),
                "within_2x": sum(
                    entry["drift"] <= TARGET_DRIFT for entry in entries
                ),
            }
        )
    return found


def complete_seeds(records, configs_by_axis):
    """The seeds every configuration of a setup has been trained with."""
    configs = [c for configs in configs_by_axis.values() for c in configs]
    found = None
    for config in configs:
        seeds = {
            r["seed"]
            for r in records
            if all(r[field] == value for field, value in config.items())
        }
        found = seeds if found is None else found & seeds
    return sorted(found)


PUBLISHED_ACCURACY = {"mlp": 0.68, "cnn": 0.94}
"""MNIST-1D's own README: test accuracy of its MLP and CNN, unpenalized."""


def baselines(records, settings):
    """The unpenalized members of the reference models, per MNIST-1D setup.

    Per family and optimizer: the mean test accuracy over the seeds, its
    95 % bootstrap interval, and the published accuracy where there is one.
    """
    rng = np.random.default_rng(1)
    found = []
    for setup in SETUPS:
        if not trains_derived(setup.data):
            continue
        width, depth = settings.shapes_of(setup).reference
        accuracies = np.array(
            [
                r["test_metric"]
                for r in sorted(records, key=lambda r: r["seed"])
                if r["variant"] == "unpenalized"
                and (r["family"], r["data"], r["optimizer"]) == setup
                and (r["width"], r["depth"]) == (width, depth)
                and r["num_train"] == settings.num_train[setup.data][0]
            ]
        )
        if not len(accuracies):
            continue
        draws = rng.integers(
            0, len(accuracies), (BOOTSTRAP_SAMPLES, len(accuracies))
        )
        means = accuracies[draws].mean(axis=1)
        found.append(
            {
                **setup._asdict(),
                "width": width,
                "depth": depth,
                "seeds": len(accuracies),
                "test_accuracy": float(accuracies.mean()),
                "test_accuracy_interval": [
                    float(q) for q in np.percentile(means, [2.5, 97.5])
                ],
                "published_accuracy": PUBLISHED_ACCURACY.get(setup.family),
            }
        )
    return found


def across_families(records, settings, rng):
    """Per MNIST-1D optimizer and variant: each family's reference best.

    The best factor of each family's reference model (at the full data
    size), and their drift (largest / smallest) with a 95 % bootstrap
    interval: the seeds common to the families are resampled, one draw for
    all of them. Only variants trained or derived on every family.
    """
    found = []
    for optimizer in ("adam", "sgd", "adamw"):
        setups = [
            s
            for s in SETUPS
            if trains_derived(s.data) and s.optimizer == optimizer
        ]
        configs = {}
        for setup in setups:
            width, depth = settings.shapes_of(setup).reference
            configs[setup.family] = {
                **setup._asdict(),
                "width": width,
                "depth": depth,
                "num_train": settings.num_train[setup.data][0],
            }
        seeds = complete_seeds(records, {"reference": list(configs.values())})
        if len(configs) < 2 or not seeds:
            continue
        chosen = [r for r in records if r["seed"] in seeds]
        names = [
            v.name
            for v in summarized_variants(setups[0])
            if not v.num_examples
            and all(v in summarized_variants(s) for s in setups)
        ]
        for name in names:
            curves = [seed_losses(chosen, c, name) for c in configs.values()]
            entry = _axis_entry(curves, rng)
            found.append(
                {
                    "data": setups[0].data,
                    "optimizer": optimizer,
                    "variant": name,
                    "families": list(configs),
                    "seeds": seeds,
                    **{
                        key: entry[key]
                        for key in (
                            "best_factors",
                            "at_edge",
                            "drift",
                            "drift_interval",
                        )
                    },
                }
            )
    return found


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
        "reused_loss_increase": float(
            _loss_at(large[0], large[1], reused) / large[1][best_at] - 1
        ),
        "reused_metric_change": float(
            _loss_at(large[0], large[2], reused) - large[2][best_at]
        ),
    }


def _loss_at(factors, values, factor):
    """`values` at `factor`: exact on the grid, else linear in log10.

    A derived variant's grids (see `derived.py`) differ between models of
    different depths, so a reused factor can fall between grid points (or
    beyond the ends, where the end's value is taken).
    """
    logs = np.log10(factors)
    return float(np.interp(np.log10(factor), logs, values))


def _drift(factors):
    return float(max(factors) / min(factors))


def _collapse_by_depth(records, depth_configs, setup):
    """Per depth and variant, the share of seeds collapsed at the default.

    Only the variants trained at their default factor (a derived variant's
    default is not one of its source's grid points).
    """
    collapse = {}
    for config in depth_configs:
        rates = {}
        for variant in plain_variants(setup):
            if trains_derived(setup.data) and variant.uniform:
                continue
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
