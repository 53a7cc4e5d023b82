"""The demo: plain L2 against scaled L2 on noisy tabular data.

The same deep ReLU network is trained once per penalty on the package's
synthetic low-signal data set (`keras_scaled_l2.datasets`), and one row per
penalty reports how it did. Under `keras.regularizers.L2(0.01)` the
penalty of the 256x256 kernels outweighs the data loss by orders of
magnitude, every weight shrinks towards zero and the network ends up
predicting one constant: the row says `collapsed`.
"""

import dataclasses
import math
import time
import warnings

import keras
import numpy as np

from keras_scaled_l2.collapse_monitor import CollapseMonitor, CollapseWarning
from keras_scaled_l2.datasets import make_low_signal_tabular, rank_correlation
from keras_scaled_l2.penalty_logger import PenaltyLogger
from keras_scaled_l2.regularizers import ScaledL2

COLLAPSE_RATIO = 1e-3
"""Predictions are called collapsed when their standard deviation falls
below this fraction of the target's standard deviation."""

PROBE_ROWS = 512
"""Test rows `CollapseMonitor` predicts on at each epoch end."""

PENALTIES = {
    "none (no penalty)": lambda: None,
    "keras L2(0.01)": lambda: keras.regularizers.L2(0.01),
    "keras L2(0.0001)": lambda: keras.regularizers.L2(0.0001),
    "ScaledL2(0.01) balanced": lambda: ScaledL2(0.01),
    "ScaledL2(0.01) fan_in": lambda: ScaledL2(0.01, scale="fan_in"),
    "ScaledL2(0.01) size": lambda: ScaledL2(0.01, scale="size"),
}
"""Row label -> factory of the kernel regularizer trained in that row."""


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """One row of the demo table."""

    name: str
    correlation: float
    prediction_std: float
    penalty: float
    data_loss: float
    collapsed: bool
    monitor_epoch: int | None
    seconds: float


def build_mlp(num_features, regularizer_factory, depth=4, width=256):
    """Returns an uncompiled ReLU MLP with the penalty on every kernel.

    Args:
        num_features: Width of the input.
        regularizer_factory: Callable returning a new kernel regularizer
            (or `None`) for each layer.
        depth: Number of hidden layers. Defaults to `4`.
        width: Units per hidden layer. Defaults to `256`.
    """
    layers = [keras.Input((num_features,))]
    for _ in range(depth):
        layers.append(
            keras.layers.Dense(
                width,
                activation="relu",
                kernel_regularizer=regularizer_factory(),
            )
        )
    layers.append(
        keras.layers.Dense(1, kernel_regularizer=regularizer_factory())
    )
    return keras.Sequential(layers)


def train_row(name, regularizer_factory, data, epochs, batch_size, seed):
    """Trains one network and measures it; returns a `DemoResult`."""
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model = build_mlp(x_train.shape[1], regularizer_factory)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    monitor = CollapseMonitor(x_test[:PROBE_ROWS])
    start = time.perf_counter()
    with warnings.catch_warnings():
        # The table reports the collapse; the warning text would repeat it.
        warnings.simplefilter("ignore", CollapseWarning)
        history = model.fit(
            x_train,
            y_train,
            epochs=epochs,
            batch_size=batch_size,
            verbose=0,
            callbacks=[PenaltyLogger(), monitor],
        ).history
    seconds = time.perf_counter() - start
    predictions = model.predict(x_test, batch_size=1024, verbose=0).ravel()
    prediction_std = float(np.std(predictions.astype(np.float64)))
    return DemoResult(
        name=name,
        correlation=rank_correlation(y_test, predictions),
        prediction_std=prediction_std,
        penalty=history["penalty"][-1],
        data_loss=history["data_loss"][-1],
        collapsed=prediction_std < COLLAPSE_RATIO * float(np.std(y_test)),
        monitor_epoch=monitor.collapsed_epoch,
        seconds=seconds,
    )


def run_demo(
    penalties=None,
    epochs=20,
    num_train=16000,
    num_test=4000,
    batch_size=256,
    seed=0,
    on_result=None,
):
    """Trains one network per penalty on the same data; returns the rows.

    Args:
        penalties: Mapping of row label to regularizer factory. Defaults to
            `PENALTIES`.
        epochs: Training epochs per row. Defaults to `20`.
        num_train: Training rows. Defaults to `16000`.
        num_test: Test rows. Defaults to `4000`.
        batch_size: Defaults to `256`.
        seed: Seed of the data and of each network's initialisation.
            Defaults to `0`.
        on_result: Optional callable receiving each `DemoResult` as soon as
            its row is done.

    Returns:
        A list of `DemoResult`, in the order of `penalties`.
    """
    penalties = PENALTIES if penalties is None else penalties
    data = make_low_signal_tabular(num_train, num_test, seed=seed)
    results = []
    for name, factory in penalties.items():
        result = train_row(name, factory, data, epochs, batch_size, seed)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


HEADER = (
    f"{'penalty':<26} {'test corr':>9} {'pred std':>9} {'penalty':>9} "
    f"{'data loss':>9} {'monitor':>8} {'seconds':>7}  status"
)


def format_row(result):
    """Formats one `DemoResult` as a line of the demo table."""
    correlation = (
        "undefined"
        if math.isnan(result.correlation)
        else f"{result.correlation:+.4f}"
    )
    monitor = (
        "-"
        if result.monitor_epoch is None
        else f"epoch {result.monitor_epoch + 1}"
    )
    status = "collapsed" if result.collapsed else "ok"
    return (
        f"{result.name:<26} {correlation:>9} {result.prediction_std:>9.2e} "
        f"{result.penalty:>9.4f} {result.data_loss:>9.5f} {monitor:>8} "
        f"{result.seconds:>7.1f}  {status}"
    )
