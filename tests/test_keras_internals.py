"""Fails loudly if Keras changes what `_keras_internals` relies on."""

import keras
import numpy as np
import pytest

from keras_scaled_l2 import ScaledL2, _keras_internals


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(
        5,
        kernel_regularizer=ScaledL2(0.1),
        activity_regularizer=keras.regularizers.L1(0.01),
    )(inputs)
    outputs = keras.layers.Dense(
        1, kernel_regularizer=keras.regularizers.L2(0.2)
    )(hidden)
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    return model


def test_split_compute_loss_returns_what_keras_computes():
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")
    y_pred = model(x)  # collects the activity penalty, as a step does
    recorded = []
    ours = _keras_internals.split_compute_loss(
        model, lambda data, terms: recorded.append((data, terms)), x, y, y_pred
    )
    theirs = keras.Model.compute_loss(model, x, y, y_pred)
    # Exact: the split adds the same tensors in the same order as Keras, in
    # the same process, so the two totals are bit-identical by design.
    assert float(ours) == float(theirs)
    ((data_loss, penalties),) = recorded
    # One activity term, then one term per regularized weight, in order.
    assert len(penalties) == 3
    want_mse = np.mean((keras.ops.convert_to_numpy(y_pred) - y) ** 2)
    assert float(data_loss) == pytest.approx(want_mse, rel=1e-6)
    kernels = [model.layers[1].kernel, model.layers[2].kernel]
    for term, kernel in zip(penalties[1:], kernels, strict=True):
        # Exact: the very term Keras computed, recomputed by the same call.
        assert float(term) == float(kernel.regularizer(kernel))
    np.testing.assert_allclose(
        float(data_loss) + sum(float(p) for p in penalties),
        float(theirs),
        rtol=1e-6,
    )


def test_attached_metric_is_one_of_the_model_metrics_until_detached():
    model = _model()
    before = list(model.metrics)
    metric = keras.metrics.Mean(name="probe")
    _keras_internals.attach_metric(model, metric)
    _keras_internals.attach_metric(model, metric)  # idempotent
    assert [m.name for m in model.metrics].count("probe") == 1
    _keras_internals.detach_metric(model, metric)
    assert model.metrics == before


def test_default_compute_loss_is_detected():
    class Own(keras.Model):
        def compute_loss(self, *args, **kwargs):
            return super().compute_loss(*args, **kwargs)

    inputs = keras.Input((2,))
    outputs = keras.layers.Dense(1)(inputs)
    assert _keras_internals.has_default_compute_loss(_model())
    assert not _keras_internals.has_default_compute_loss(Own(inputs, outputs))


def test_compile_token_changes_with_each_compile_only():
    model = _model()
    token = _keras_internals.compile_token(model)
    assert token is not None
    model.fit(np.ones((4, 6)), np.ones((4, 1)), verbose=0)
    assert _keras_internals.compile_token(model) is token
    model.compile(model.optimizer, "mse")
    assert _keras_internals.compile_token(model) is not token


def test_keras_version_check():
    for version in ("3.10.0", "3.15.1", "3.10.0.dev2025010103", "4.0"):
        _keras_internals.check_keras_version(version)
    for version in ("3.9.2", "3.8.0", "3.0.5", "2.15.0"):
        with pytest.raises(ImportError, match=f"found Keras {version}"):
            _keras_internals.check_keras_version(version)
