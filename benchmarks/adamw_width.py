"""Does AdamW's best decay grow with width because it decays the biases?

In the transfer study (`lambda_transfer.py`) the best `weight_decay` of
Keras's AdamW grows with the width of the tabular MLPs (3.8x and 9.1x from
64 to 1024 units). Keras's AdamW decays every variable, biases included,
and a wider network has more of them. This trains the study's width axis
of both tabular setups again (depth 4, widths 64, 256 and 1024, all rows,
the same grid, seeds, epochs and learning rate) with the decay on the
kernels only, as after `optimizer.exclude_from_weight_decay(
var_names=["bias"])`, and compares the best decays and their drift with
the study's.

    KERAS_BACKEND=jax python benchmarks/adamw_width.py
    python benchmarks/adamw_width.py --no-train   # summarize only

It resumes from the records in `results/adamw_width.json`, and reads the
study's summary from `results/lambda_transfer.json`.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lambda_transfer import follow_up, train_missing, write
from transfer_study.curves import axis_entry, complete_seeds, seed_losses
from transfer_study.report import format_drift, format_plateau_gap
from transfer_study.settings import FULL, TABULAR, Group, Setup
from transfer_study.summary import scale_row
from transfer_study.training import train_group

VARIANT = "adamw"


def width_configs(data, settings=FULL):
    """The study's width axis of the tabular MLP under AdamW."""
    shapes = settings.shapes_of(Setup("mlp", data, "adamw"))
    depth = shapes.reference[1]
    rows = settings.num_train[data][0]
    return [
        {
            **Setup("mlp", data, "adamw")._asdict(),
            "width": width,
            "depth": depth,
            "num_train": rows,
        }
        for width in shapes.widths
    ]


def to_train(settings=FULL):
    return [
        Group(**config, seed=seed)
        for seed in settings.seeds
        for data in TABULAR
        for config in width_configs(data, settings)
    ]


def train(group):
    """One group with the decay on its kernels only."""
    trained = train_group(group, FULL, (VARIANT,), decay_biases=False)
    return [{**r, "decay_biases": False} for r in trained]


def summarize(records, study_summary, settings=FULL):
    """Per data set: the width axis with kernels only, and the study's."""
    result = []
    for data in TABULAR:
        study = scale_row(study_summary, Setup("mlp", data, "adamw"), VARIANT)[
            "width"
        ]
        configs = width_configs(data, settings)
        seeds = complete_seeds(records, {"width": configs})
        chosen = [r for r in records if r["seed"] in seeds]
        curves = [seed_losses(chosen, c, VARIANT) for c in configs]
        result.append(
            {
                "data": data,
                "seeds": seeds,
                "complete": seeds == list(settings.seeds),
                "widths": [c["width"] for c in configs],
                "kernels only": axis_entry(
                    curves, f"mlp/{data}/adamw/kernels only/width"
                ),
                "every variable": study,
            }
        )
    return {"setups": result}


def format_table(summary):
    lines = [
        "| data | decayed | best decay per width | drift (95 %) "
        "| plateau gap |",
        "|---|---|---:|---:|---:|",
    ]
    for setup in summary["setups"]:
        for which in ("every variable", "kernels only"):
            entry = setup[which]
            bests = ", ".join(f"{b:.3g}" for b in entry["best_factors"])
            cells = [bests, format_drift(entry), format_plateau_gap(entry)]
            lines.append(
                f"| {setup['data']} | {which} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-train", action="store_true")
    arguments = parser.parse_args(argv)
    study, path, base, records = follow_up(
        "adamw_width.json", {}, train_now=not arguments.no_train
    )
    todo = [] if arguments.no_train else to_train()
    records = train_missing(todo, train, path, base, records)
    summary = summarize(records, study["summary"])
    write(path, {**base, "records": records, "summary": summary})
    print(format_table(summary))


if __name__ == "__main__":
    sys.exit(main())
