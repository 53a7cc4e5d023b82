import keras
import numpy as np
import pytest
from reference import reference_penalty

from keras_scaled_l2 import (
    PenaltyLogger,
    ScaledL1L2,
    ScaledL2,
    attach_regularizer,
)


@pytest.fixture
def dtype_policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(previous)


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(
                64, activation="relu", kernel_regularizer=ScaledL2(0.05)
            ),
            keras.layers.Dense(
                32,
                activation="relu",
                kernel_regularizer=ScaledL1L2(0.01, 0.05, scale="fan_in"),
            ),
            keras.layers.Dense(1, kernel_regularizer=ScaledL2(0.05)),
            # The output in float32, as the mixed precision guide advises.
            keras.layers.Activation("linear", dtype="float32"),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-2), "mse", metrics=["mse"])
    return model


@pytest.mark.parametrize(
    "dtype_policy", ["mixed_float16", "mixed_bfloat16"], indirect=True
)
def test_mixed_precision_trains_and_penalties_match_float32(dtype_policy):
    model = _model()
    assert model.layers[0].compute_dtype != "float32"
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 16)).astype("float32")
    y = rng.normal(size=(512, 1)).astype("float32")
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=64,
        verbose=0,
        validation_split=0.25,
        callbacks=[PenaltyLogger()],
    ).history
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]
    np.testing.assert_allclose(
        np.add(history["data_loss"], history["penalty"]),
        history["loss"],
        rtol=1e-3,
    )
    # The penalties of the trained kernels against a float64 reference.
    factors = [
        {"l2": 0.05},
        {"l1": 0.01, "l2": 0.05, "scale": "fan_in"},
        {"l2": 0.05},
    ]
    for layer, factor, penalty in zip(
        model.layers[:3], factors, model.losses, strict=True
    ):
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        assert kernel.dtype == np.float32  # mixed: float32 variables
        assert float(keras.ops.convert_to_numpy(penalty)) == pytest.approx(
            reference_penalty(kernel, **factor), rel=1e-3
        )


def test_float16_kernel_accumulates_in_float32_inside_training():
    keras.utils.set_random_seed(0)
    layer = keras.layers.Dense(
        1024,
        dtype="float16",
        kernel_initializer="ones",
        kernel_regularizer=ScaledL2(0.01, scale="none"),
    )
    model = keras.Sequential([keras.Input((1024,)), layer])
    model.compile(keras.optimizers.SGD(0.0), "mse")
    assert keras.backend.standardize_dtype(layer.kernel.dtype) == "float16"
    (penalty,) = model.losses
    assert float(keras.ops.convert_to_numpy(penalty)) == pytest.approx(
        10485.76, rel=1e-6
    )
    x = np.zeros((4, 1024), "float16")
    history = model.fit(
        x, np.zeros((4, 1024)), verbose=0, callbacks=[PenaltyLogger()]
    ).history
    assert history["penalty"][0] == pytest.approx(10485.76, rel=1e-6)
    assert np.isfinite(history["loss"][0])


@pytest.mark.parametrize(
    "dtype_policy", ["mixed_bfloat16", "bfloat16"], indirect=True
)
# It replaces the penalties already on the kernels, on purpose.
@pytest.mark.filterwarnings("ignore:attach_regularizer replaced")
def test_starting_point_penalties_train_in_low_precision(dtype_policy):
    model = _model()
    attach_regularizer(model, ScaledL2(0.5), anchor=True)
    # SGD: under the pure bfloat16 policy, Adam left the kernels unchanged.
    model.compile(keras.optimizers.SGD(0.1), "mse", metrics=["mse"])
    kernels = [layer.kernel for layer in model.layers[:3]]
    starts = [k.regularizer.anchor_values() for k in kernels]
    assert all(s.dtype == np.float32 for s in starts)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype("float32")
    y = rng.normal(size=(256, 1)).astype("float32")
    history = model.fit(
        x, y, epochs=2, batch_size=64, verbose=0, callbacks=[PenaltyLogger()]
    ).history
    assert np.all(np.isfinite(history["loss"]))
    np.testing.assert_allclose(
        np.add(history["data_loss"], history["penalty"]),
        history["loss"],
        rtol=1e-3,
    )
    # Each penalty, accumulated in float32, against a float64 reference of
    # the kernel (bfloat16 under the pure policy) minus its start.
    for kernel, start, penalty in zip(
        kernels, starts, model.losses, strict=True
    ):
        values = keras.ops.convert_to_numpy(keras.ops.cast(kernel, "float32"))
        want = reference_penalty(values.astype("float64") - start, l2=0.5)
        assert want > 0
        assert float(keras.ops.convert_to_numpy(penalty)) == pytest.approx(
            want, rel=1e-5
        )
