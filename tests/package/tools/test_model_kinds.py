"""Scaled penalties and the logger on the model kinds users build."""

import warnings

import keras
import numpy as np
import pytest
from logged import assert_parts_exact
from reference import reference_penalty

from keras_scaled_l2 import PenaltyLogger, ScaledL2, attach_regularizer

QKV_AXES = {"input_axes": (0,), "output_axes": (1, 2)}  # (dim, heads, key)
OUTPUT_AXES = {"input_axes": (0, 1), "output_axes": (2,)}  # (heads, key, dim)


def _fit(model, x, y):
    return model.fit(
        x,
        y,
        epochs=2,
        batch_size=32,
        validation_split=0.25,
        verbose=0,
        callbacks=[PenaltyLogger(per_layer=True)],
    ).history


def _data(*shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, *shape)).astype("float32")
    y = rng.normal(size=(128, 1)).astype("float32")
    return x, y


def test_subclassed_model():
    class TwoLayers(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(
                16, activation="relu", kernel_regularizer=ScaledL2(0.1)
            )
            self.out = keras.layers.Dense(1, kernel_regularizer=ScaledL2(0.1))

        def call(self, x):
            return self.out(self.hidden(x))

    keras.utils.set_random_seed(0)
    model = TwoLayers()
    x, y = _data(8)
    model(x[:1])  # per-layer keys need the weights to exist
    model.compile("adam", "mse", metrics=["mse"])
    history = _fit(model, x, y)
    assert_parts_exact(history)
    # Keyed by layer, without the model's own name in front.
    layers = {f"penalty/{model.hidden.name}", f"penalty/{model.out.name}"}
    assert layers | {"penalty/(other)"} == {
        key for key in history if key.startswith("penalty/")
    }


def test_unbuilt_subclassed_model_logs_totals_and_says_why():
    class OneLayer(keras.Model):
        def __init__(self):
            super().__init__()
            self.out = keras.layers.Dense(1, kernel_regularizer=ScaledL2(0.1))

        def call(self, x):
            return self.out(x)

    keras.utils.set_random_seed(0)
    model = OneLayer()
    model.compile("adam", "mse", metrics=["mse"])
    x, y = _data(8)
    logger = PenaltyLogger(per_layer=True)
    if keras.backend.backend() == "tensorflow":
        # TensorFlow builds a subclassed model only when it traces the first
        # step, after the callbacks have started: no layer names to log.
        with pytest.warns(UserWarning, match="the model has no weights yet"):
            history = model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
        assert not [key for key in history.history if "penalty/" in key]
    else:
        # JAX and PyTorch build it before the callbacks start.
        history = model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
        assert f"penalty/{model.out.name}" in history.history
    history = history.history
    np.testing.assert_allclose(
        np.add(history["data_loss"], history["penalty"]),
        history["loss"],
        rtol=1e-6,
    )
    assert min(history["penalty"]) > 0


def test_recurrent_kernels():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5, 3)),
            keras.layers.LSTM(
                8,
                kernel_regularizer=ScaledL2(0.1),
                recurrent_regularizer=ScaledL2(0.1, scale="fan_in"),
            ),
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", "mse", metrics=["mse"])
    history = _fit(model, *_data(5, 3))
    assert_parts_exact(history)
    cell = model.layers[0].cell
    kernel = keras.ops.convert_to_numpy(cell.kernel)
    recurrent = keras.ops.convert_to_numpy(cell.recurrent_kernel)
    assert kernel.shape == (3, 32) and recurrent.shape == (8, 32)
    want = reference_penalty(kernel, l2=0.1) + reference_penalty(
        recurrent, l2=0.1, scale="fan_in"
    )
    total = keras.ops.convert_to_numpy(keras.ops.sum(model.losses))
    assert float(total) == pytest.approx(want, rel=1e-5)


def test_multi_head_attention_with_the_right_fan_axes():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 16))
    attention = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)
    x = attention(inputs, inputs)
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    # One regularizer per kernel: the query, key and value kernels map
    # (dim) to (heads, key_dim); the output kernel maps them back.
    kernels = {}
    for weight in attention.trainable_weights:
        if weight.path.endswith("/kernel"):
            axes = (
                OUTPUT_AXES if "attention_output" in weight.path else QKV_AXES
            )
            weight.regularizer = ScaledL2(0.1, **axes)
            kernels[weight.path] = (weight, axes)
    assert len(kernels) == 4
    model.compile("adam", "mse", metrics=["mse"])
    history = _fit(model, *_data(6, 16))
    assert_parts_exact(history)
    want = sum(
        reference_penalty(keras.ops.convert_to_numpy(w), l2=0.1, **axes)
        for w, axes in kernels.values()
    )
    assert float(keras.ops.sum(model.losses)) == pytest.approx(want, rel=1e-5)
    # With the right axes a fresh Glorot kernel starts near 2 * l2 each,
    # where Keras draws the projections with those fans too (its
    # newer initializers take fan axes; those of Keras 3.10 use the conv rule).
    if "input_axes" not in keras.initializers.GlorotUniform().get_config():
        return
    fresh = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)
    fresh(np.zeros((1, 6, 16)), np.zeros((1, 6, 16)))
    for weight in fresh.trainable_weights:
        if weight.path.endswith("/kernel"):
            axes = (
                OUTPUT_AXES if "attention_output" in weight.path else QKV_AXES
            )
            penalty = ScaledL2(0.1, **axes)(weight)
            assert float(keras.ops.convert_to_numpy(penalty)) == pytest.approx(
                0.2, rel=0.25
            )


APPLICATIONS = {
    "resnet50": lambda: keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=4
    ),
    "mobilenet_v2": lambda: keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), classes=4, alpha=0.35
    ),
    "efficientnet_b0": lambda: keras.applications.EfficientNetB0(
        weights=None, input_shape=(32, 32, 3), classes=4
    ),
}


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_applications_get_every_kernel_and_reload_with_it(tmp_path, name):
    # What is tested (the walk over their layers, the configs that carry
    # the penalties) is the same on every backend; building and saving
    # these models once per backend would add about 40 s to the JAX leg.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("keras.applications run in the tensorflow leg")
    keras.utils.set_random_seed(0)
    model = APPLICATIONS[name]()
    kernels = [
        w
        for w in model.trainable_weights
        if len(w.shape) >= 2 and not w.path.endswith("bias")
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every config carries its penalty
        attached = attach_regularizer(model, ScaledL2(0.01))
    assert sorted(attached) == sorted(w.path for w in kernels)
    penalty = float(keras.ops.convert_to_numpy(keras.ops.sum(model.losses)))
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert len(reloaded.losses) == len(kernels)
    assert float(
        keras.ops.convert_to_numpy(keras.ops.sum(reloaded.losses))
    ) == pytest.approx(penalty, rel=1e-6)
