"""Which way of choosing the factor costs the least test loss?

Trains the transfer study's groups again (same data, shapes, optimizers,
grids and seeds; `lambda_transfer.py`) with every member's validation and
test data loss, penalty and prediction spread recorded after each epoch.
The study's test set is split once into two fixed halves: validation
(to choose on) and test (to pay on). Then, per configuration, rule and
seed, it replays each way of choosing on those learning curves and
measures its regret against the grid's best on test
(`transfer_study/choice.py` says how, and what a replay cannot show):
reusing the reference model's factor (both directions along each axis),
the full grid on the validation data loss and on `val_loss`,
`search_factor`'s schedule, and KerasTuner's Hyperband on `val_data_loss`
and on `val_loss` at the search's budget.

    KERAS_BACKEND=jax python benchmarks/factor_choice.py     # full run
    python benchmarks/factor_choice.py --quick --output DIR  # smoke run
    python benchmarks/factor_choice.py --no-train            # summarize

The full run trains setup by setup (the MLP and the CNN on MNIST-1D, then
diabetes, then the transformer, then the rest: the cheapest first), so
that an interrupted run has whole setups; it resumes from
`results/factor_choice.json`, and the summary covers the setups whose
every configuration has every seed.
"""

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras
import lambda_transfer
import numpy as np
from transfer_study import choice
from transfer_study.data import load_data
from transfer_study.derived import CANDIDATES, with_derived_records
from transfer_study.settings import FULL, QUICK, SETUPS, Group, groups
from transfer_study.summary import axis_configs
from transfer_study.training import (
    COLLAPSE_RATIO,
    data_losses,
    group_members,
    member_penalties,
    prediction_spread,
    train_group,
)

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SPLIT_SEED = 20261207
"""The one permutation that splits the study's test set in two halves."""

QUICK_SETTINGS = dataclasses.replace(
    QUICK,
    seeds=(0, 1),
    epochs={"synthetic": 3, "diabetes": 3, "mnist1d": 3},
    optimizers=("adam",),
)
QUICK_ONLY = ("mlp/mnist1d/adam", "mlp/diabetes/adam")
"""The quick run's setups: one family on MNIST-1D, one tabular."""

SETUP_ORDER = [
    ("mlp", "mnist1d", "adam"),
    ("mlp", "mnist1d", "sgd"),
    ("mlp", "mnist1d", "adamw"),
    ("cnn", "mnist1d", "sgd"),
    ("cnn", "mnist1d", "adamw"),
    ("cnn", "mnist1d", "adam"),
    ("mlp", "diabetes", "sgd"),
    ("mlp", "diabetes", "adamw"),
    ("mlp", "diabetes", "adam"),
    ("transformer", "mnist1d", "adam"),
    ("transformer", "mnist1d", "sgd"),
]
"""Trained first, in this order; every other setup after them."""


def validation_split(num_test):
    """`(validation rows, test rows)`: a fixed half each of the test set."""
    order = np.random.default_rng(SPLIT_SEED).permutation(num_test)
    half = num_test // 2
    return np.sort(order[:half]), np.sort(order[half:])


class EpochCurves(keras.callbacks.Callback):
    """After every epoch, per member: validation and test data loss,
    penalty, and whether its test predictions have collapsed."""

    def __init__(self, x_test, y_test, count):
        super().__init__()
        self.validation, self.test = validation_split(len(x_test))
        self.x_test, self.y_test, self.count = x_test, y_test, count
        self.curves = {
            key: []
            for key in (
                "val_curve",
                "test_curve",
                "penalty_curve",
                "collapsed_curve",
            )
        }

    def on_epoch_end(self, epoch, logs=None):
        predictions = self.model.predict(
            self.x_test, batch_size=4096, verbose=0
        )
        y = self.y_test
        self.curves["val_curve"].append(
            data_losses(y[self.validation], predictions[self.validation])
        )
        self.curves["test_curve"].append(
            data_losses(y[self.test], predictions[self.test])
        )
        self.curves["penalty_curve"].append(
            member_penalties(self.model, self.count)
        )
        self.curves["collapsed_curve"].append(
            prediction_spread(y[self.test], predictions[self.test])
            < COLLAPSE_RATIO
        )

    def member(self, index):
        return {
            key: [_rounded(epoch[index]) for epoch in values]
            for key, values in self.curves.items()
        }


def _rounded(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    value = float(value)
    return float(f"{value:.5g}") if np.isfinite(value) else None


def train(group, settings):
    _, (x_test, y_test) = load_data(group.data, group.num_train, settings)
    count = len(group_members(group, settings))
    curves = EpochCurves(x_test, y_test, count)
    records = train_group(group, settings, callbacks=[curves])
    return [
        {
            **{k: v for k, v in record.items() if k != "test_data_loss"},
            **curves.member(index),
        }
        for index, record in enumerate(records)
    ]


def ordered_groups(settings, only):
    first = {setup: rank for rank, setup in enumerate(SETUP_ORDER)}
    chosen = [g for g in groups(settings) if any(key in g.key for key in only)]
    return sorted(
        chosen,
        key=lambda g: (
            first.get(tuple(g.setup), len(first)),
            SETUPS.index(g.setup),
            g.seed,
        ),
    )


def write(path, payload):
    """The results, compactly: one record a line (the curves are long)."""
    records = payload["records"]
    head = json.dumps({**payload, "records": None}, indent=1)
    lines = ",\n".join(
        json.dumps(record, separators=(",", ":")) for record in records
    )
    text = head.replace('"records": null', f'"records": [\n{lines}\n]')
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text + "\n")
    temporary.replace(path)


def summarize(records, settings):
    """`summary.regret`, `summary.cost` and per-cell details; see
    `transfer_study/choice.py` for the methods."""
    # The shipped rules only: the study's candidate rules are not reused.
    records = [
        r
        for r in with_derived_records(
            [r for r in records if r["variant"] != "unpenalized"]
        )
        if r["variant"] not in CANDIDATES
    ]
    by_cell = {}
    for record in records:
        key = (Group.of_record(record).config_key, record["variant"])
        by_cell.setdefault(key, {}).setdefault(record["seed"], []).append(
            record
        )
    regrets = {method: {} for method in choice.METHODS}
    spent = {method: [] for method in choice.METHODS}
    differs = set()
    setups_done = []
    for setup in SETUPS:
        if setup.optimizer not in settings.optimizers:
            continue
        axes = axis_configs(setup, settings)
        configs = {
            Group(**c, seed=0).config_key: c for a in axes.values() for c in a
        }
        reference = _reference_key(setup, settings)
        # A rule counts where every configuration has every seed (the
        # `num_examples` rules train the reference model only).
        variants = sorted(
            v
            for v in {v for (k, v) in by_cell if k == reference}
            if all(
                set(by_cell.get((k, v), {})) == set(settings.seeds)
                for k in configs
            )
        )
        if not variants:
            continue
        setups_done.append("/".join(setup))
        for variant in variants:
            curves = {
                k: {
                    s: choice.Curves(by_cell[(k, variant)][s])
                    for s in settings.seeds
                }
                for k in configs
            }
            derived = "source_factor" in by_cell[(reference, variant)][0][0]
            _score_setup(
                curves,
                reference,
                axes,
                variant,
                derived,
                regrets,
                spent,
                differs,
            )
    grid = regrets["grid"]
    held_out = {
        method: {
            cell: values
            for cell, values in cells.items()
            if _setup_of(cell) not in DEFAULTS_CHOSEN_ON
        }
        for method, cells in regrets.items()
    }
    summary = {
        "setups": setups_done,
        "seeds": len(settings.seeds),
        "split": {"seed": SPLIT_SEED, "halves": "validation, test"},
        "regret": _regret_statistics(regrets),
        "regret_held_out": {
            "setups": [s for s in setups_done if s not in DEFAULTS_CHOSEN_ON],
            **_regret_statistics(held_out),
        },
        "cost": {
            method: {
                "median": float(np.median(values)) if values else None,
                "worst": float(np.max(values)) if values else None,
            }
            for method, values in spent.items()
            if method != "reuse"
        },
        "cells": {
            method: choice.cell_intervals(cells)
            for method, cells in regrets.items()
        },
    }
    rules = sorted({cell.split("|")[1] for cell in regrets["reuse"]})
    summary["reuse_by_rule"] = {
        rule: choice.statistics(
            {
                cell: values
                for cell, values in regrets["reuse"].items()
                if cell.split("|")[1] == rule
            }
        )
        for rule in rules
    }
    summary["val_loss_picks_another_factor"] = {
        "cells": len(grid),
        "cells_where_any_seed_differs": len(differs),
    }
    return summary


DEFAULTS_CHOSEN_ON = ("mlp/mnist1d/adam", "mlp/mnist1d/sgd")
"""The setups whose curves `search_factor`'s defaults were chosen on; the
summary's `regret_held_out` leaves them out."""


def _setup_of(cell):
    return "/".join(cell.split("/")[:3])


def _regret_statistics(regrets):
    grid = regrets["grid"]
    return {
        method: choice.statistics(
            cells, None if method in ("grid", "reuse") else grid
        )
        for method, cells in regrets.items()
    }


def _reference_key(setup, settings):
    width, depth = settings.shapes_of(setup).reference
    return Group(
        *setup, width, depth, settings.num_train[setup.data][0], 0
    ).config_key


def _score_setup(
    curves, reference, axes, variant, derived, regrets, spent, differs
):
    """Every method's regret on one setup and rule. A derived rule (a
    rescaled copy of another's runs) is scored for reuse only: its grid,
    search and Hyperband cells would repeat its source's."""
    epochs = None
    chosen_on_reference = {}
    for key, by_seed in curves.items():
        for seed, curve in by_seed.items():
            epochs = curve.epochs
            position, _ = choice.grid_choice(curve)
            if key == reference:
                chosen_on_reference[seed] = curve.factors[position]
            if derived:
                continue
            cell = f"{key}/{variant}"
            _add(regrets, spent, "grid", cell, curve.regret(position), 1.0)
            other, _ = choice.grid_choice(curve, on_val_loss=True)
            _add(
                regrets, spent, "grid_val_loss", cell, curve.regret(other), 1.0
            )
            if other != position:
                differs.add(cell)
    for key, by_seed in curves.items():
        if derived:
            break
        for seed, curve in by_seed.items():
            cell = f"{key}/{variant}"
            grid_cost = len(curve.factors) * epochs
            # From a smaller model: the reference's choice. On the reference
            # itself: the middle of the rule's grid, the study's centre for
            # the rule (0.01 means nothing to `none+num_examples`).
            prior = (
                chosen_on_reference[seed]
                if key != reference
                else float(np.median(curve.factors))
            )
            prior = _nearest(_lattice(curve.factors), prior)
            position, cost = choice.search_choice(curve, prior)
            _add(
                regrets,
                spent,
                "search",
                cell,
                _regret(curve, position),
                cost / grid_cost,
            )
            for name, on_val_loss in (
                ("hyperband", False),
                ("hyperband_val_loss", True),
            ):
                factor, used = choice.hyperband_choice(
                    curve, cost, seed, on_val_loss
                )
                regret = math.inf if factor is None else curve.regret_at(factor)
                _add(regrets, spent, name, cell, regret, used / grid_cost)
    for axis, configs in axes.items():
        keys = [Group(**c, seed=0).config_key for c in configs]
        for key in keys:
            if key == reference or reference not in keys:
                continue
            for source, target in ((reference, key), (key, reference)):
                cell = f"{source}->{target}|{variant}|{axis}"
                for seed in curves[target]:
                    from_curve = curves[source][seed]
                    factor = from_curve.factors[
                        choice.grid_choice(from_curve)[0]
                    ]
                    target_curve = curves[target][seed]
                    test = np.interp(
                        np.log10(factor),
                        np.log10(target_curve.factors),
                        target_curve.test[:, -1],
                    )
                    regrets["reuse"].setdefault(cell, []).append(
                        float(test / target_curve.oracle() - 1)
                    )


def _regret(curve, position):
    return float("inf") if position is None else curve.regret(position)


def _add(regrets, spent, method, cell, regret, cost):
    regrets[method].setdefault(cell, []).append(regret)
    spent[method].append(cost)


def _lattice(factors):
    """The grid's factors on its half-decade lattice, without an extra
    point such as AdamW's default 0.004 (the search steps by half-decades
    from its prior, so a prior off the lattice would find no grid point)."""
    phase = np.round((2 * np.log10(factors)) % 1.0, 6) % 1.0
    values, counts = np.unique(phase, return_counts=True)
    return factors[phase == values[np.argmax(counts)]]


def _nearest(factors, factor):
    return float(
        factors[np.argmin(np.abs(np.log10(factors) - np.log10(factor)))]
    )


def format_table(summary):
    lines = [
        f"setups: {', '.join(summary['setups']) or '(none complete)'}",
        f"{'method':<20} {'cells':>5} {'worst':>8} {'median':>8} "
        f"{'>2%':>4} {'>5%':>4} {'>10%':>5} {'in noise':>8} {'cost':>6}",
    ]
    for method, entry in summary["regret"].items():
        cost = summary["cost"].get(method, {}).get("median")
        noise = entry.get("within_seed_noise_of_grid")
        lines.append(
            f"{method:<20} {entry['cells']:>5} "
            f"{_percent(entry['worst']):>8} {_percent(entry['median']):>8} "
            f"{entry['over_2_percent']:>4} {entry['over_5_percent']:>4} "
            f"{entry['over_10_percent']:>5} "
            f"{'' if noise is None else noise:>8} "
            f"{'' if cost is None else f'{cost:.2f}':>6}"
        )
    return "\n".join(lines)


METHOD_NAMES = {
    "reuse": "reused from the reference model",
    "grid": "full grid, on `val_data_loss`",
    "grid_val_loss": "full grid, on `val_loss`",
    "search": "`search_factor`",
    "hyperband": "Hyperband, on `val_data_loss`",
    "hyperband_val_loss": "Hyperband, on `val_loss`",
}


def lead_sentence(summary):
    """The block's first lines: what reuse and the search cost, in words."""
    reuse, search = summary["regret"]["reuse"], summary["regret"]["search"]
    cost = summary["cost"]["search"]["median"]
    return (
        "**What each way of choosing cost in the study** (test data loss "
        "above the best factor's): a factor reused from the reference "
        f"model cost a median {_percent(reuse['median'])} and up to "
        f"{_percent(reuse['worst'])} ({reuse['over_5_percent']} of "
        f"{reuse['cells']} cells over 5 %); `search_factor` a median "
        f"{_percent(search['median'])} and up to {_percent(search['worst'])},"
        f" in {cost:.2f} of a full grid's epochs, within the seed noise of "
        f"the full grid in {search['within_seed_noise_of_grid']} of "
        f"{search['cells']} cells."
    )


def choice_block(summary):
    """The Markdown the README and the docs lead with, from the summary
    alone (a test checks that each page holds it verbatim)."""
    rows = [
        lead_sentence(summary),
        "",
        "| how the factor is chosen | worst | median | cells over 5 % "
        "| within the seed noise of the full grid | epochs, of the full "
        "grid's |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, name in METHOD_NAMES.items():
        entry = summary["regret"][method]
        noise = entry.get("within_seed_noise_of_grid")
        cells = entry["cells"]
        noise = "" if noise is None else f"{noise} of {cells}"
        cost = summary["cost"].get(method, {}).get("median")
        rows.append(
            f"| {name} | {_percent(entry['worst'])} "
            f"| {_percent(entry['median'])} "
            f"| {entry['over_5_percent']} of {cells} | {noise} "
            f"| {'' if cost is None else f'{cost:.2f}'} |"
        )
    rows += [
        "",
        "| rule | reused: worst | median | cells over 5 % |",
        "|---|---:|---:|---:|",
    ]
    for rule, entry in summary["reuse_by_rule"].items():
        rows.append(
            f"| `{rule}` | {_percent(entry['worst'])} "
            f"| {_percent(entry['median'])} "
            f"| {entry['over_5_percent']} of {entry['cells']} |"
        )
    setups = ", ".join(f"`{setup}`" for setup in summary["setups"])
    picks = summary["val_loss_picks_another_factor"]
    seeds = summary.get("seeds")
    return (
        "\n".join(rows)
        + "\n\nRegret: how much higher the test data loss is than at the "
        "full grid's best factor on test, per configuration and rule, the "
        f"mean over {seeds} seeds; a cell is within the seed noise when the "
        "95 % bootstrap interval of its paired difference to the full grid "
        f"reaches zero. Setups measured so far: {setups}. On `val_loss`, "
        "the full grid picks another factor than on `val_data_loss`, for "
        f"at least one seed, in {picks['cells_where_any_seed_differs']} of "
        f"{picks['cells']} cells."
        + _held_out_sentence(summary["regret_held_out"])
    )


def _held_out_sentence(held_out):
    """The search against the full grid and Hyperband on the setups its
    defaults were not chosen on."""
    if not held_out["setups"]:
        return ""
    search, grid = held_out["search"], held_out["grid"]
    hyperband = held_out["hyperband"]
    return (
        " On the setups its defaults were not chosen on ("
        + ", ".join(f"`{setup}`" for setup in held_out["setups"])
        + f"), `search_factor`'s worst regret is {_percent(search['worst'])} "
        f"and its median {_percent(search['median'])} (the full grid: "
        f"{_percent(grid['worst'])} and {_percent(grid['median'])}; "
        f"Hyperband on `val_data_loss`: {_percent(hyperband['worst'])} and "
        f"{_percent(hyperband['median'])}), within the seed noise of the "
        f"full grid in {search['within_seed_noise_of_grid']} of "
        f"{search['cells']} cells, at most "
        f"{_percent(search['worst_mean_excess_over_grid'])} above it in the "
        "mean."
    )


PAGES = ("README.md", "docs/pages/index.md", "docs/pages/scales.md")
BLOCK_START = (
    "<!-- factor-choice table: generated from "
    "benchmarks/results/factor_choice.json -->"
)
BLOCK_END = "<!-- end of the factor-choice table -->"


def pages_block(page_text):
    """The generated block a page holds between the markers."""
    inside = page_text.split(BLOCK_START, 1)[1].split(BLOCK_END, 1)[0]
    return inside.strip()


def write_pages(summary, root):
    """Writes `choice_block(summary)` between the markers of each page."""
    for name in PAGES:
        path = root / name
        text = path.read_text()
        before, rest = text.split(BLOCK_START, 1)
        _, after = rest.split(BLOCK_END, 1)
        block = choice_block(summary)
        path.write_text(
            f"{before}{BLOCK_START}\n\n{block}\n\n{BLOCK_END}{after}"
        )


def _percent(value):
    return "-" if value is None else f"{100 * value:.1f}%"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument(
        "--write-pages",
        action="store_true",
        help="write the summary's table into the README and the docs",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        help="train only groups whose key has this (repeatable)",
    )
    arguments = parser.parse_args(argv)
    settings = QUICK_SETTINGS if arguments.quick else FULL
    mode = "quick" if arguments.quick else "full"
    arguments.output.mkdir(parents=True, exist_ok=True)
    path = arguments.output / "factor_choice.json"
    backend = keras.config.backend()
    base = {
        "mode": mode,
        "backend": backend,
        "settings": json.loads(json.dumps(dataclasses.asdict(settings))),
        "split_seed": SPLIT_SEED,
    }
    records = []
    if path.exists():
        saved = json.loads(path.read_text())
        if arguments.no_train:
            base["backend"] = saved["backend"]
        if {k: saved.get(k) for k in base} != base:
            raise SystemExit(
                f"{path} holds another mode, backend or settings; remove it "
                "to train again"
            )
        records = saved["records"]
    if not arguments.no_train:
        only = arguments.only or (QUICK_ONLY if arguments.quick else [""])
        records = lambda_transfer.train_missing(
            ordered_groups(settings, only),
            lambda group: train(group, settings),
            path,
            base,
            records,
            writer=write,
        )
    summary = summarize(records, settings)
    write(path, {**base, "records": records, "summary": summary})
    print(format_table(summary))
    if arguments.write_pages:
        write_pages(summary, RESULTS.parent.parent)


if __name__ == "__main__":
    sys.exit(main())
