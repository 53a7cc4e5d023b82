"""What does PenaltyLogger cost? The median fit-time ratio with / without.

Trains a 6x256 ReLU MLP (ScaledL2 on every kernel) at batch size 256 for
one epoch per `fit`, alternating a `fit` with `PenaltyLogger()` and one
without, each pair in alternating order; prints the median of the per-pair
time ratios. Every model is fitted once first with what it will be timed
with, so the first tracing is not timed; what a later `fit` retraces is.

`--mode` says how the logger is used:
- `same`: one logger instance for every fit, on its own model;
- `new`: a new `PenaltyLogger()` for every fit (walk-forward retraining);
- `alternating`: one model, its fits alternating between a new logger
  and none.

    python benchmarks/logger_overhead.py [--pairs 9] [--per-layer]
        [--mode same|new|alternating]
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras
import numpy as np
from _timing import median_ratio

from keras_scaled_l2 import PenaltyLogger, ScaledL2


def make_model(x):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((x.shape[1],))]
        + [
            keras.layers.Dense(
                256, activation="relu", kernel_regularizer=ScaledL2(0.01)
            )
            for _ in range(6)
        ]
        + [keras.layers.Dense(1, kernel_regularizer=ScaledL2(0.01))]
    )
    model.compile("adam", "mse")
    return model


def make_fit(model, x, y, make_callbacks):
    """A one-epoch `fit`, with `make_callbacks()` called anew each time."""

    def fit():
        model.fit(
            x,
            y,
            batch_size=256,
            epochs=1,
            verbose=0,
            callbacks=make_callbacks(),
        )

    fit()  # trace once, outside the timing
    return fit


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--per-layer", action="store_true")
    parser.add_argument(
        "--mode", choices=("same", "new", "alternating"), default="same"
    )
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(arguments.rows, 64)).astype("float32")
    y = rng.normal(size=(arguments.rows, 1)).astype("float32")
    if arguments.mode == "same":
        logger = PenaltyLogger(per_layer=arguments.per_layer)
        logged = make_fit(make_model(x), x, y, lambda: [logger])
    else:
        model = make_model(x)
        logged = make_fit(
            model,
            x,
            y,
            lambda: [PenaltyLogger(per_layer=arguments.per_layer)],
        )
    plain_model = model if arguments.mode == "alternating" else make_model(x)
    plain = make_fit(plain_model, x, y, lambda: [])
    ratio, logged_s, plain_s = median_ratio(logged, plain, arguments.pairs)
    print(
        f"backend: {keras.config.backend()}, pairs: {arguments.pairs}, "
        f"steps per fit: {-(-arguments.rows // 256)}, "
        f"per_layer: {arguments.per_layer}, mode: {arguments.mode}"
    )
    print(
        f"median fit, with PenaltyLogger: {statistics.median(logged_s):.3f} s"
    )
    print(f"median fit, without:            {statistics.median(plain_s):.3f} s")
    print(f"median ratio with / without: {ratio:.3f}")


if __name__ == "__main__":
    main()
