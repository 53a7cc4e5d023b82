"""Does the best factor move with the rows, or with the number of steps?

The transfer study (`lambda_transfer.py`) trains every model for a fixed
number of epochs, so its reference model on 4x fewer rows also takes about
4x fewer optimizer steps. Along its data-size axis two things change at
once: how much data the penalty competes with, and how long it pulls.

This trains the reference model of each setup on the fewer rows again
(the MLPs on both tabular data sets and on MNIST-1D; the CNN and the
transformer on MNIST-1D). Each runs as many steps as the study's run on
all rows (the epochs scaled by the ratio of steps per epoch), with the
same grids, seeds, batch size and learning rate. It compares three best
factors per rule:

- fewer rows, the study's epochs (the study's own run: fewer steps);
- fewer rows, as many steps as on all rows (trained here);
- all rows (the study's own run).

For each pair (fewer rows, all rows) it gives the ratio of the best
factors, its 95 % bootstrap interval over the seeds, and the exponent `a`
of `best ~ rows**-a` that the ratio implies: `a = 1` is the `lambda/(2m)`
convention (`num_examples`), `a = 0` leaves the factor alone.

Rules: plain L2 (`none`; on one model `none/kernels` trains the same
networks), `none+num_examples` and, under AdamW, Keras's decay (`adamw`).

    KERAS_BACKEND=jax python benchmarks/data_size_steps.py
    python benchmarks/data_size_steps.py --no-train   # summarize only

It resumes from the records in `results/data_size_steps.json`, and reads
the study's records from `results/lambda_transfer.json`.
"""

import argparse
import dataclasses
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from lambda_transfer import follow_up, train_missing, write
from transfer_study.curves import (
    BOOTSTRAP_SAMPLES,
    axis_entry,
    best_factor,
    complete_seeds,
    entry_rng,
    seed_losses,
)
from transfer_study.derived import with_derived_records
from transfer_study.settings import FULL, SETUPS, Group
from transfer_study.summary import axis_configs
from transfer_study.training import train_group

FAMILIES = ("mlp", "cnn", "transformer")
VARIANTS = {
    "coupled": ("none", "none+num_examples"),
    "adamw": ("adamw",),
}
"""Per kind of setup, the rules compared (trained, or derived from them)."""
PAIRS = ("equal epochs", "equal steps")
CLIFF_MARGIN = 3.0
"""The capped rule's margin below the collapse cliff: the factor on the
fewer rows is the one on all rows times the ratio of rows (`lambda/(2m)`),
but at most the cliff over this. Chosen after seeing these results (no
best factor on the fewer rows lay closer than 2.88x below its cliff, so
this rule predicts a little below the closest one)."""


def steps_per_epoch(rows, batch_size):
    return math.ceil(rows / batch_size)


def equal_steps_epochs(data, settings=FULL):
    """Epochs on the fewer rows that take as many steps as on all rows."""
    rows, fewer = settings.num_train[data]
    batch = settings.batch_size[data]
    steps = settings.epochs[data] * steps_per_epoch(rows, batch)
    epochs, left = divmod(steps, steps_per_epoch(fewer, batch))
    if left:
        raise ValueError(
            f"{fewer} rows in batches of {batch} cannot take exactly the "
            f"{steps} steps of {rows} rows"
        )
    return epochs


def setups(families=FAMILIES):
    return [s for s in SETUPS if s.family in families]


def variants_of(setup):
    return VARIANTS["adamw" if setup.optimizer == "adamw" else "coupled"]


def trained_names(setup):
    """The variants to train: on MNIST-1D the `num_examples` one is derived
    from `none` (`derived.py`)."""
    names = variants_of(setup)
    if setup.data == "mnist1d":
        return tuple(n for n in names if "num_examples" not in n)
    return names


def to_train(settings=FULL, families=FAMILIES):
    """The groups: each setup's reference model on the fewer rows."""
    result = []
    for seed in settings.seeds:
        for setup in setups(families):
            width, depth = settings.shapes_of(setup).reference
            fewer = settings.num_train[setup.data][1]
            result.append(Group(*setup, width, depth, fewer, seed))
    return result


def train(group, settings=FULL):
    epochs = equal_steps_epochs(group.data, settings)
    longer = dataclasses.replace(
        settings, epochs={**settings.epochs, group.data: epochs}
    )
    records = train_group(group, longer, trained_names(group.setup))
    steps = epochs * steps_per_epoch(
        group.num_train, settings.batch_size[group.data]
    )
    return [{**r, "epochs": epochs, "steps": steps} for r in records]


def summarize(records, study_records, settings=FULL, families=FAMILIES):
    """Per setup and rule, the best factors on fewer and on all rows.

    Per setup: the seeds, rows, epochs and steps of each pair (fewer rows,
    all rows) and, on MNIST-1D, the unpenalized members' mean test loss of
    each; per rule and pair, `pair_entry`.
    """
    records = with_derived_records(records)
    study_records = with_derived_records(study_records)
    result = []
    for setup in setups(families):
        fewer_config, all_config = axis_configs(setup, settings)["data size"]
        fewer, rows = fewer_config["num_train"], all_config["num_train"]
        seeds = complete_seeds(records, {"data size": [fewer_config]})
        if not seeds:
            continue
        in_study = complete_seeds(
            study_records, {"data size": [fewer_config, all_config]}
        )
        if not set(seeds) <= set(in_study):
            raise ValueError(
                f"{'/'.join(setup)}: seeds {seeds} trained here, but the "
                f"study has only {in_study} of both row counts"
            )
        records_of_seeds = [r for r in records if r["seed"] in seeds]
        batch = settings.batch_size[setup.data]
        epochs = settings.epochs[setup.data]
        longer = equal_steps_epochs(setup.data, settings)
        entry = {
            **setup._asdict(),
            "seeds": seeds,
            "complete": seeds == list(settings.seeds),
            "num_train": [fewer, rows],
            "epochs": {
                "equal epochs": [epochs, epochs],
                "equal steps": [longer, epochs],
            },
            "steps": {
                "equal epochs": [
                    epochs * steps_per_epoch(fewer, batch),
                    epochs * steps_per_epoch(rows, batch),
                ],
                "equal steps": [
                    longer * steps_per_epoch(fewer, batch),
                    epochs * steps_per_epoch(rows, batch),
                ],
            },
            "rules": [],
        }
        study = [r for r in study_records if r["seed"] in seeds]
        if setup.data == "mnist1d":
            entry["unpenalized_test_data_loss"] = {
                pair: [
                    _mean_loss(source, fewer_config),
                    _mean_loss(study, all_config),
                ]
                for pair, source in zip(
                    PAIRS, (study, records_of_seeds), strict=True
                )
            }
        for name in variants_of(setup):
            large = seed_losses(study, all_config, name)
            rule = {"variant": name}
            for pair, source in zip(
                PAIRS, (study, records_of_seeds), strict=True
            ):
                small = seed_losses(source, fewer_config, name)
                key = f"{'/'.join(setup)}/{name}/{pair}"
                rule[pair] = pair_entry(
                    axis_entry([small, large], key),
                    key,
                    small,
                    large,
                    rows / fewer,
                    capped="num_examples" not in name,
                )
            entry["rules"].append(rule)
        result.append(entry)
    return {"setups": result}


def _mean_loss(records, config):
    """The unpenalized members' mean test loss over the seeds (MNIST-1D)."""
    losses = seed_losses(records, config, "unpenalized", lattice_only=False)[1]
    return float(losses.mean())


def pair_entry(entry, key, small, large, rows_ratio, capped):
    """`axis_entry`'s fields, plus the signed ratio and its exponent.

    `ratio` is the best factor on the fewer rows over that on all rows;
    `ratio_interval` its 95 % bootstrap interval (the seeds resampled, the
    same draw for both); `exponent` is `log(ratio) / log(rows ratio)`.
    `collapse_factors`, per configuration: the smallest grid factor at which
    at least half the seeds collapsed to a constant output (`None`: none
    on the grid). With `capped`, the capped rule's prediction for the fewer
    rows (`CLIFF_MARGIN`) and its `capped_miss`, the ratio of the larger to
    the smaller of prediction and best (1: exact): with the cliff of the
    fewer rows' own run, and (`..._all_rows_cliff`) with the cliff of the
    run on all rows, the one a user who tuned there knows. `small` and
    `large` must hold the same seeds, in the same order.
    """
    best_fewer, best_all = entry["best_factors"]
    num_seeds = len(small[1])
    if len(large[1]) != num_seeds:
        raise ValueError(
            f"{key}: {num_seeds} seeds on the fewer rows, {len(large[1])} on "
            "all rows; a bootstrap draw must pick the same seeds of both"
        )
    ratios = []
    rng = entry_rng(key + "/ratio")
    for _ in range(BOOTSTRAP_SAMPLES):
        draw = rng.integers(0, num_seeds, num_seeds)
        ratios.append(
            best_factor(small[0], small[1][draw].mean(axis=0))[0]
            / best_factor(large[0], large[1][draw].mean(axis=0))[0]
        )
    keep = (
        "best_factors",
        "best_test_data_loss",
        "at_edge",
        "plateaus",
        "plateau_gap",
        "depth_of_minimum",
    )
    cliffs = [_collapse_factor(c) for c in (small, large)]
    result = {
        **{field: entry[field] for field in keep},
        "ratio": best_fewer / best_all,
        "ratio_interval": [
            float(q) for q in np.percentile(ratios, [2.5, 97.5])
        ],
        "exponent": math.log(best_fewer / best_all) / math.log(rows_ratio),
        "collapse_factors": cliffs,
    }
    if capped:
        for suffix, cliff in (("", cliffs[0]), ("_all_rows_cliff", cliffs[1])):
            predicted = best_all * rows_ratio
            if cliff is not None:
                predicted = min(predicted, cliff / CLIFF_MARGIN)
            result["capped_prediction" + suffix] = predicted
            result["capped_miss" + suffix] = max(
                predicted / best_fewer, best_fewer / predicted
            )
    return result


def _collapse_factor(curve):
    factors, _, _, collapsed = curve
    at = np.flatnonzero(collapsed.mean(axis=0) >= 0.5)
    return float(factors[at[0]]) if len(at) else None


def format_table(summary):
    """Per setup and rule: the best factor on fewer rows over all rows."""
    lines = [
        "| setup | rule | fewer rows, equal epochs / all rows | exponent "
        "| fewer rows, equal steps / all rows | exponent |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for setup in summary["setups"]:
        for rule in setup["rules"]:
            cells = []
            for pair in PAIRS:
                e = rule[pair]
                low, high = e["ratio_interval"]
                edge = " (edge)" if any(e["at_edge"]) else ""
                cells += [
                    f"{e['ratio']:.3g}x [{low:.3g}, {high:.3g}]{edge}",
                    f"{e['exponent']:+.2f}",
                ]
            lines.append(_row(setup, rule, cells))
    return "\n".join(lines)


def cliff_table(summary):
    """Per setup: the cliff's distance, and how far the capped rule misses.

    The cliff over the best factor on all rows and on the fewer rows (equal
    steps); the capped rule's miss at equal epochs and at equal steps, with
    the cliff of the fewer rows' own run and with that of all rows.
    """
    lines = [
        "| setup | rule | cliff / best, all rows "
        "| cliff / best, fewer rows, equal steps "
        "| capped rule's miss, equal epochs (own cliff / all rows' cliff) "
        "| equal steps (own / all rows') |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for setup in summary["setups"]:
        for rule in setup["rules"]:
            steps = rule["equal steps"]
            if "capped_miss" not in steps:
                continue
            fewer_cliff, all_cliff = steps["collapse_factors"]
            fewer_best, all_best = steps["best_factors"]
            cells = [
                _headroom(all_cliff, all_best),
                _headroom(fewer_cliff, fewer_best),
            ] + [
                f"{rule[pair]['capped_miss']:.2f}x / "
                f"{rule[pair]['capped_miss_all_rows_cliff']:.2f}x"
                for pair in PAIRS
            ]
            lines.append(_row(setup, rule, cells))
    return "\n".join(lines)


def _row(setup, rule, cells):
    name = f"{setup['family']}/{setup['data']}/{setup['optimizer']}"
    return f"| {name} | `{rule['variant']}` | " + " | ".join(cells) + " |"


def _headroom(cliff, best):
    """How far the collapse cliff lies above the best factor."""
    return "beyond the grid" if cliff is None else f"{cliff / best:.1f}x"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--families", default=",".join(FAMILIES))
    arguments = parser.parse_args(argv)
    families = tuple(arguments.families.split(","))
    study, path, base, records = follow_up(
        "data_size_steps.json",
        {"variants": VARIANTS},
        train_now=not arguments.no_train,
    )
    todo = [] if arguments.no_train else to_train(FULL, families)
    records = train_missing(todo, train, path, base, records)
    summary = summarize(records, study["records"])
    write(path, {**base, "records": records, "summary": summary})
    print(format_table(summary))
    print()
    print(cliff_table(summary))


if __name__ == "__main__":
    sys.exit(main())
