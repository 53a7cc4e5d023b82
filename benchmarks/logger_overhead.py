"""What does PenaltyLogger cost? The median fit-time ratio with / without.

Trains a 6x256 ReLU MLP (ScaledL2 on every kernel) at batch size 256 for
one epoch per `fit`, alternating a `fit` with `PenaltyLogger()` and one
without, each pair in alternating order, on one model each; prints the
median of the per-pair time ratios. Both models are warmed up first, so
tracing is not timed.

    python benchmarks/logger_overhead.py [--pairs 9] [--per-layer]
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


def make_fit(x, y, callbacks):
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

    def fit():
        model.fit(
            x, y, batch_size=256, epochs=1, verbose=0, callbacks=callbacks
        )

    fit()  # trace once, outside the timing
    return fit


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--per-layer", action="store_true")
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(arguments.rows, 64)).astype("float32")
    y = rng.normal(size=(arguments.rows, 1)).astype("float32")
    logged = make_fit(x, y, [PenaltyLogger(per_layer=arguments.per_layer)])
    plain = make_fit(x, y, [])
    ratio, logged_s, plain_s = median_ratio(logged, plain, arguments.pairs)
    print(
        f"backend: {keras.config.backend()}, pairs: {arguments.pairs}, "
        f"steps per fit: {-(-arguments.rows // 256)}, "
        f"per_layer: {arguments.per_layer}"
    )
    print(
        f"median fit, with PenaltyLogger: {statistics.median(logged_s):.3f} s"
    )
    print(f"median fit, without:            {statistics.median(plain_s):.3f} s")
    print(f"median ratio with / without: {ratio:.3f}")


if __name__ == "__main__":
    main()
