"""Does a scaled penalty cost more than Keras's own L2 at training time?

Trains the same 6x256 ReLU MLP for one epoch with `keras.regularizers.L2`
and with `ScaledL2` on every kernel, alternating, and prints the median
ratio of the epoch times. The multiplier `s(shape)` is a Python float fixed
at trace time, so the expected ratio is 1.00 within noise.

    python benchmarks/penalty_cost.py [--pairs 9]
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

from keras_scaled_l2 import ScaledL2


def make_fit(regularizer, x, y):
    model = keras.Sequential(
        [keras.Input((x.shape[1],))]
        + [
            keras.layers.Dense(256, "relu", kernel_regularizer=regularizer)
            for _ in range(6)
        ]
        + [keras.layers.Dense(1, kernel_regularizer=regularizer)]
    )
    model.compile("adam", "mse")
    model.fit(x, y, batch_size=256, epochs=1, verbose=0)  # trace once

    def fit():
        model.fit(x, y, batch_size=256, epochs=1, verbose=0)

    return fit


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--rows", type=int, default=16384)
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(arguments.rows, 64)).astype("float32")
    y = rng.normal(size=(arguments.rows, 1)).astype("float32")
    scaled = make_fit(ScaledL2(0.01), x, y)
    plain = make_fit(keras.regularizers.L2(0.01), x, y)
    ratio, scaled_s, plain_s = median_ratio(scaled, plain, arguments.pairs)
    print(f"backend: {keras.config.backend()}, pairs: {arguments.pairs}")
    print(f"median epoch, ScaledL2: {statistics.median(scaled_s):.3f} s")
    print(f"median epoch, keras L2: {statistics.median(plain_s):.3f} s")
    print(f"median ratio ScaledL2 / L2: {ratio:.3f}")


if __name__ == "__main__":
    main()
