"""Does one penalty factor transfer across width, depth and data size?

For every scale, sweeps the factor over a log grid on ReLU MLPs of widths
64, 256 and 1024 (depth 4) and depths 2, 4 and 8 (width 256), on two data
sets (the package's synthetic low-signal tabular data, and scikit-learn's
bundled digits), with Adam, and with SGD + momentum on the synthetic data;
then trains the reference model on a training set 4x smaller, with and
without `num_examples`. For each scale it reports the best factor
of every configuration and the *drift*: the ratio of the largest to the
smallest best factor across widths, depths and data sizes. A scale under
which one factor transfers has a drift near 1.

The best factor is the one with the lowest test data loss (mean over the
seeds), refined between grid points by a parabola in log10(factor). The
synthetic data is generated with `signal=0.5`: at the default 0.15 and 2000
training rows, no network beat the constant prediction's test loss by more
than 1 %, which leaves no optimum to locate.

Runs sharing a data set, optimizer, architecture, training-set size and
seed are trained together, as independent members of one Keras model (see
`transfer_study/training.py`). The study's code is the package `transfer_study/`
beside this script, one module per concern.

    KERAS_BACKEND=jax python benchmarks/lambda_transfer.py       # full run
    python benchmarks/lambda_transfer.py --quick --output DIR    # smoke run

The full run trains 3294 networks in 54 groups; epochs and data sizes are
chosen so that it takes 79 minutes on 2 CPU cores with JAX (TensorFlow is
slower here). Each record holds the group's fit time (`group_seconds`) and
size (`group_size`): members share one architecture, so each costs an
equal share.

The full run writes `benchmarks/results/lambda_transfer.json` (one record
per run, then the summary) and `lambda_transfer.png`; it resumes from the
records already in the JSON file when interrupted. `--table` prints the
README tables of an existing results file.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras
from transfer_study.settings import FULL, QUICK, Group, groups
from transfer_study.training import train_group

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------ main


def load_records(path, mode):
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    if saved.get("mode") != mode:
        raise SystemExit(
            f"{path} holds a {saved.get('mode')!r} run, not {mode!r}; "
            "pass --restart to overwrite it"
        )
    return saved["records"]


def write(path, payload):
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=1) + "\n")
    temporary.replace(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--restart", action="store_true")
    parser.add_argument("--table", action="store_true")
    parser.add_argument(
        "--only", default="", help="train only groups whose key has this"
    )
    arguments = parser.parse_args(argv)
    mode = "quick" if arguments.quick else "full"
    settings = QUICK if arguments.quick else FULL
    arguments.output.mkdir(parents=True, exist_ok=True)
    path = arguments.output / "lambda_transfer.json"
    if arguments.table:
        from transfer_study.report import format_tables

        print(format_tables(json.loads(path.read_text())["summary"]))
        return
    records = [] if arguments.restart else load_records(path, mode)
    done = {Group.of_record(r).key for r in records}
    start = time.perf_counter()
    base = {
        "mode": mode,
        "backend": keras.config.backend(),
        "settings": dataclasses.asdict(settings),
    }
    todo = [
        g
        for g in groups(settings)
        if g.key not in done and arguments.only in g.key
    ]
    for index, group in enumerate(todo, 1):
        records += train_group(group, settings)
        write(path, {**base, "records": records, "summary": None})
        print(
            f"[{index}/{len(todo)}] {group.key} "
            f"{records[-1]['group_seconds']:.1f} s "
            f"(total {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    if arguments.only:
        return
    from transfer_study.report import format_tables, plot
    from transfer_study.summary import summarize

    summary = summarize(records, settings)
    write(path, {**base, "records": records, "summary": summary})
    plot(summary, settings, arguments.output / "lambda_transfer.png")
    print(format_tables(summary))


if __name__ == "__main__":
    sys.exit(main())
