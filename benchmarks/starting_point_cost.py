"""Does a penalty toward the starting weights (L2-SP) cost fit time?

Trains the same 6x256 ReLU MLP for one epoch with `ScaledL2` on every
kernel, once toward zero and once toward each kernel's starting weights
(`attach_regularizer(..., anchor=True)`), alternating, and prints the
median ratio of the epoch times. The anchored penalty reads one more
variable per kernel and subtracts it: one elementwise op per kernel per
step, so the goal is a ratio of at most 1.05.

    python benchmarks/starting_point_cost.py [--pairs 15]
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras
from _timing import median_ratio, one_epoch_fit, regression_data

from keras_scaled_l2 import ScaledL2, attach_regularizer


def make_fit(anchor, x, y):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((x.shape[1],))]
        + [keras.layers.Dense(256, "relu") for _ in range(6)]
        + [keras.layers.Dense(1)]
    )
    attach_regularizer(model, ScaledL2(0.01), anchor=anchor)
    return one_epoch_fit(model, x, y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--rows", type=int, default=16384)
    arguments = parser.parse_args()
    x, y = regression_data(arguments.rows)
    anchored = make_fit(True, x, y)
    toward_zero = make_fit(False, x, y)
    ratio, anchored_s, zero_s = median_ratio(
        anchored, toward_zero, arguments.pairs
    )
    print(f"backend: {keras.config.backend()}, pairs: {arguments.pairs}")
    print(
        f"median epoch, toward the start: {statistics.median(anchored_s):.3f} s"
    )
    print(f"median epoch, toward zero:      {statistics.median(zero_s):.3f} s")
    print(f"median ratio start / zero: {ratio:.3f}")


if __name__ == "__main__":
    main()
