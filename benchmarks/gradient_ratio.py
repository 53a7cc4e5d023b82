"""Why a factor drifts: each layer's penalty gradient against its data gradient.

For the reference MLP of the transfer study and its widest and deepest
variants, on the synthetic data, trains one network per (optimizer,
variant) at the factor that was best on the reference model (read from
`results/lambda_transfer.json`), and prints, per layer, the ratio

    r = |d penalty / d kernel| / |d data loss / d kernel|

(Frobenius norms, data gradient over the whole training set) at
initialisation and after training, and their sum over the layers: how hard
the penalty pulls the whole network against the data. A factor transfers
when that pull stays put as the model grows.

    python benchmarks/gradient_ratio.py          # needs TensorFlow

Writes `results/gradient_ratio.json`.
"""

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
from transfer_study.data import load_data
from transfer_study.models import build_group
from transfer_study.settings import FULL, L2_VARIANTS, Group, Setup
from transfer_study.training import make_optimizer, member_regularizer

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
SHAPES = ((256, 4), (1024, 4), (256, 8), (256, 2))
"""(width, depth): the reference, the widest, the deepest, the shallowest."""


def layer_ratios(model, x, y):
    """Per kernel, |penalty gradient| / |data gradient| (float64 norms)."""
    kernels = [
        layer.kernel for layer in model.layers if hasattr(layer, "kernel")
    ]
    with tf.GradientTape(persistent=True) as tape:
        predictions = model(x)[:, 0]
        data_loss = tf.reduce_mean(tf.square(predictions - y))
        penalties = [layer.losses[0] for layer in model.layers if layer.losses]
    ratios = []
    for kernel, penalty in zip(kernels, penalties, strict=True):
        data = tape.gradient(data_loss, kernel).numpy().astype(np.float64)
        pull = tape.gradient(penalty, kernel).numpy().astype(np.float64)
        ratios.append(float(np.linalg.norm(pull) / np.linalg.norm(data)))
    return ratios


def best_reference_factors(summary):
    """Per (optimizer, variant), the best factor of the reference model."""
    shapes = FULL.shapes_of(Setup("mlp", "synthetic", "adam"))
    reference = shapes.widths.index(shapes.reference[0])
    return {
        (setup["optimizer"], row["variant"]): row["width"]["best_factors"][
            reference
        ]
        for setup in summary["setups"]
        if (setup["family"], setup["data"]) == ("mlp", "synthetic")
        and setup["optimizer"] != "adamw"
        for row in setup["scales"]
        if "width" in row
    }


def main():
    summary = json.loads((RESULTS / "lambda_transfer.json").read_text())[
        "summary"
    ]
    factors = best_reference_factors(summary)
    num_train = FULL.num_train["synthetic"][0]
    (x, y), _ = load_data("synthetic", num_train, FULL)
    rows = []
    for (optimizer, name), factor in sorted(factors.items()):
        variant = next(v for v in L2_VARIANTS if v.name == name)
        for width, depth in SHAPES:
            group = Group(
                "mlp", "synthetic", optimizer, width, depth, num_train, 0
            )
            keras.utils.clear_session()
            keras.utils.set_random_seed(0)
            model = build_group(
                [member_regularizer(variant, factor, group)],
                x.shape[1],
                width,
                depth,
                seed=0,
            )
            model.compile(
                optimizer=make_optimizer(optimizer), loss="mean_squared_error"
            )
            at_init = layer_ratios(model, x, y)
            model.fit(
                x,
                y,
                epochs=FULL.epochs["synthetic"],
                batch_size=FULL.batch_size["synthetic"],
                verbose=0,
            )
            rows.append(
                {
                    "optimizer": optimizer,
                    "variant": name,
                    "factor": factor,
                    "width": width,
                    "depth": depth,
                    "at_init": at_init,
                    "trained": layer_ratios(model, x, y),
                }
            )
            row = rows[-1]
            print(
                f"{optimizer:4} {name:13} w{width:<5} d{depth}  "
                f"init {_short(row['at_init'])}  trained "
                f"{_short(row['trained'])}",
                flush=True,
            )
    (RESULTS / "gradient_ratio.json").write_text(
        json.dumps({"rows": rows}, indent=1) + "\n"
    )


def _short(ratios):
    """First, median hidden and last layer's ratio, and their sum."""
    hidden = ratios[1:-1] or [float("nan")]
    return (
        f"in {ratios[0]:.3g} hidden {np.median(hidden):.3g} "
        f"out {ratios[-1]:.3g} sum {sum(ratios):.3g}"
    )


if __name__ == "__main__":
    sys.exit(main())
