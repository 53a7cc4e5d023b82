"""Beyond one rule along one axis: candidates, baselines, families.

- `candidate_rows` / `candidate_summary`: rules derived from the `none`
  runs (`derived.CANDIDATES`), and the depth exponent chosen by optimizer;
- `baselines`: the unpenalized members of the MNIST-1D reference models,
  against the accuracies MNIST-1D publishes;
- `across_families`: each family's best factor on its reference model, and
  how far apart they lie;
- `gain_over_unpenalized`: how much the best factor improves on no penalty
  at all, per configuration (where a penalty does not help, its best
  factor lies on a flat stretch and is poorly determined).
"""

import numpy as np

from transfer_study.curves import (
    TARGET_DRIFT,
    axis_entry,
    complete_seeds,
    entry_rng,
    matches,
    mean_interval,
    seed_losses,
)
from transfer_study.derived import CANDIDATE_AXES
from transfer_study.settings import AXES, SETUPS, summarized_variants

OPTIMIZER_RULE = {"adam": "none/kernels", "sgd": "none/kernels^2"}
"""The depth exponent by optimizer: 1 under Adam, 2 under SGD. Chosen after
seeing the tabular SGD results: exploratory until other setups confirm it."""

PUBLISHED_ACCURACY = {"mlp": 0.68, "cnn": 0.94}
"""MNIST-1D's own README: test accuracy of its MLP and CNN, unpenalized."""
ANCHOR_POINTS = 0.03
"""How close (in accuracy) a baseline must come to the published one."""


def candidate_rows(records, configs_by_axis, key):
    """The candidate rules along their axes; `key` names the setup."""
    rows = []
    for name, axes in CANDIDATE_AXES.items():
        row = {"variant": name}
        for axis in axes:
            curves = [
                seed_losses(records, c, name) for c in configs_by_axis[axis]
            ]
            row[axis] = axis_entry(curves, f"{key}/{name}/{axis}")
        rows.append(row)
    return rows


def candidate_summary(setups):
    """Worst drift of each candidate rule over the coupled setups given.

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
        uppers = [
            entry["drift_interval"][1]
            for entry in entries
            if entry["drift_interval"] is not None
        ]
        found.append(
            {
                "rule": rule,
                "worst_drift": worst,
                "worst_drift_upper": max(uppers) if uppers else None,
                "within_target": worst <= TARGET_DRIFT
                and not any(any(entry["at_edge"]) for entry in entries),
                "comparisons": len(entries),
                "within_2x": sum(
                    entry["drift"] <= TARGET_DRIFT for entry in entries
                ),
            }
        )
    return found


def _reference_config(setup, settings):
    width, depth = settings.shapes_of(setup).reference
    return {
        **setup._asdict(),
        "width": width,
        "depth": depth,
        "num_train": settings.num_train[setup.data][0],
    }


def baselines(records, settings):
    """The unpenalized members of the reference models, per MNIST-1D setup.

    Per family under Adam and SGD (AdamW's unpenalized member, decay 0 at
    Adam's rate, is the Adam run again): the mean test accuracy over the
    seeds, its 95 % bootstrap interval (`None` with one seed), the
    published accuracy where there is one, and whether the mean lies within
    `ANCHOR_POINTS` of it.
    """
    found = []
    for setup in SETUPS:
        if setup.data != "mnist1d" or setup.optimizer == "adamw":
            continue
        config = _reference_config(setup, settings)
        accuracies = np.array(
            [
                r["test_metric"]
                for r in sorted(records, key=lambda r: r["seed"])
                if r["variant"] == "unpenalized" and matches(r, config)
            ]
        )
        if not len(accuracies):
            continue
        interval = None
        if len(accuracies) > 1:
            rng = entry_rng(f"baseline/{setup.family}/{setup.optimizer}")
            interval = mean_interval(accuracies, rng)
        published = PUBLISHED_ACCURACY.get(setup.family)
        mean = float(accuracies.mean())
        found.append(
            {
                **setup._asdict(),
                "width": config["width"],
                "depth": config["depth"],
                "seeds": len(accuracies),
                "test_accuracy": mean,
                "test_accuracy_interval": interval,
                "published_accuracy": published,
                "within_anchor": None
                if published is None
                else abs(mean - published) <= ANCHOR_POINTS,
            }
        )
    return found


def across_families(records, settings):
    """Per MNIST-1D optimizer and variant: each family's reference best.

    The best factor of each family's reference model (at the full data
    size), and their drift (largest / smallest) with a 95 % bootstrap
    interval: the seeds every family's reference has are resampled, one
    draw for all families. Families whose reference has none of those
    seeds yet are left out; at least two are needed.
    """
    found = []
    for optimizer in ("adam", "sgd", "adamw"):
        setups = [
            s
            for s in SETUPS
            if s.data == "mnist1d" and s.optimizer == optimizer
        ]
        configs = {}
        for setup in setups:
            config = _reference_config(setup, settings)
            if complete_seeds(records, {"reference": [config]}):
                configs[setup.family] = config
        seeds = complete_seeds(records, {"reference": list(configs.values())})
        if len(configs) < 2 or not seeds:
            continue
        chosen = [r for r in records if r["seed"] in seeds]
        trained = [
            summarized_variants(s) for s in setups if s.family in configs
        ]
        names = [
            v.name
            for v in trained[0]
            if not v.num_examples and all(v in t for t in trained)
        ]
        for name in names:
            curves = [seed_losses(chosen, c, name) for c in configs.values()]
            entry = axis_entry(curves, f"families/{optimizer}/{name}")
            found.append(
                {
                    "data": "mnist1d",
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


def gain_over_unpenalized(records, configs_by_axis, variants):
    """Per trained variant: the best mean test loss over the unpenalized one.

    For every configuration of a MNIST-1D setup (whose groups each train an
    unpenalized member), `best / unpenalized - 1` with both means over the
    seeds given in `records`: negative where the penalty helps. Returns
    `{variant: [change per configuration]}` and the configurations' names.
    """
    configs = {}
    for axis_configs in configs_by_axis.values():
        for config in axis_configs:
            name = (
                f"w{config['width']}/d{config['depth']}/n{config['num_train']}"
            )
            configs[name] = config
    gains = {}
    for variant in variants:
        changes = []
        for config in configs.values():
            _, losses, _, _ = seed_losses(records, config, variant)
            _, plain, _, _ = seed_losses(
                records, config, "unpenalized", lattice_only=False
            )
            best = float(np.min(losses.mean(axis=0)))
            changes.append(best / float(plain.mean()) - 1)
        gains[variant] = changes
    return {"configurations": list(configs), "change": gains}
