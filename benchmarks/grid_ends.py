"""The transfer study's best factors at a grid end: is there more beyond?

A best factor at the end of its grid (a `+` in the drift tables) may lie
beyond it. All of the study's lie at the lower end, on MNIST-1D, where every
group also trains an unpenalized member. For each of them this compares
that member with the configuration's best grid factor, paired by seed: the
mean difference of the test data loss, `unpenalized - best`, with its 95 %
bootstrap interval.

- Where the interval reaches zero, no penalty at all does as well as the
  best factor, within the seed noise. Below the grid's end the loss can
  only go toward the unpenalized one, so no smaller factor can be told
  better: the best factor is "this small or none", not an unmeasured one.
- Where the unpenalized member is worse, a smaller factor might be better
  still. Those configurations are trained again, every seed, on the grid
  widened `SHIFT` half-decades beyond the end (the study's settings
  otherwise), and the best factor is located on that grid. The factors the
  two grids share show how closely the new run reproduces the study's.

    KERAS_BACKEND=jax python benchmarks/grid_ends.py
    python benchmarks/grid_ends.py --no-train   # summarize only

It resumes from the records in `results/grid_ends.json`, and reads the
study's records and summary from `results/lambda_transfer.json`.
"""

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from lambda_transfer import follow_up, train_missing, write
from transfer_study.curves import (
    best_factor,
    entry_rng,
    mean_interval,
    plateau,
    seed_losses,
)
from transfer_study.derived import DERIVED_FROM, with_derived_records
from transfer_study.settings import FULL, SETUPS, Group
from transfer_study.summary import axis_configs
from transfer_study.training import train_group

SHIFT = 4
"""Half-decades a configuration trained again reaches beyond its grid end
(even: the grid's center moves by half of it)."""
UNPENALIZED = "unpenalized"


def grid_ends(summary, settings=FULL):
    """Each best factor of the study at a grid end, in summary order.

    `(setup, variant, axis, index, config)`: the configuration is the
    `index`-th of the axis, as `axis_configs` lists them.
    """
    setups = {tuple(s): s for s in SETUPS}
    found = []
    for entry in summary["setups"]:
        setup = setups[(entry["family"], entry["data"], entry["optimizer"])]
        configs = axis_configs(setup, settings)
        for row in entry["scales"]:
            for axis, axis_configs_ in configs.items():
                if axis not in row:
                    continue
                for index, at_edge in enumerate(row[axis]["at_edge"]):
                    if at_edge:
                        found.append(
                            (
                                setup,
                                row["variant"],
                                axis,
                                index,
                                axis_configs_[index],
                            )
                        )
    return found


def paired_curves(records, config, variant):
    """`(factors, losses, unpenalized)` of one configuration, by seed.

    `losses` has one row per seed and one column per factor, `unpenalized`
    one value per seed, the same seeds in the same order.
    """

    def seeds_of(name):
        return sorted(
            r["seed"]
            for r in records
            if r["variant"] == name and _matches(r, config)
        )

    factors, losses, _, _ = seed_losses(records, config, variant)
    seeds = sorted(set(seeds_of(variant)))
    plain_seeds = seeds_of(UNPENALIZED)
    if not plain_seeds:
        raise ValueError(
            f"{config}: no unpenalized member to compare {variant} with"
        )
    if plain_seeds != seeds:
        raise ValueError(
            f"{config}: {variant} has seeds {seeds}, the unpenalized member "
            f"{plain_seeds}; the comparison pairs them seed by seed"
        )
    _, plain, _, _ = seed_losses(
        records, config, UNPENALIZED, lattice_only=False
    )
    return factors, losses, plain[:, 0]


def against_unpenalized(factors, losses, unpenalized, key):
    """The best grid factor against no penalty, paired by seed.

    `difference` is the mean over the seeds of `unpenalized - loss(best)`
    (positive: the penalty helps), `interval` its 95 % bootstrap interval;
    `relative` and `relative_interval` the same over the best's mean loss.
    `flat_to_none`: the interval reaches zero, so no penalty does as well.
    """
    best = int(np.argmin(losses.mean(axis=0)))
    differences = unpenalized - losses[:, best]
    interval = mean_interval(differences, entry_rng(key))
    scale = float(losses[:, best].mean())
    return {
        "best_grid_factor": float(factors[best]),
        "end": _end(factors, best),
        "difference": float(differences.mean()),
        "interval": interval,
        "relative": float(differences.mean()) / scale,
        "relative_interval": [v / scale for v in interval],
        "flat_to_none": interval[0] <= 0,
    }


def _end(factors, index):
    if index == 0:
        return "low"
    if index == len(factors) - 1:
        return "high"
    return None


def widened_settings(setup, variant, end, settings=FULL):
    """The study's settings with the grid of `setup` widened beyond `end`.

    Every coupled variant's grid (or every decay grid, for AdamW) keeps all
    of the study's factors and gains `SHIFT` half-decades beyond `end`: its
    center moves half that way, and it reaches that much further on each
    side.
    """
    kind = "decay" if variant.startswith("adamw") else "l2"
    sign = -1 if end == "low" else 1
    center = {key: dict(values) for key, values in settings.center.items()}
    center[kind][setup.architecture] *= 10 ** (sign * SHIFT / 4)
    return dataclasses.replace(
        settings,
        center=center,
        half_decades=settings.half_decades + SHIFT // 2,
    )


def to_extend(ends, records, settings=FULL):
    """Per configuration to train again: its groups, settings, variants.

    `{config key: (groups, settings, trained variants)}` for every grid end
    whose unpenalized member is worse than the best, by the interval.
    """
    todo = {}
    for setup, variant, _, _, config in ends:
        factors, losses, plain = paired_curves(records, config, variant)
        key = _config_key(config)
        check = against_unpenalized(factors, losses, plain, key)
        if check["flat_to_none"]:
            continue
        source = DERIVED_FROM.get(variant, variant)
        seeds = sorted({r["seed"] for r in records if _matches(r, config)})
        groups, widened, variants = todo.get(
            key,
            (
                [Group(**config, seed=seed) for seed in seeds],
                widened_settings(setup, variant, check["end"], settings),
                set(),
            ),
        )
        todo[key] = (groups, widened, variants | {source})
    return todo


def _matches(record, config):
    return all(record[field] == value for field, value in config.items())


def _config_key(config):
    return (
        f"{config['family']}/{config['data']}/{config['optimizer']}/"
        f"w{config['width']}/d{config['depth']}/n{config['num_train']}"
    )


def extended_entry(records, config, variant, key):
    """The best factor of one configuration on its widened grid.

    `factors` of the widened grid, `best_factor` and `at_edge` there
    (`curves.best_factor`), its `plateau`, and the same comparison with no
    penalty as on the study's grid, against the run's own unpenalized
    member.
    """
    factors, losses, plain = paired_curves(records, config, variant)
    even = _even_run(factors)
    factors, losses = factors[even], losses[:, even]
    best, at_edge = best_factor(factors, losses.mean(axis=0))
    return {
        "factors": [float(f) for f in factors],
        "best_factor": best,
        "at_edge": at_edge,
        "plateau": plateau(factors, losses, entry_rng(key + "/plateau")),
        "against_unpenalized": against_unpenalized(
            factors, losses, plain, key + "/unpenalized"
        ),
    }


def _even_run(factors):
    """The longest run of factors half a decade apart: the widened grid,
    without the default factor the study adds to every grid."""
    steps = np.isclose(np.diff(np.log10(factors)), 0.5)
    best_start, best_length, start = 0, 1, 0
    for index, even in enumerate(steps, 1):
        if not even:
            start = index
        if index - start + 1 > best_length:
            best_start, best_length = start, index - start + 1
    return slice(best_start, best_start + best_length)


def reproduced(study_records, new_records, config):
    """The largest relative difference of a test loss the two runs share.

    The same configuration, seed, variant and factor: the same initial
    weights and batch order. `None` when they share no run.
    """
    study = {
        (r["seed"], r["variant"], r["factor"]): r["test_data_loss"]
        for r in study_records
        if _matches(r, config)
    }
    shared = [
        abs(r["test_data_loss"] - study[k]) / abs(study[k])
        for r in new_records
        if _matches(r, config)
        and (k := (r["seed"], r["variant"], r["factor"])) in study
    ]
    return max(shared) if shared else None


def summarize(study, records, settings=FULL):
    """Per grid end: the comparison with no penalty, and where trained
    again, the widened grid's (`extended_entry`, with `reproduced`).

    `every_end_flat_to_none`: at every end, no penalty does as well as the
    best factor, on the widened grid where there is one.
    """
    study_records = with_derived_records(study["records"])
    new_records = with_derived_records(records)
    rows = []
    for setup, variant, axis, index, config in grid_ends(
        study["summary"], settings
    ):
        key = f"{_config_key(config)}/{variant}"
        factors, losses, plain = paired_curves(study_records, config, variant)
        row = {
            "family": setup.family,
            "data": setup.data,
            "optimizer": setup.optimizer,
            "variant": variant,
            "axis": axis,
            "index": index,
            "config": _config_key(config),
            "against_unpenalized": against_unpenalized(
                factors, losses, plain, key
            ),
            "extended": None,
        }
        if any(_matches(r, config) for r in new_records):
            extended = extended_entry(new_records, config, variant, key)
            extended["reproduced"] = reproduced(
                study_records, new_records, config
            )
            row["extended"] = extended
        rows.append(row)
    return {
        "ends": rows,
        "every_end_flat_to_none": all(
            (row["extended"] or row)["against_unpenalized"]["flat_to_none"]
            for row in rows
        ),
    }


def format_table(summary):
    """One row per grid end: no penalty against the best, and beyond.

    An end that several axes share (the reference model lies on all three)
    and that was not trained again is one row, its axes joined.
    """
    rows = {}
    for row in summary["ends"]:
        check = row["against_unpenalized"]
        cells = (
            f"{row['family']} on {row['data']}, {row['optimizer']}",
            row["config"].split("/", 3)[3],
            f"`{row['variant']}` | {check['best_grid_factor']:.3g} "
            f"| {_versus(check)} | {_beyond(row)}",
        )
        rows.setdefault(cells, []).append(row["axis"])
    lines = [
        "| setup: axes; configuration | rule | best grid factor "
        "| no penalty's test loss against it (95 %) "
        f"| trained again on a grid {SHIFT} half-decades wider |",
        "|---|---|---:|---:|---|",
    ]
    for (setup, config, rest), axes in rows.items():
        lines.append(f"| {setup}: {', '.join(axes)}; {config} | {rest} |")
    return "\n".join(lines)


def _beyond(row):
    extended = row["extended"]
    if extended is None:
        if row["against_unpenalized"]["flat_to_none"]:
            return "not needed: flat to no penalty"
        return "not trained yet"
    low, high = extended["plateau"]
    edge = ", at its end" if extended["at_edge"] else ""
    return (
        f"best {extended['best_factor']:.3g}{edge} (plateau {low:.3g} to "
        f"{high:.3g}); no penalty "
        f"{_versus(extended['against_unpenalized'])}"
    )


def _versus(check):
    low, high = check["relative_interval"]
    return f"{check['relative']:+.1%} ({low:+.1%} to {high:+.1%})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-train", action="store_true")
    arguments = parser.parse_args(argv)
    study, path, base, records = follow_up(
        "grid_ends.json", {"shift": SHIFT}, train_now=not arguments.no_train
    )
    if not arguments.no_train:
        ends = grid_ends(study["summary"])
        study_records = with_derived_records(study["records"])
        for groups, widened, variants in to_extend(
            ends, study_records
        ).values():
            records = train_missing(
                groups,
                lambda g, s=widened, v=variants: train_group(g, s, sorted(v)),
                path,
                base,
                records,
            )
    summary = summarize(study, records)
    write(path, {**base, "records": records, "summary": summary})
    print(format_table(summary))


if __name__ == "__main__":
    sys.exit(main())
