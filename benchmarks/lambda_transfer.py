"""Does one penalty factor transfer across width, depth and data size?

Two parts, each sweeping the factor of every rule over a half-decade grid,
with 5 seeds, under three optimizers: Adam and SGD with momentum with
coupled penalties, and AdamW with Keras's decoupled `weight_decay`.

- MLPs on tabular data: ReLU MLPs of widths 64, 256 and 1024 (depth 4) and
  depths 2, 4 and 8 (width 256), and the reference model (256 wide, 4
  deep) on 4x fewer rows, on the package's synthetic low-signal tabular
  data (2000 rows, 10 epochs) and scikit-learn's bundled diabetes
  regression (331 training rows, 30 epochs); Adam and AdamW at 1e-3, SGD
  at 1e-2 (momentum 0.9).
- Three families on MNIST-1D (4000 training rows, 30 epochs, generated
  locally by the `mnist1d` package): an MLP, a stack of `Conv1D` and a
  pre-norm transformer encoder, each 8x in width, 4x in depth, and the
  reference model on 4x fewer rows; Adam and AdamW at 1e-2, SGD at 5e-2.
  Every group has an unpenalized member: the families' baselines.

Rules (see `transfer_study/settings.py`): plain L2 (`none`, Keras's own
`L2`), `balanced`, `none/kernels` (plain L2 divided by the number of
penalised kernels, as `attach_regularizer(..., normalize_depth=True)` sets
it), `none+num_examples` (the `lambda/(2m)` convention, on the data-size
axis), under AdamW the decay as Keras applies it (`adamw`) and divided by
the number of kernels (`adamw/kernels`), the `size`, `fan_in` and `fan_out`
scales on the CNN under Adam, and candidate rules derived from the `none`
runs (`transfer_study/derived.py`).

For each rule it reports the best factor of every configuration (the
vertex of a parabola fitted to the mean test loss over the seeds against
log10(factor)) and the *drift*: the ratio of the largest to the smallest
best factor along an axis, with a 95 % bootstrap interval over the seeds.
A rule under which one factor transfers has a drift near 1.

Runs sharing a data set, optimizer, architecture, training-set size and
seed are trained together, as independent members of one Keras model (see
`transfer_study/training.py`). The study's code is the package
`transfer_study/` beside this script, one module per concern.

    KERAS_BACKEND=jax python benchmarks/lambda_transfer.py       # full run
    python benchmarks/lambda_transfer.py --quick --output DIR    # smoke run

The full run trains 450 groups, seed by seed, so that an interrupted run
already covers every configuration with fewer seeds. Each record holds the
group's fit time (`group_seconds`) and size (`group_size`). It writes
`benchmarks/results/lambda_transfer.json` (one record per run, then the
summary) and one plot per family (`lambda_transfer_{family}.png`), and
resumes from the records already in the JSON file when interrupted, with
the backend they were trained with. `--no-train` summarizes the records
there; `--table` prints the tables of an existing summary.
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
from transfer_study.settings import FAMILIES, FULL, QUICK, Group, groups
from transfer_study.training import train_group

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------ main


def load_records(path, mode, settings, backend):
    """The records to resume from: only those of this mode, settings and
    backend (`None`: any backend, when nothing is trained)."""
    if not path.exists():
        return []
    saved = json.loads(path.read_text())
    if backend is not None and saved.get("backend") != backend:
        raise SystemExit(
            f"{path} was trained with KERAS_BACKEND={saved.get('backend')}, "
            f"not {backend}: resume it with that backend, or pass --restart"
        )
    if saved.get("mode") != mode:
        raise SystemExit(
            f"{path} holds a {saved.get('mode')!r} run, not {mode!r}; "
            "pass --restart to overwrite it"
        )
    if saved.get("settings") != _as_json(dataclasses.asdict(settings)):
        raise SystemExit(
            f"{path} was trained with other settings than this study's; "
            "pass --restart to overwrite it"
        )
    return saved["records"]


def _as_json(value):
    """`value` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def write(path, payload):
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload, indent=1) + "\n")
    temporary.replace(path)


def follow_up(name, settings, train_now):
    """`(study, path, base, records)` for a follow-up run of the study.

    A follow-up (`data_size_steps.py`, `adamw_width.py`) reads the study's
    results, trains with its backend, and writes `results/{name}`, whose
    `base` holds that backend and the follow-up's `settings`. It resumes
    from the records there, only when they were trained with both.
    """
    study = json.loads((RESULTS / "lambda_transfer.json").read_text())
    backend = study["backend"]
    if train_now and keras.config.backend() != backend:
        raise SystemExit(f"train with KERAS_BACKEND={backend}, the study's")
    path = RESULTS / name
    base = {
        "backend": backend,
        "settings": _as_json({"study": "lambda_transfer.json", **settings}),
    }
    records = []
    if path.exists():
        saved = json.loads(path.read_text())
        if {k: saved.get(k) for k in base} != base:
            raise SystemExit(
                f"{path} was trained with another backend or other settings "
                f"than {base}; remove it to train again"
            )
        records = saved["records"]
    return study, path, base, records


def train_missing(groups, train, path, base, records, writer=None):
    """Trains each of `groups` that `records` lacks; returns all records.

    `train(group)` returns the group's records. After each group every
    record is written to `path` (with `base`, and no summary yet) by
    `writer` (default: `write`), so that an interrupted run resumes from
    there, and the progress is printed.
    """
    writer = write if writer is None else writer
    done = {Group.of_record(r).key for r in records}
    todo = [g for g in groups if g.key not in done]
    start = time.perf_counter()
    for index, group in enumerate(todo, 1):
        trained = train(group)
        if not trained:
            raise RuntimeError(f"training {group.key} gave no records")
        records = records + trained
        writer(path, {**base, "records": records, "summary": None})
        print(
            f"[{index}/{len(todo)}] {group.key} "
            f"{records[-1]['group_seconds']:.1f} s "
            f"(total {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    parser.add_argument("--restart", action="store_true")
    parser.add_argument("--table", action="store_true")
    parser.add_argument(
        "--only", default="", help="train only groups whose key has this"
    )
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="summarize the records already in the results file",
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
    backend = keras.config.backend()
    if arguments.no_train:
        saved = json.loads(path.read_text())
        backend = saved["backend"]
        records = load_records(path, mode, settings, backend)
        todo = []
    else:
        records = (
            []
            if arguments.restart
            else load_records(path, mode, settings, backend)
        )
        todo = [g for g in groups(settings) if arguments.only in g.key]
    base = {
        "mode": mode,
        "backend": backend,
        "settings": dataclasses.asdict(settings),
    }
    records = train_missing(
        todo, lambda group: train_group(group, settings), path, base, records
    )
    if arguments.only:
        return
    from transfer_study.report import format_tables, plot
    from transfer_study.summary import summarize

    summary = summarize(records, settings)
    write(path, {**base, "records": records, "summary": summary})
    for family in FAMILIES:
        plot(
            summary,
            settings,
            family,
            arguments.output / f"lambda_transfer_{family}.png",
        )
    print(format_tables(summary))


if __name__ == "__main__":
    sys.exit(main())
