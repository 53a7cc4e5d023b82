"""The transfer study's best factors at a grid end: is there more beyond?

A best factor at the end of its grid (a `+` in the drift tables) may lie
beyond it. All of the study's lie at the lower end, on MNIST-1D, where every
group also trains an unpenalized member. For each of them this compares
that member with the configuration's best grid factor, paired by seed: the
mean difference of the test data loss, `unpenalized - best`, with its 95 %
bootstrap interval.

- Where the interval reaches zero, the seeds cannot tell no penalty at all
  from the best factor. As the factor goes to zero the loss goes to the
  unpenalized one, so nothing here points to a better factor beyond the
  end: the best factor is "this small, or none".
- Where the unpenalized member is worse, a smaller factor might be better
  still. Those configurations are trained again, every seed, on the grid
  widened `SHIFT` half-decades beyond the end (the study's settings
  otherwise), and the best factor is located on that grid. The factors the
  two grids share show how closely the new run reproduces the study's.

    KERAS_BACKEND=jax python benchmarks/grid_ends.py
    python benchmarks/grid_ends.py --no-train   # summarize only
    KERAS_BACKEND=jax python benchmarks/grid_ends.py \
        --repeat transformer/mnist1d/sgd/w32/d1/n4000/s0

`--repeat` trains one of the study's groups twice, as the study did, and
prints how many runs the two repeats share bit for bit and how far the
first lies from the study's published runs.

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
    matches,
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
            found += [
                (setup, row["variant"], axis, index, configs[axis][index])
                for axis in configs
                if axis in row
                for index, at_edge in enumerate(row[axis]["at_edge"])
                if at_edge
            ]
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
            if r["variant"] == name and matches(r, config)
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
    `unpenalized_within_noise`: the interval reaches zero, so the seeds
    cannot tell no penalty from the best factor. That is no evidence of a
    better factor beyond the grid, not proof that the loss is flat.
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
        "unpenalized_within_noise": interval[0] <= 0,
    }


def end_check(records, config, variant):
    """`against_unpenalized` for one end, with the bootstrap seeded by the
    end itself: the same draw wherever the end is checked."""
    factors, losses, plain = paired_curves(records, config, variant)
    return against_unpenalized(
        factors, losses, plain, f"{_config_key(config)}/{variant}"
    )


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
    if end not in ("low", "high"):
        raise ValueError(
            f"Invalid value for argument `end`: expected 'low' or 'high', "
            f"the grid end to widen. Received: end={end!r}"
        )
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
    whose unpenalized member is worse than the best, by the interval. A
    derived variant (`none/kernels`) is trained as its source (`none`). One
    configuration is widened one way only: ends that would widen it two
    ways (both ends, or a penalty and a decay) are refused.
    """
    todo = {}
    for setup, variant, _, _, config in ends:
        check = end_check(records, config, variant)
        if check["unpenalized_within_noise"]:
            continue
        key = _config_key(config)
        widened = widened_settings(setup, variant, check["end"], settings)
        seeds = sorted({r["seed"] for r in records if matches(r, config)})
        groups, known, variants = todo.get(
            key, ([Group(**config, seed=s) for s in seeds], widened, set())
        )
        if known != widened:
            raise ValueError(
                f"{key}: its grid ends would widen it two ways (another end "
                f"than {check['end']!r} of {variant}, or another kind of "
                "penalty); train them apart"
            )
        todo[key] = (
            groups,
            widened,
            variants | {DERIVED_FROM.get(variant, variant)},
        )
    return todo


def _config_key(config):
    return Group(**config, seed=0).config_key


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
    """The longest run of factors half a decade apart: the widened grid.

    The default factor the study adds to every grid stays out where it
    lies off that run; where it lies on it (next to its end, or inside),
    it is a grid point like the others.
    """
    steps = np.isclose(np.diff(np.log10(factors)), 0.5)
    best_start, best_length, start = 0, 1, 0
    for index, even in enumerate(steps, 1):
        if not even:
            start = index
        if index - start + 1 > best_length:
            best_start, best_length = start, index - start + 1
    return slice(best_start, best_start + best_length)


def reproduced(study_records, new_records, config):
    """How closely the new run repeats the study's, where both trained.

    Over the runs of the same configuration, seed, variant and factor (the
    same initial weights and batch order): the `largest` and the `median`
    relative difference of the test data loss, and how many `runs`. `None`
    when they share no run.
    """
    study = {
        (r["seed"], r["variant"], r["factor"]): r["test_data_loss"]
        for r in study_records
        if matches(r, config)
    }
    shared = [
        abs(r["test_data_loss"] - study[k]) / abs(study[k])
        for r in new_records
        if matches(r, config)
        and (k := (r["seed"], r["variant"], r["factor"])) in study
    ]
    if not shared:
        return None
    return {
        "largest": max(shared),
        "median": float(np.median(shared)),
        "runs": len(shared),
    }


def summarize(study, records, settings=FULL):
    """Per grid end: the comparison with no penalty, and where trained
    again, the widened grid's (`extended_entry`, with `reproduced`).

    `every_end_unpenalized_within_noise`: at every end, the seeds cannot
    tell no penalty from the best factor, on the widened grid where there
    is one.
    """
    study_records = with_derived_records(study["records"])
    new_records = with_derived_records(records)
    rows = []
    for setup, variant, axis, index, config in grid_ends(
        study["summary"], settings
    ):
        row = {
            "family": setup.family,
            "data": setup.data,
            "optimizer": setup.optimizer,
            "variant": variant,
            "axis": axis,
            "index": index,
            "config": _config_key(config),
            "against_unpenalized": end_check(study_records, config, variant),
            "extended": None,
        }
        if any(
            matches(r, config) and r["variant"] == variant for r in new_records
        ):
            key = f"{_config_key(config)}/{variant}"
            extended = extended_entry(new_records, config, variant, key)
            extended["reproduced"] = reproduced(
                study["records"], records, config
            )
            row["extended"] = extended
        rows.append(row)
    return {
        "ends": rows,
        "every_end_unpenalized_within_noise": all(
            (row["extended"] or row)["against_unpenalized"][
                "unpenalized_within_noise"
            ]
            for row in rows
        ),
    }


def format_table(summary):
    """One row per grid end: no penalty against the best, and beyond.

    Ends that differ only in their axis (the reference model lies on all
    three) are one row, their axes joined.
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
        if row["against_unpenalized"]["unpenalized_within_noise"]:
            return "not needed: no penalty within the noise"
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


def repeat_study_group(study_records, group):
    """Trains one of the study's groups twice, exactly as the study did.

    Returns how many runs the two repeats share bit for bit, of how many,
    and the largest absolute difference of a test data loss between the
    first repeat and the study's published run.
    """
    first = train_group(group, FULL)
    second = train_group(group, FULL)
    published = {
        (r["variant"], r["factor"]): r["test_data_loss"]
        for r in study_records
        if Group.of_record(r).key == group.key
    }
    return {
        "runs": len(first),
        "identical_repeats": sum(
            a["test_data_loss"] == b["test_data_loss"]
            for a, b in zip(first, second, strict=True)
        ),
        "largest_difference_to_study": max(
            abs(r["test_data_loss"] - published[(r["variant"], r["factor"])])
            for r in first
        ),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument(
        "--repeat",
        metavar="GROUP",
        help="train one of the study's groups twice (its key, e.g. "
        "transformer/mnist1d/sgd/w32/d1/n4000/s0) and compare",
    )
    arguments = parser.parse_args(argv)
    study, path, base, records = follow_up(
        "grid_ends.json", {"shift": SHIFT}, train_now=not arguments.no_train
    )
    if arguments.repeat:
        groups = {Group.of_record(r) for r in study["records"]}
        chosen = [g for g in groups if g.key == arguments.repeat]
        if not chosen:
            parser.error(f"the study has no group {arguments.repeat}")
        group = chosen[0]
        print(repeat_study_group(study["records"], group))
        return
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
