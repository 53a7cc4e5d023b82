"""Fine-tuning with few rows: no penalty, L2 toward zero, or toward the start.

Reproduces, on a task that runs offline on two CPU cores, the claim of
Li, Grandvalet and Davoine (2018, "Explicit Inductive Bias for Transfer
Learning with Convolutional Networks"): when a pretrained network is
fine-tuned on few rows, penalising the distance to the pretrained weights
(L2-SP) beats penalising the weights themselves (L2 toward zero).

- Pretraining: a 1-D CNN (three `Conv1D` of 32 channels, then a dense
  head) learns MNIST-1D's digits 0-4 from all their training rows.
- Fine-tuning: a new head for digits 5-9, trained with `--rows` rows per
  class (all layers trainable, Adam, full batch), under
  - `none`: no penalty;
  - `zero`: `ScaledL2(factor)` toward zero on every kernel;
  - `start`: `attach_regularizer(model, ScaledL2(factor),
    anchor="backbone")`, the pretrained kernels toward their starting
    weights and the new head toward zero, one call, one factor;
  - `start_head`: as the paper does, the pretrained kernels toward their
    starting weights at `factor`, the new head toward zero at a fixed
    `HEAD_FACTOR` (two calls);
  - `frozen`: the pretrained backbone frozen, only the head trained, no
    penalty (the limit of a very large starting-point factor);
  - `scratch`: the same network from random weights, no penalty (what
    pretraining is worth).
- Each penalty over a grid of factors; every seed pretrains anew and draws
  its own fine-tuning rows. The factor of each method is chosen on
  validation rows (other training rows of digits 5-9), and its test
  accuracy (MNIST-1D's test rows of digits 5-9) is reported with a
  bootstrap interval over the seeds, as is the paired difference.

    python benchmarks/starting_point_study.py [--seeds 5] [--quick]

Results go to `benchmarks/results/starting_point.json`; a run resumes from
the seeds it holds. MNIST-1D is generated locally by the `mnist1d`
package (the `notebooks` extra), nothing is downloaded.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras
import numpy as np
from transfer_study.curves import mean_interval
from transfer_study.data import load_data

from keras_scaled_l2 import ScaledL2, attach_regularizer

RESULTS = os.path.join(
    os.path.dirname(__file__), "results", "starting_point.json"
)
FACTORS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
PENALISED = ("zero", "start", "start_head")
HEAD_FACTOR = 0.01
CHANNELS = 32
PRETRAIN_EPOCHS = 30
FINE_TUNE_EPOCHS = 150
VALIDATION_ROWS_PER_CLASS = 50


def split(seed, rows_per_class):
    """Pretraining, fine-tuning, validation and test sets for one seed."""
    (x, y), (x_test, y_test) = load_data("mnist1d", 4000, None)
    first = y < 5
    pretrain = (x[first], y[first])
    rng = np.random.default_rng(seed)
    train_rows, validation_rows = [], []
    for digit in range(5, 10):
        rows = rng.permutation(np.flatnonzero(y == digit))
        train_rows += list(rows[:rows_per_class])
        validation_rows += list(
            rows[rows_per_class : rows_per_class + VALIDATION_ROWS_PER_CLASS]
        )
    second_test = y_test >= 5
    return (
        pretrain,
        (x[train_rows], y[train_rows] - 5),
        (x[validation_rows], y[validation_rows] - 5),
        (x_test[second_test], y_test[second_test] - 5),
    )


def backbone(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((40,)),
            keras.layers.Reshape((40, 1)),
            keras.layers.Conv1D(CHANNELS, 5, 2, "same", activation="relu"),
            keras.layers.Conv1D(CHANNELS, 3, 2, "same", activation="relu"),
            keras.layers.Conv1D(CHANNELS, 3, 1, "same", activation="relu"),
            keras.layers.Flatten(),
        ],
        name="backbone",
    )


def classifier(body, seed):
    keras.utils.set_random_seed(seed + 1000)
    return keras.Sequential([body, keras.layers.Dense(5, name="head")])


def compile_and_fit(model, data, epochs, batch_size, learning_rate):
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(*data, epochs=epochs, batch_size=batch_size, verbose=0)


def accuracy(model, data):
    logits = model.predict(data[0], batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == data[1]))


def pretrained_weights(seed, pretrain):
    model = classifier(backbone(seed), seed)
    compile_and_fit(model, pretrain, PRETRAIN_EPOCHS, 64, 1e-3)
    return model.layers[0].get_weights()


def fine_tune(seed, weights, method, factor, sets, learning_rate):
    _, train, validation, test = sets
    body = backbone(seed)
    if weights is not None:
        body.set_weights(weights)
    model = classifier(body, seed)
    if method == "zero":
        attach_regularizer(model, ScaledL2(factor))
    elif method == "start":
        attach_regularizer(model, ScaledL2(factor), anchor="backbone")
    elif method == "start_head":
        attach_regularizer(
            model, ScaledL2(factor), include="backbone", anchor=True
        )
        attach_regularizer(model, ScaledL2(HEAD_FACTOR), exclude="backbone")
    elif method == "frozen":
        body.trainable = False
    compile_and_fit(
        model, train, FINE_TUNE_EPOCHS, len(train[0]), learning_rate
    )
    return {
        "validation": accuracy(model, validation),
        "test": accuracy(model, test),
    }


def run_seed(seed, settings):
    sets = split(seed, settings["rows_per_class"])
    weights = pretrained_weights(seed, sets[0])
    rate = settings["learning_rate"]
    runs = {
        "none": fine_tune(seed, weights, "none", None, sets, rate),
        "scratch": fine_tune(seed, None, "none", None, sets, rate),
        "frozen": fine_tune(seed, weights, "frozen", None, sets, rate),
    }
    for method in PENALISED:
        for factor in settings["factors"]:
            runs[f"{method} {factor:g}"] = fine_tune(
                seed, weights, method, factor, sets, rate
            )
    return runs


def bootstrap(values, draws=10000, seed=0):
    """Mean and 95 % percentile interval of the mean, over seeds."""
    low, high = mean_interval(values, np.random.default_rng(seed), draws)
    return {"mean": float(np.mean(values)), "low": low, "high": high}


def summarize(per_seed, factors):
    seeds = sorted(per_seed, key=int)
    table = {}
    for key in per_seed[seeds[0]]:
        table[key] = {
            part: bootstrap([per_seed[s][key][part] for s in seeds])
            for part in ("validation", "test")
        }
    chosen = {"none": "none", "scratch": "scratch", "frozen": "frozen"}
    for method in PENALISED:
        keys = [f"{method} {f:g}" for f in factors]
        best = max(keys, key=lambda k: table[k]["validation"]["mean"])
        chosen[method] = best
    best = {
        method: {
            "run": key,
            "factor": None if " " not in key else float(key.split()[1]),
            "at_edge": key.split()[-1]
            in (f"{factors[0]:g}", f"{factors[-1]:g}"),
            "test": table[key]["test"],
        }
        for method, key in chosen.items()
    }

    def paired(a, b):
        return bootstrap(
            [
                per_seed[s][chosen[a]]["test"] - per_seed[s][chosen[b]]["test"]
                for s in seeds
            ]
        )

    return {
        "seeds": len(seeds),
        "table": table,
        "best": best,
        "differences": {
            "start - zero": paired("start", "zero"),
            "start_head - zero": paired("start_head", "zero"),
            "start - none": paired("start", "none"),
            "start_head - none": paired("start_head", "none"),
            "frozen - none": paired("frozen", "none"),
            "zero - none": paired("zero", "none"),
            "none - scratch": paired("none", "scratch"),
        },
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rows-per-class", type=int, default=10)
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="Adam's learning rate for fine-tuning (pretraining: 1e-3)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="two seeds, three factors, not saved: a check that it runs",
    )
    arguments = parser.parse_args()
    factors = FACTORS[2:5] if arguments.quick else FACTORS
    seeds = 2 if arguments.quick else arguments.seeds
    settings = {
        "rows_per_class": arguments.rows_per_class,
        "learning_rate": arguments.learning_rate,
        "factors": list(factors),
        "channels": CHANNELS,
        "pretrain_epochs": PRETRAIN_EPOCHS,
        "fine_tune_epochs": FINE_TUNE_EPOCHS,
        "validation_rows_per_class": VALIDATION_ROWS_PER_CLASS,
        "methods": ["none", "scratch", "frozen", *PENALISED],
        "head_factor": HEAD_FACTOR,
        "backend": keras.config.backend(),
    }
    # One regime per fine-tuning setting, resumed seed by seed.
    regime = (
        f"{arguments.rows_per_class} rows per class, "
        f"learning rate {arguments.learning_rate:g}"
    )
    everything = {"regimes": {}}
    if not arguments.quick and os.path.exists(RESULTS):
        with open(RESULTS) as file:
            everything = json.load(file)
    saved = everything["regimes"].get(regime)
    if saved is None or saved["settings"] != settings:
        saved = everything["regimes"][regime] = {
            "settings": settings,
            "per_seed": {},
        }
    for seed in range(seeds):
        if str(seed) in saved["per_seed"]:
            continue
        start = time.perf_counter()
        saved["per_seed"][str(seed)] = run_seed(seed, settings)
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
        saved["summary"] = summarize(saved["per_seed"], factors)
        if not arguments.quick:
            with open(RESULTS, "w") as file:
                json.dump(everything, file, indent=1)
    print(regime)
    print(report(summarize(saved["per_seed"], factors)))


def report(summary):
    lines = [f"test accuracy on digits 5-9, {summary['seeds']} seeds:"]
    for method, best in summary["best"].items():
        test = best["test"]
        factor = "" if best["factor"] is None else f" at {best['factor']:g}"
        edge = " (grid edge)" if best["at_edge"] else ""
        lines.append(
            f"  {method:11s}{factor:10s} {test['mean']:.3f} "
            f"[{test['low']:.3f}, {test['high']:.3f}]{edge}"
        )
    for name, difference in summary["differences"].items():
        lines.append(
            f"  {name:18s} {difference['mean']:+.3f} "
            f"[{difference['low']:+.3f}, {difference['high']:+.3f}]"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
