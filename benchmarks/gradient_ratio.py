"""Why a factor drifts: each layer's penalty gradient against its data gradient.

For the reference MLP of the transfer study and its widest, deepest and
shallowest variants, trains one network per (optimizer, variant) at the
factor that was best on the reference model (read from
`results/lambda_transfer.json`), and prints, per layer, the ratio

    r = |d penalty / d kernel| / |d data loss / d kernel|

(Frobenius norms, data gradient over the whole training set) at
initialisation and after training, and their sum over the layers: how hard
the penalty pulls the whole network against the data. A factor transfers
when that pull stays put as the model grows.

Two data sets: the synthetic tabular data (widths 256 and 1024 at depth 4,
depths 2, 4 and 8) and MNIST-1D (width 128, depths 1, 2 and 4), each with
Adam and SGD, plain L2 and `none/kernels` (and `balanced` on the
synthetic data).

With `--decay`, on a tabular data set: Keras's AdamW on the study's width
axis (widths 64, 256 and 1024 at depth 4), at the decay that was best on
the reference model and at none. At the decay, each kernel's root mean
square weight at initialisation and after training; without it, how far
Adam moved each kernel relative to its initial norm. Then, per width and
seed, Adam with coupled `none/kernels` at that width's best factor, and
the decay that coupling amounts to (`equivalent_decay`), to set beside
AdamW's best decay (the scales page's table:
`adam_decay.equivalent_decay_table`).

    python benchmarks/gradient_ratio.py                          # synthetic
    python benchmarks/gradient_ratio.py --data mnist1d
    python benchmarks/gradient_ratio.py --decay --data diabetes

Needs TensorFlow (the gradients are taken with `tf.GradientTape`). Writes
its rows into `results/gradient_ratio.json`, in place of the rows of the
same data set and kind.
"""

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras
import numpy as np
import tensorflow as tf
from transfer_study.adam_decay import coupled_decay_rate
from transfer_study.data import load_data
from transfer_study.models import CLASSES, build_mlp_group
from transfer_study.settings import FULL, L2_VARIANTS, TABULAR, Group, Setup
from transfer_study.summary import scale_row
from transfer_study.training import (
    group_cross_entropy,
    group_mse,
    make_optimizer,
    member_regularizer,
)

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SHAPES = {
    "synthetic": ((256, 4), (1024, 4), (256, 8), (256, 2)),
    "mnist1d": ((128, 2), (128, 4), (128, 1)),
}
"""(width, depth): the reference first, then the widest, deepest, shallowest."""
VARIANTS = {
    "synthetic": ("balanced", "none", "none/kernels"),
    "mnist1d": ("none", "none/kernels"),
}
LOSSES = {
    "synthetic": group_mse,
    "diabetes": group_mse,
    "mnist1d": group_cross_entropy,
}
OUTPUTS = {"synthetic": 1, "diabetes": 1, "mnist1d": CLASSES}


def layer_ratios(model, x, y, loss):
    """Per kernel, |penalty gradient| / |data gradient| (float64 norms)."""
    kernels = _kernel_variables(model)
    with tf.GradientTape(persistent=True) as tape:
        data_loss = tf.reduce_mean(loss(y, model(x)))
        penalties = [layer.losses[0] for layer in model.layers if layer.losses]
    ratios = []
    for kernel, penalty in zip(kernels, penalties, strict=True):
        data = tape.gradient(data_loss, kernel).numpy().astype(np.float64)
        pull = tape.gradient(penalty, kernel).numpy().astype(np.float64)
        ratios.append(float(np.linalg.norm(pull) / np.linalg.norm(data)))
    return ratios


def best_reference_factors(summary, data):
    """Per (optimizer, variant), the best factor of the reference MLP."""
    shapes = FULL.shapes_of(Setup("mlp", data, "adam"))
    reference = shapes.widths.index(shapes.reference[0])
    return {
        (setup["optimizer"], row["variant"]): row["width"]["best_factors"][
            reference
        ]
        for setup in summary["setups"]
        if (setup["family"], setup["data"]) == ("mlp", data)
        and setup["optimizer"] != "adamw"
        for row in setup["scales"]
        if row["variant"] in VARIANTS[data]
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=sorted(LOSSES), default="synthetic")
    parser.add_argument(
        "--decay",
        action="store_true",
        help="AdamW at one decay across width: its kernels' scale",
    )
    arguments = parser.parse_args(argv)
    data = arguments.data
    summary = json.loads((RESULTS / "lambda_transfer.json").read_text())[
        "summary"
    ]
    if arguments.decay:
        if data not in TABULAR:
            parser.error(f"--decay measures the tabular MLPs, not {data}")
        rows = measure_decay(summary, data)
        _write_rows(
            rows, lambda r: r["optimizer"] == "adamw" and r["data"] == data
        )
        return
    factors = best_reference_factors(summary, data)
    num_train = FULL.num_train[data][0]
    (x, y), _ = load_data(data, num_train, FULL)
    rows = []
    for (optimizer, name), factor in sorted(factors.items()):
        variant = next(v for v in L2_VARIANTS if v.name == name)
        for width, depth in SHAPES[data]:
            group = Group("mlp", data, optimizer, width, depth, num_train, 0)
            rows.append(train_and_measure(group, variant, factor, x, y))
            row = rows[-1]
            print(
                f"{optimizer:4} {name:13} w{width:<5} d{depth}  "
                f"init {_short(row['at_init'])}  trained "
                f"{_short(row['trained'])}",
                flush=True,
            )
    _write_rows(rows, lambda r: r["optimizer"] != "adamw" and r["data"] == data)


def _write_rows(rows, replaced):
    """`rows` into the results file, in place of the rows `replaced` picks."""
    path = RESULTS / "gradient_ratio.json"
    kept = (
        [r for r in json.loads(path.read_text())["rows"] if not replaced(r)]
        if path.exists()
        else []
    )
    path.write_text(json.dumps({"rows": kept + rows}, indent=1) + "\n")


def measure_decay(summary, data):
    """Per width of the AdamW axis, how AdamW's kernels shrink and move
    (`_adamw_scale`), and the decay coupled L2 amounts to under Adam
    (`coupled_equivalent_decay`, every seed), beside the study's best
    decays."""
    shapes = FULL.shapes_of(Setup("mlp", data, "adamw"))
    depth = shapes.reference[1]
    adamw = scale_row(summary, Setup("mlp", data, "adamw"), "adamw")["width"]
    coupled = scale_row(summary, Setup("mlp", data, "adam"), "none/kernels")
    decay = adamw["best_factors"][shapes.widths.index(shapes.reference[0])]
    num_train = FULL.num_train[data][0]
    (x, y), _ = load_data(data, num_train, FULL)
    rows = []
    for index, width in enumerate(shapes.widths):
        factor = coupled["width"]["best_factors"][index]
        row = {
            "data": data,
            "optimizer": "adamw",
            "variant": "adamw",
            "factor": decay,
            "width": width,
            "depth": depth,
            **_adamw_scale(data, width, depth, decay, x, y),
            "best_adamw_decay": adamw["best_factors"][index],
            "best_coupled_factor": factor,
            "equivalent_decay": [
                coupled_equivalent_decay(
                    Group("mlp", data, "adam", width, depth, num_train, seed),
                    factor,
                    x,
                    y,
                )
                for seed in FULL.seeds
            ],
        }
        rows.append(row)
        equivalent = row["equivalent_decay"]
        print(
            f"adamw w{width:<5} d{depth}  "
            f"rms init {_short(row['rms_at_init'])}  "
            f"trained {_short(row['rms_trained'])}  moved without decay "
            f"{_short(row['moved_without_decay'])}\n"
            f"      coupled none/kernels at {factor:.3g}: equivalent decay "
            f"{np.median(equivalent):.3g} ({min(equivalent):.3g}-"
            f"{max(equivalent):.3g} over {len(equivalent)} seeds); AdamW's "
            f"best decay {row['best_adamw_decay']:.3g}",
            flush=True,
        )
    return rows


def _adamw_scale(data, width, depth, decay, x, y):
    """AdamW at `decay`: each kernel's root mean square weight at
    initialisation and after training. Without decay: how far Adam moved
    each kernel, `|W_trained - W_init| / |W_init|` (Frobenius norms)."""
    initial, decayed = _train_adamw(data, width, depth, decay, x, y)
    start, undecayed = _train_adamw(data, width, depth, 0.0, x, y)
    return {
        "rms_at_init": [_rms(w) for w in initial],
        "rms_trained": [_rms(w) for w in decayed],
        "moved_without_decay": [
            float(np.linalg.norm(end - begin) / np.linalg.norm(begin))
            for begin, end in zip(start, undecayed, strict=True)
        ],
    }


def coupled_equivalent_decay(group, factor, x, y):
    """The AdamW decay that coupled `none/kernels` under Adam amounts to.

    Trains the group's MLP with Adam and the coupled penalty at `factor`,
    and averages `adam_decay.coupled_decay_rate` over the training steps.
    """
    variant = next(v for v in L2_VARIANTS if v.name == "none/kernels")
    regularizer = member_regularizer(variant, factor, group)
    model, optimizer = _compiled_mlp(group, regularizer, x)
    kernels = _kernel_variables(model)
    pulls = [2 * factor * regularizer.multiplier(k.shape) for k in kernels]
    rates = []
    _fit(
        model,
        group.data,
        x,
        y,
        callbacks=[
            keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda batch, logs: rates.append(
                    coupled_decay_rate(optimizer, kernels, pulls)
                )
            )
        ],
    )
    return float(np.mean(rates))


def _train_adamw(data, width, depth, decay, x, y):
    """The kernels (float64) of an MLP before and after AdamW (seed 0)."""
    group = Group("mlp", data, "adamw", width, depth, len(x), 0)
    model, _ = _compiled_mlp(group, None, x, [decay])
    initial = _kernels(model)
    _fit(model, group.data, x, y)
    return initial, _kernels(model)


def _compiled_mlp(group, regularizer, x, decays=None):
    """The group's one-member MLP for inputs like `x`, `regularizer` on its
    kernels, compiled with the group's optimizer (`decays`: AdamW's) at the
    study's learning rate; returns it and the optimizer. Seeded by the
    group."""
    keras.utils.clear_session()
    keras.utils.set_random_seed(group.seed)
    model = build_mlp_group(
        [regularizer],
        x.shape[1],
        group.width,
        group.depth,
        group.seed,
        OUTPUTS[group.data],
    )
    optimizer = make_optimizer(
        group.optimizer,
        decays,
        FULL.learning_rates[group.data][group.optimizer],
    )
    model.compile(optimizer=optimizer, loss=LOSSES[group.data])
    return model, optimizer


def _fit(model, data, x, y, callbacks=None):
    """Trains `model` as the study trains on `data`."""
    model.fit(
        x,
        y,
        epochs=FULL.epochs[data],
        batch_size=FULL.batch_size[data],
        verbose=0,
        callbacks=callbacks,
    )


def _kernel_variables(model):
    return [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]


def _kernels(model):
    return [k.numpy().astype(np.float64) for k in _kernel_variables(model)]


def _rms(weights):
    return float(np.sqrt(np.mean(weights**2)))


def train_and_measure(group, variant, factor, x, y):
    """One network at `factor`: its ratios at initialisation and trained."""
    data = group.data
    model, _ = _compiled_mlp(
        group, member_regularizer(variant, factor, group), x
    )
    at_init = layer_ratios(model, x, y, LOSSES[data])
    _fit(model, data, x, y)
    return {
        "data": data,
        "optimizer": group.optimizer,
        "variant": variant.name,
        "factor": factor,
        "width": group.width,
        "depth": group.depth,
        "at_init": at_init,
        "trained": layer_ratios(model, x, y, LOSSES[data]),
    }


def _short(ratios):
    """First, median hidden and last layer's ratio, and their sum."""
    hidden = ratios[1:-1] or [float("nan")]
    return (
        f"in {ratios[0]:.3g} hidden {np.median(hidden):.3g} "
        f"out {ratios[-1]:.3g} sum {sum(ratios):.3g}"
    )


if __name__ == "__main__":
    sys.exit(main())
