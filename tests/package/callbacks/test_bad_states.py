import math

import keras
import numpy as np
import pytest

from keras_scaled_l2 import PenaltyLogger, ScaledL1, ScaledL2


def _model(regularizer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, kernel_regularizer=regularizer),
        ]
    )
    model.compile(keras.optimizers.SGD(0.01), "mse", metrics=["mse"])
    return model


def _set_kernel_entry(model, value):
    kernel = keras.ops.convert_to_numpy(model.layers[0].kernel).copy()
    kernel[0, 0] = value
    model.layers[0].kernel.assign(kernel)


@pytest.mark.parametrize("cls", [ScaledL2, ScaledL1])
@pytest.mark.parametrize(
    "value, check", [(math.nan, math.isnan), (math.inf, math.isinf)]
)
def test_non_finite_weights_give_a_non_finite_penalty(cls, value, check):
    model = _model(cls(0.01))
    _set_kernel_entry(model, value)
    (penalty,) = model.losses
    assert check(float(keras.ops.convert_to_numpy(penalty)))


def test_overflowing_square_is_not_hidden():
    # 1e30 ** 2 overflows float32: the penalty is inf, as the true value
    # does not fit.
    model = _model(ScaledL2(0.01))
    _set_kernel_entry(model, 1e30)
    (penalty,) = model.losses
    assert math.isinf(float(keras.ops.convert_to_numpy(penalty)))


def test_logger_reports_nan_and_terminate_on_nan_still_stops():
    model = _model(ScaledL2(0.01))
    _set_kernel_entry(model, math.nan)
    rng = np.random.default_rng(0)
    history = model.fit(
        rng.normal(size=(64, 4)),
        rng.normal(size=(64, 3)),
        epochs=5,
        batch_size=16,
        verbose=0,
        callbacks=[PenaltyLogger(), keras.callbacks.TerminateOnNaN()],
    ).history
    assert len(history["loss"]) == 1  # stopped in the first epoch
    assert math.isnan(history["loss"][0])
    assert math.isnan(history["penalty"][0])
