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
from _timing import median_ratio, one_epoch_fit, regression_data

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
    return one_epoch_fit(model, x, y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--rows", type=int, default=16384)
    arguments = parser.parse_args()
    x, y = regression_data(arguments.rows)
    scaled = make_fit(ScaledL2(0.01), x, y)
    plain = make_fit(keras.regularizers.L2(0.01), x, y)
    ratio, scaled_s, plain_s = median_ratio(scaled, plain, arguments.pairs)
    print(f"backend: {keras.config.backend()}, pairs: {arguments.pairs}")
    print(f"median epoch, ScaledL2: {statistics.median(scaled_s):.3f} s")
    print(f"median epoch, keras L2: {statistics.median(plain_s):.3f} s")
    print(f"median ratio ScaledL2 / L2: {ratio:.3f}")


if __name__ == "__main__":
    main()
