"""Fails loudly if Keras changes what `_keras_internals` relies on."""

import zipfile

import h5py
import keras
import numpy as np
import pytest
from seen_train_function import SeenTrainFunction

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


def _fit(model, callbacks=()):
    x = np.random.default_rng(1).normal(size=(32, 6)).astype("float32")
    return model.fit(
        x, np.ones((32, 1)), epochs=1, verbose=0, callbacks=list(callbacks)
    ).history


def test_a_replaced_compute_loss_is_what_the_steps_call_until_restored():
    model = _model()
    calls = []

    def compute_loss(*args, **kwargs):
        calls.append("called")
        return keras.Model.compute_loss(model, *args, **kwargs)

    _fit(model)  # traced without the replacement
    _keras_internals.replace_compute_loss(model, compute_loss)
    _keras_internals.drop_step_functions(model)
    _fit(model)
    assert calls  # traced (JAX, TensorFlow) or called (PyTorch) per step
    _keras_internals.restore_compute_loss(model)
    assert "compute_loss" not in vars(model)
    _keras_internals.drop_step_functions(model)
    calls.clear()
    _fit(model)
    assert not calls


def test_step_functions_are_used_as_found_and_traced_anew_when_dropped():
    model, seen = _model(), SeenTrainFunction()
    _fit(model, [seen])
    first = _keras_internals.step_functions(model)
    assert first[0] is seen.seen[-1] and first[0] is not None
    _keras_internals.drop_step_functions(model)
    assert _keras_internals.step_functions(model) == (None, None)
    _fit(model, [seen])
    assert seen.seen[-1] is not first[0]
    _keras_internals.set_step_functions(model, first)
    _fit(model, [seen])
    assert seen.seen[-1] is first[0]
    _keras_internals.make_step_functions(model)
    assert _keras_internals.step_functions(model)[0] is not first[0]


# Two behaviours a future Keras could cache away; both must fail loudly.


def test_guard_a_penalty_attached_after_training_enters_the_next_fit():
    from keras_scaled_l2 import attach_regularizer

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")  # weights stay put
    x = np.random.default_rng(1).normal(size=(32, 6)).astype("float32")
    y = np.ones((32, 1), "float32")
    model.fit(x, y, epochs=1, verbose=0)
    data_loss = model.evaluate(x, y, verbose=0)
    attach_regularizer(model, keras.regularizers.L2(0.5))
    penalty = float(keras.ops.sum(model.losses))
    assert penalty > 0.1 * data_loss
    trained = model.fit(x, y, epochs=1, verbose=0, shuffle=False).history
    assert trained["loss"][0] == pytest.approx(data_loss + penalty, rel=1e-5)
    evaluated = model.evaluate(x, y, verbose=0)
    assert evaluated == pytest.approx(data_loss + penalty, rel=1e-5)


def test_guard_logger_keys_appear_on_a_model_that_already_ran():
    from keras_scaled_l2 import PenaltyLogger

    model = _model()
    _fit(model)
    model.evaluate(np.ones((8, 6)), np.ones((8, 1)), verbose=0)
    history = _fit(model, [PenaltyLogger()])
    assert {"data_loss", "penalty"} <= set(history)
    assert history["data_loss"][0] + history["penalty"][0] == pytest.approx(
        history["loss"][0], rel=1e-6
    )
    assert history["penalty"][0] > 0


def test_sublayers_are_the_direct_children():
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    attention(np.ones((1, 3, 8)), np.ones((1, 3, 8)))
    children = _keras_internals.sublayers(attention)
    assert {type(c).__name__ for c in children} >= {"EinsumDense"}
    names = {c.name for c in children}
    assert {"query", "key", "value", "attention_output"} <= names
    model = _model()
    assert [c.name for c in _keras_internals.sublayers(model)] == [
        layer.name for layer in model.layers
    ]


def test_own_trainable_weights_leave_out_the_sublayers():
    class Holder(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = keras.layers.Dense(2)

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(), name="scale")
            self.inner.build(input_shape)

    holder = Holder()
    holder.build((None, 3))
    assert _keras_internals.own_trainable_weights(holder) == [holder.scale]
    assert len(holder.trainable_weights) == 3
    dense = holder.inner
    assert _keras_internals.own_trainable_weights(dense) == [
        dense.kernel,
        dense.bias,
    ]


def test_the_attention_regularizer_set_is_the_one_its_config_saves():
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    regularizer = ScaledL2(0.3, scale="size")
    _keras_internals.set_attention_kernel_regularizer(attention, regularizer)
    saved = attention.get_config()["kernel_regularizer"]
    assert saved["config"] == regularizer.get_config()
    read = _keras_internals.attention_kernel_regularizer(attention)
    assert read is regularizer


class _Probe(keras.regularizers.Regularizer):
    """Records what `regularized_weight` finds at each call."""

    def __init__(self):
        self.seen = []

    def __call__(self, x):
        self.seen.append(_keras_internals.regularized_weight(self))
        return keras.ops.sum(x) * 0.0


def test_a_regularizer_computed_by_a_layer_sees_the_layer_and_weight():
    probe = _Probe()
    inner = keras.layers.Dense(3, kernel_regularizer=probe, name="inner")
    model = keras.Sequential([keras.Input((4,)), inner])
    assert len(model.losses) == 1  # the model computes those below it
    ((layer, weight),) = probe.seen
    assert layer is model and weight is inner.kernel
    probe.seen.clear()
    assert len(inner.losses) == 1
    assert probe.seen == [(inner, inner.kernel)]
    probe.seen.clear()
    probe(inner.kernel)  # called by hand: no layer
    assert probe.seen == [None]


def test_only_functional_and_sequential_configs_hold_their_layers():
    functional = _model()
    sequential = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    class Subclassed(keras.Model):
        def get_config(self):
            return {}

    configs = _keras_internals.graph_configs()
    assert type(functional).get_config in configs
    assert type(sequential).get_config in configs
    assert Subclassed.get_config not in configs
    layers = functional.get_config()["layers"]
    assert [layer["config"]["name"] for layer in layers] == [
        layer.name for layer in functional.layers
    ]


def test_a_saveable_attribute_writes_its_assets_into_a_keras_file(tmp_path):
    class Note(_keras_internals.KerasSaveable):
        def _obj_type(self):
            return _keras_internals.SAVEABLE_KIND

        def save_assets(self, dir_path):
            with open(f"{dir_path}/note.txt", "w") as file:
                file.write("saved")

    model = _model()
    vars(model)["_note"] = Note()
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert archive.read("assets/_note/note.txt") == b"saved"
    # A fresh model has no such attribute: Keras loads past the asset.
    assert len(keras.models.load_model(path).weights) == len(model.weights)


class _Remembered(
    keras.regularizers.Regularizer, _keras_internals.KerasSaveable
):
    """A regularizer holding state, as a penalty toward starting weights."""

    def __init__(self, shape=None):
        self.value = None if shape is None else np.zeros(shape, "float32")

    def __call__(self, x):
        return keras.ops.sum(x) * 0.0

    def _obj_type(self):
        return _keras_internals.SAVEABLE_KIND

    def save_own_variables(self, store):
        store["value"] = self.value

    def load_own_variables(self, store):
        self.value = np.array(store["value"])

    def get_config(self):
        return {"shape": list(self.value.shape)}

    def __reduce__(self):
        return type(self), (self.value.shape,)


def test_a_saveable_regularizer_keeps_its_state_in_the_weights(tmp_path):
    keras.saving.get_custom_objects()["_Remembered"] = _Remembered
    try:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        remembered = _Remembered((3, 2))
        remembered.value += np.arange(6, dtype="float32").reshape(3, 2)
        model.layers[0].kernel_regularizer = remembered
        model.save(tmp_path / "model.keras")
        loaded = keras.models.load_model(tmp_path / "model.keras")
        np.testing.assert_array_equal(
            loaded.layers[0].kernel_regularizer.value, remembered.value
        )
        model.save_weights(tmp_path / "model.weights.h5")
        model.layers[0].kernel_regularizer = _Remembered((3, 2))
        model.load_weights(tmp_path / "model.weights.h5")
        np.testing.assert_array_equal(
            model.layers[0].kernel_regularizer.value, remembered.value
        )
    finally:
        del keras.saving.get_custom_objects()["_Remembered"]


def test_a_shared_scaled_regularizer_saves_once_and_reloads_everywhere(
    tmp_path,
):
    # Saved once (Keras skips an object it has seen), read by each layer
    # rebuilt from its config: a path with nothing saved reads as empty.
    shared = ScaledL2(0.1)
    model = keras.Sequential(
        [keras.Input((3,))]
        + [keras.layers.Dense(3, kernel_regularizer=shared) for _ in range(3)]
    )
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        [float(p) for p in loaded.losses],
        [float(p) for p in model.losses],
        rtol=1e-6,
    )
    model.save_weights(tmp_path / "model.weights.h5")
    loaded.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_allclose(
        [float(p) for p in loaded.losses],
        [float(p) for p in model.losses],
        rtol=1e-6,
    )


class _Scaled(keras.layers.Layer):
    """A layer without `get_config`: Keras writes its arguments in it."""

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def call(self, inputs):
        return inputs * self.units


def test_a_guarded_get_config_still_holds_a_subclass_arguments():
    layer = _Scaled(units=5)
    unguarded = layer.get_config()
    assert unguarded["units"] == 5
    checked = []
    _keras_internals.guard_get_config(layer, checked.append)
    assert "get_config" in vars(layer)
    assert layer.get_config() == unguarded
    assert checked == [layer]


def test_saving_h5_is_seen_while_an_h5_file_is_written(tmp_path):
    seen = []
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    _keras_internals.guard_get_config(
        model, lambda m: seen.append(_keras_internals.saving_h5())
    )
    model.save(tmp_path / "model.h5")
    model.save(tmp_path / "model.keras")
    assert seen[0] is True and seen[-1] is False
    assert not _keras_internals.saving_h5()


def test_an_unregistered_class_is_named_from_keras_error():
    with pytest.raises(TypeError) as error:
        keras.saving.deserialize_keras_object(
            {
                "class_name": "NoSuchLayer",
                "config": {},
                "module": "nowhere",
                "registered_name": "shop>NoSuchLayer",
            }
        )
    assert _keras_internals.unregistered_class(error.value) == "NoSuchLayer"
    assert _keras_internals.unregistered_class(TypeError("other")) is None


def test_a_file_refused_by_safe_mode_is_told_from_keras_error(tmp_path):
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)]
    )
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError) as error:
        keras.models.load_model(path)
    assert _keras_internals.refused_by_safe_mode(error.value)
    assert not _keras_internals.refused_by_safe_mode(ValueError("other"))
    assert len(keras.models.load_model(path, safe_mode=False).layers) == 1


def test_an_untracked_attribute_is_made_once_and_never_tracked(tmp_path):
    model = _model()
    tracked_before = len(model._tracker.stored_ids.get("layers", ()))
    made = _keras_internals.untracked_attribute(model, "_probe", dict)
    made["layer"] = keras.layers.Dense(2)  # would be tracked if assigned
    assert _keras_internals.untracked_attribute(model, "_probe", dict) is made
    assert len(model._tracker.stored_ids.get("layers", ())) == tracked_before
    model.tracked_probe = {"layer": keras.layers.Dense(2)}  # the contrast
    assert len(model._tracker.stored_ids["layers"]) == tracked_before + 1
    del model.tracked_probe
    path = tmp_path / "model.keras"
    model.save(path)
    assert len(keras.models.load_model(path).weights) == len(model.weights)


def test_a_store_knows_where_it_writes_and_private_attributes_come_last(
    tmp_path,
):
    # What the penalty record relies on: a saveable's store says its group
    # in the weights file, and Keras reaches a model's private attributes
    # after its layers (so their regularizers have written by then).
    seen = []

    class Noting(_Remembered):
        def save_own_variables(self, store):
            super().save_own_variables(store)
            seen.append(("variables", _keras_internals.weights_path(store)))

    class Last(_keras_internals.KerasSaveable):
        def _obj_type(self):
            return _keras_internals.SAVEABLE_KIND

        def save_assets(self, dir_path):
            seen.append(("assets", None))

    keras.saving.get_custom_objects()["Noting"] = Noting
    try:
        model = keras.Sequential(
            [keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(2)]
        )
        for index, layer in enumerate(model.layers):
            layer.kernel_regularizer = Noting((3, 2) if index == 0 else (2, 2))
            layer.kernel_regularizer.value += index + 1
        vars(model)["_a_last"] = Last()
        path = tmp_path / "model.keras"
        model.save(path)
    finally:
        del keras.saving.get_custom_objects()["Noting"]
    assert [kind for kind, _ in seen] == ["variables", "variables", "assets"]
    with (
        zipfile.ZipFile(path) as archive,
        h5py.File(archive.open(_keras_internals.WEIGHTS_FILE)) as file,
    ):
        for (_, group), layer in zip(seen, model.layers, strict=False):
            np.testing.assert_array_equal(
                _keras_internals.saved_variable(file, group, "value"),
                layer.kernel_regularizer.value,
            )
    # `save_weights` writes through the same store: same groups.
    first = seen[0][1]
    seen.clear()
    model.save_weights(tmp_path / "model.weights.h5")
    assert seen[0] == ("variables", first)


def test_unguard_get_config_gives_back_the_class_one():
    layer = _Scaled(units=5)
    _keras_internals.guard_get_config(layer, lambda _: None)
    _keras_internals.unguard_get_config(layer)
    assert "get_config" not in vars(layer)
    assert layer.get_config()["units"] == 5
    _keras_internals.unguard_get_config(layer)  # harmless when unguarded
    # Another library's own instance get_config stays.
    layer.get_config = lambda: {"theirs": True}
    _keras_internals.unguard_get_config(layer)
    assert layer.get_config() == {"theirs": True}


def test_a_variable_laid_out_like_another_shares_its_placement():
    kernel = keras.Variable(np.ones((4, 2), "float32"), name="kernel")
    with _keras_internals.laid_out_like(kernel) as arguments:
        copy = keras.Variable(np.zeros((4, 2), "float32"), **arguments)
    # On one device with no distribution there is nothing to carry; the
    # sharded and mirrored cases run on two devices in test_distribution.
    assert arguments == {}
    assert copy.shape == kernel.shape
