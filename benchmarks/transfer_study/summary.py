"""From the run records to the study's summary: per setup, over setups."""

import numpy as np

from transfer_study.comparisons import (
    across_families,
    baselines,
    candidate_rows,
    candidate_summary,
    gain_over_unpenalized,
)
from transfer_study.curves import (
    TARGET_DRIFT,
    axis_entry,
    complete_seeds,
    seed_losses,
)
from transfer_study.derived import with_derived_records
from transfer_study.settings import (
    AXES,
    L2_VARIANTS,
    SETUPS,
    plain_variants,
    summarized_variants,
    trains_derived,
)


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

    A setup (family, data set, optimizer) is summarized over the seeds that
    every one of its configurations has been trained with (`seeds`); it is
    `complete` when those are all of the study's. Per setup and variant, for
    each axis (width, depth, data size; data size only for the
    `num_examples` variants), `curves.axis_entry` gives:

    - `best_factors` of the configurations along the axis (smallest model
      first), located on the mean test data loss over the seeds by
      `best_factor`, and `at_edge` (the best is a grid end, so a drift is a
      bound only);
    - `drift` (largest / smallest best factor) and `drift_interval`, the
      95 % bootstrap interval of the drift: the seeds are resampled with
      replacement, the same draw for every configuration of the axis (a
      seed fixes the batch order and the initializer seeds of all of them);
    - `plateaus`, per configuration the smallest and largest grid factor
      that the seeds cannot tell from its best (`curves.plateau`), and
      `plateau_gap`: `1.0` when one factor lies in every plateau of the
      axis (it carries within the seed noise), else how far apart they are
      (`curves.plateau_gap`);
    - `best_test_data_loss` per configuration (the lowest mean over the
      grid) and `depth_of_minimum`: how far, relative, the loss at the grid
      ends lies above it (the smaller end's);
    - reusing the smallest model's best grid factor on the largest:
      `reused_loss_increase` (relative) and `reused_metric_change`, both
      against the largest model's own best grid factor.

    Coupled setups also get the `candidates` (`comparisons.py`). Per setup
    and depth, the share of seeds collapsed at each trained variant's
    default factor. On MNIST-1D, `gain_over_unpenalized`: per trained
    variant and configuration, its best mean test loss against no penalty.

    Over the complete setups only: `worst_drift` per variant (its largest
    drift over every setup and axis), `worst_drift_upper` (the largest
    upper interval end), `worst_plateau_gap`, `worst_reused_loss_increase`;
    `recommended`, the coupled variant whose worst drift is smallest
    (`within_target`: at most 2x, with no best factor at a grid end);
    `candidates`, the candidates' worst cases. Then the MNIST-1D
    `baselines` and `across_families`.
    """
    records = with_derived_records(records)
    setups = []
    for setup in SETUPS:
        configs_by_axis = axis_configs(setup, settings)
        seeds = complete_seeds(records, configs_by_axis)
        if not seeds:
            continue
        chosen = [r for r in records if r["seed"] in seeds]
        key = "/".join(setup)
        scales = []
        for variant in summarized_variants(setup):
            row = {"variant": variant.name}
            for axis, configs in configs_by_axis.items():
                if variant.num_examples and axis != "data size":
                    continue
                curves = [seed_losses(chosen, c, variant.name) for c in configs]
                row[axis] = axis_entry(curves, f"{key}/{variant.name}/{axis}")
            scales.append(row)
        setups.append(
            {
                **setup._asdict(),
                "seeds": seeds,
                "complete": seeds == list(settings.seeds),
                "scales": scales,
                "candidates": []
                if setup.optimizer == "adamw"
                else candidate_rows(chosen, configs_by_axis, key),
                "collapse_at_default_by_depth": _collapse_by_depth(
                    chosen, configs_by_axis["depth"], setup
                ),
                "gain_over_unpenalized": gain_over_unpenalized(
                    chosen,
                    configs_by_axis,
                    [v.name for v in plain_variants(setup) if not v.uniform],
                )
                if trains_derived(setup.data)
                else None,
            }
        )
    complete = [s for s in setups if s["complete"]]
    summary = {"setups": setups}
    summary["worst_drift"] = _over_setups(complete, "drift", max)
    summary["worst_drift_upper"] = _over_setups(
        complete, "drift_interval", lambda values: max(v[1] for v in values)
    )
    summary["worst_plateau_gap"] = _over_setups(complete, "plateau_gap", max)
    summary["worst_reused_loss_increase"] = _over_setups(
        complete, "reused_loss_increase", max
    )
    summary["any_at_edge"] = _over_setups(
        complete, "at_edge", lambda values: any(any(v) for v in values)
    )
    summary["recommended"] = _recommended(summary)
    summary["candidates"] = candidate_summary(complete)
    summary["baselines"] = baselines(records, settings)
    summary["across_families"] = across_families(records, settings)
    return summary


def scale_row(summary, setup, variant_name):
    """The summary's row of one variant in one setup (`Setup`)."""
    (row,) = [
        row
        for entry in summary["setups"]
        if tuple(entry[field] for field in setup._fields) == tuple(setup)
        for row in entry["scales"]
        if row["variant"] == variant_name
    ]
    return row


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
    """Per variant, `reduce` of `field` over every setup and axis.

    Values that are `None` (an interval of one seed, a reuse off the grid)
    are left out.
    """
    values = {}
    for setup in setups:
        for row in setup["scales"]:
            values.setdefault(row["variant"], []).extend(
                row[axis][field]
                for axis in AXES
                if axis in row and row[axis][field] is not None
            )
    return {name: reduce(found) for name, found in values.items() if found}


def _recommended(summary):
    """The coupled variant with the smallest worst drift, and how far."""
    worst = summary["worst_drift"]
    name = min((v.name for v in L2_VARIANTS), key=worst.__getitem__)
    return {
        "variant": name,
        "worst_drift": worst[name],
        "worst_drift_upper": summary["worst_drift_upper"].get(name),
        "within_target": worst[name] <= TARGET_DRIFT
        and not summary["any_at_edge"][name],
        "target": TARGET_DRIFT,
    }
