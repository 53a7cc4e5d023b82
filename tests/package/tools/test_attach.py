import inspect
import json
import textwrap
import warnings
import zipfile

import keras
import numpy as np
import pytest
from fresh_process import run_json
from reference import reference_penalty

from keras_scaled_l2 import (
    ScaledL1,
    ScaledL2,
    _keras_internals,
    attach_regularizer,
    cli,
    load_model,
    penalty_report,
)
from keras_scaled_l2._kernels import einsum_kernel_axes

X = np.random.default_rng(0).normal(size=(16, 6, 8)).astype("float32")
TOKENS = np.random.default_rng(1).integers(0, 20, size=(16, 6))


def _pretrained():
    """A functional model with a nested model, trained without penalties."""
    keras.utils.set_random_seed(0)
    encoder = keras.Sequential(
        [
            keras.Input((6, 8)),
            keras.layers.Conv1D(8, 3, padding="same", name="conv"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.LSTM(8, return_sequences=True, name="lstm"),
        ],
        name="encoder",
    )
    features = keras.Input((6, 8))
    tokens = keras.Input((6,), dtype="int32")
    x = encoder(features)
    x = x + keras.layers.Embedding(20, 8, name="embed")(tokens)
    x = keras.layers.EinsumDense(
        "abc,cde->abde", output_shape=(6, 2, 4), name="einsum"
    )(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(1, name="head")(x)
    model = keras.Model([features, tokens], outputs, name="pretrained")
    model.compile("adam", keras.losses.MeanSquaredError())
    model.fit([X, TOKENS], np.ones((16, 1)), epochs=1, verbose=0)
    return model


EXPECTED_KERNELS = [
    "conv/kernel",
    "lstm/lstm_cell/kernel",
    "lstm/lstm_cell/recurrent_kernel",
    "embed/embeddings",
    "einsum/kernel",
    "head/kernel",
]


def _reference_total(model, l2):
    total = 0.0
    for weight in model.trainable_weights:
        if weight.regularizer is None:
            continue
        axes = {}
        if weight.path.startswith("einsum/"):
            axes = {"input_axes": (0,), "output_axes": (1, 2)}
        total += reference_penalty(
            keras.ops.convert_to_numpy(weight), l2=l2, **axes
        )
    return total


def test_attach_to_a_pretrained_nested_model():
    model = _pretrained()
    before = keras.ops.convert_to_numpy(model([X, TOKENS]))
    weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
    attached = attach_regularizer(model, ScaledL2(0.01))
    assert sorted(p.removeprefix("encoder/") for p in attached) == sorted(
        EXPECTED_KERNELS
    )
    # Weights and predictions untouched (bit-identical: attaching only
    # sets regularizers); penalties at once.
    for a, b in zip(weights, model.weights, strict=True):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(b))
    np.testing.assert_array_equal(
        before, keras.ops.convert_to_numpy(model([X, TOKENS]))
    )
    assert len(model.losses) == len(EXPECTED_KERNELS)
    total = float(keras.ops.sum(model.losses))
    assert total == pytest.approx(_reference_total(model, 0.01), rel=1e-5)
    # Biases and normalization parameters are left alone.
    regularized = {w.path for w in model.weights if w.regularizer is not None}
    assert not [p for p in regularized if "bias" in p or "norm" in p]
    # Layer configs show the penalty; the einsum one with its axes.
    einsum = model.get_layer("einsum").get_config()["kernel_regularizer"]
    assert einsum["config"]["input_axes"] == [0]
    assert einsum["config"]["output_axes"] == [1, 2]
    lstm = model.get_layer("encoder").get_layer("lstm").get_config()
    assert lstm["recurrent_regularizer"]["class_name"] == "ScaledL2"


RELOAD = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    import keras_scaled_l2
    model = keras.models.load_model(sys.argv[1])
    x, tokens = np.load(sys.argv[2]), np.load(sys.argv[3])
    print(json.dumps({
        "predictions": keras.ops.convert_to_numpy(model([x, tokens])).tolist(),
        "penalty": float(keras.ops.sum(model.losses)),
        "count": len(model.losses),
    }))
    """
)


def test_attached_penalties_survive_save_and_reload(tmp_path):
    model = _pretrained()
    attach_regularizer(model, ScaledL2(0.01))
    path = tmp_path / "attached.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "tokens.npy", TOKENS)
    reloaded = run_json(
        [
            "-c",
            RELOAD,
            str(path),
            str(tmp_path / "x.npy"),
            str(tmp_path / "tokens.npy"),
        ]
    )
    assert reloaded["count"] == len(EXPECTED_KERNELS)
    assert reloaded["penalty"] == pytest.approx(
        float(keras.ops.sum(model.losses)), rel=1e-6
    )
    np.testing.assert_allclose(
        reloaded["predictions"],
        keras.ops.convert_to_numpy(model([X, TOKENS])),
        rtol=1e-6,
        atol=1e-7,
    )


def test_a_compiled_model_trains_with_the_new_penalty():
    model = _pretrained()  # compiled and trained: step functions traced
    logs = model.evaluate([X, TOKENS], np.ones((16, 1)), verbose=0)
    attach_regularizer(model, ScaledL2(0.5))
    penalty = float(keras.ops.sum(model.losses))
    with_penalty = model.evaluate([X, TOKENS], np.ones((16, 1)), verbose=0)
    assert with_penalty == pytest.approx(logs + penalty, rel=1e-5)


@pytest.mark.parametrize(
    "include, exclude, expected",
    [
        ([keras.layers.Dense], None, ["head/kernel"]),
        (
            ["lstm"],
            None,
            [
                "lstm/lstm_cell/kernel",
                "lstm/lstm_cell/recurrent_kernel",
            ],
        ),
        (
            ["encoder"],
            ["conv"],
            [
                "lstm/lstm_cell/kernel",
                "lstm/lstm_cell/recurrent_kernel",
            ],
        ),
        (
            ["e*"],
            None,
            [
                "embed/embeddings",
                "einsum/kernel",
                "conv/kernel",
                "lstm/lstm_cell/kernel",
                "lstm/lstm_cell/recurrent_kernel",
            ],
        ),
        (
            None,
            ["encoder", keras.layers.Embedding],
            [
                "einsum/kernel",
                "head/kernel",
            ],
        ),
    ],
)
def test_include_and_exclude(include, exclude, expected):
    model = _pretrained()
    attached = attach_regularizer(
        model, ScaledL2(0.01), include=include, exclude=exclude
    )
    assert sorted(p.removeprefix("encoder/") for p in attached) == sorted(
        expected
    )
    assert len(model.losses) == len(expected)


def test_explicitly_included_layer_it_cannot_handle():
    model = _pretrained()
    with pytest.raises(ValueError) as error:
        attach_regularizer(model, ScaledL2(0.01), include=["norm"])
    message = str(error.value)
    assert (
        "cannot attach a penalty to layer 'norm' (BatchNormalization)"
        in message
    )
    assert "Dense" in message and "Embedding" in message


def test_factory_receives_layer_and_weight():
    model = _pretrained()
    seen = []

    def factory(layer, weight):
        seen.append((layer.name, weight.path))
        if isinstance(layer, keras.layers.Embedding):
            return None
        return ScaledL1(0.02) if "lstm" in weight.path else ScaledL2(0.01)

    attached = attach_regularizer(model, factory)
    assert len(seen) == len(EXPECTED_KERNELS)
    assert "embed/embeddings" not in attached
    lstm_cell = model.get_layer("encoder").get_layer("lstm").cell
    assert isinstance(lstm_cell.kernel.regularizer, ScaledL1)
    assert isinstance(model.get_layer("head").kernel.regularizer, ScaledL2)


def test_keras_regularizers_and_names_attach_too():
    model = _pretrained()
    attach_regularizer(model, "l2", include=["head"])
    kernel = keras.ops.convert_to_numpy(model.get_layer("head").kernel)
    (penalty,) = model.losses
    assert float(penalty) == pytest.approx(
        0.01 * np.sum(kernel.astype("float64") ** 2), rel=1e-5
    )


def _attention_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 16))
    x = keras.layers.MultiHeadAttention(4, 8, name="attention")(inputs, inputs)
    outputs = keras.layers.Dense(1, name="head")(x)
    return keras.Model(inputs, outputs)


def _projection(attention, name):
    """One of the four `EinsumDense` projections of `attention`."""
    (found,) = [
        layer
        for layer in _keras_internals.sublayers(attention)
        if layer.name == name
    ]
    return found


def _attention_reference(model, l2, scale):
    """Each projection's penalty with the fans of its einsum equation."""
    attention = model.get_layer("attention")
    return [
        reference_penalty(
            keras.ops.convert_to_numpy(projection.kernel),
            l2=l2,
            scale=scale,
            input_axes=einsum_kernel_axes(projection.equation)[0],
            output_axes=einsum_kernel_axes(projection.equation)[1],
        )
        for projection in (
            _projection(attention, "query"),
            _projection(attention, "key"),
            _projection(attention, "value"),
            _projection(attention, "attention_output"),
        )
    ]


RELOAD_PENALTIES = textwrap.dedent(
    """
    import json, sys
    import keras
    import keras_scaled_l2
    def penalties(path):
        model = keras.models.load_model(path)
        # As the model computes them: the weight penalties close
        # model.losses, in trainable_weights order.
        weights = [w for w in model.trainable_weights if w.regularizer]
        losses = model.losses[len(model.losses) - len(weights):]
        return {w.path: float(p) for w, p in zip(weights, losses)}

    print(json.dumps([penalties(path) for path in sys.argv[1:]]))
    """
)


@pytest.fixture(scope="module")
def attention_reloaded(tmp_path_factory):
    """Attention models with penalties attached, each saved, and the
    penalties a fresh process reloads from all of them (plain
    keras.models.load_model, one process for all): per scale, and the
    kernel count of `normalize_depth`. Maps a name to (model, attached,
    reloaded penalties by weight path)."""
    folder = tmp_path_factory.mktemp("attention")
    built = {}
    for scale in ("balanced", "fan_in", "size"):
        model = _attention_model()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # its config carries the penalty
            attached = attach_regularizer(
                model, ScaledL2(0.01, scale=scale), include=["attention"]
            )
        built[scale] = model, attached
    model = _attention_model()
    attached = attach_regularizer(
        model, ScaledL2(0.01, scale="none"), normalize_depth=True
    )
    built["normalize_depth"] = model, attached
    paths = []
    for name, (model, _) in built.items():
        paths.append(str(folder / f"{name}.keras"))
        model.save(paths[-1])
    reloaded = run_json(["-c", RELOAD_PENALTIES, *paths])
    return {
        name: (model, attached, penalties)
        for (name, (model, attached)), penalties in zip(
            built.items(), reloaded, strict=True
        )
    }


@pytest.mark.parametrize("scale", ["balanced", "fan_in", "size"])
def test_attention_gets_each_projections_fans_and_reloads(
    attention_reloaded, scale
):
    model, attached, reloaded = attention_reloaded[scale]
    assert len(attached) == 4
    want = _attention_reference(model, 0.01, scale)
    np.testing.assert_allclose(
        [float(p) for p in model.losses], want, rtol=1e-5
    )
    np.testing.assert_allclose(list(reloaded.values()), want, rtol=1e-5)


def _attention_given(regularizer):
    """Attention alone, with `regularizer` passed to it directly."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 16))
    x = keras.layers.MultiHeadAttention(
        4, 8, name="attention", kernel_regularizer=regularizer
    )(inputs, inputs)
    return keras.Model(inputs, x)


def test_attention_penalty_passed_directly_gets_each_projections_fans():
    model = _attention_given(ScaledL2(0.01))
    want = _attention_reference(model, 0.01, "balanced")
    np.testing.assert_allclose(
        [float(p) for p in model.losses], want, rtol=1e-5
    )
    # The convolution rule would make the query penalty 4x this.
    query = keras.ops.convert_to_numpy(
        _projection(model.get_layer("attention"), "query").kernel
    )
    assert reference_penalty(query, l2=0.01) == pytest.approx(4 * want[0])
    # And so in a training step (JAX computes it from stateless values).
    model.compile("sgd", "mse")
    x = np.zeros((2, 6, 16), "float32")
    assert model.evaluate(x, x, verbose=0) == pytest.approx(sum(want), rel=1e-5)


def test_a_subclass_calling_the_base_call_gets_the_fans_too():
    class Counted(ScaledL2):
        calls = 0

        def __call__(self, x):
            type(self).calls += 1
            return super().__call__(x)

    model = _attention_given(Counted(0.01))
    np.testing.assert_allclose(
        [float(p) for p in model.losses],
        _attention_reference(model, 0.01, "balanced"),
        rtol=1e-5,
    )
    assert Counted.calls == 4


def test_warnings_point_at_the_line_that_called():
    inputs = keras.Input((6, 16))
    nested = keras.Model(inputs, _attention_model()(inputs), name="outer")
    fixed_axes = ScaledL2(0.01, input_axes=(0,), output_axes=(1, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        attach_regularizer(nested, fixed_axes)
    assert len(caught) == 1
    assert "MultiHeadAttention layer 'attention'" in str(caught[0].message)
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)


def test_attention_with_axes_or_per_projection_penalties_is_skipped():
    model = _attention_model()
    fixed_axes = ScaledL2(0.01, input_axes=(0,), output_axes=(1, 2))
    with pytest.warns(
        UserWarning, match="MultiHeadAttention layer 'attention'"
    ):
        attached = attach_regularizer(model, fixed_axes)
    assert attached == ["head/kernel"]
    with pytest.warns(UserWarning) as caught:
        attached = attach_regularizer(
            model,
            lambda layer, weight: ScaledL2(
                0.02 if "query" in weight.path else 0.01
            ),
        )
    assert attached == ["head/kernel"]
    skipped, replaced = [
        str(w.message) for w in caught if w.category is UserWarning
    ]
    assert "different penalties per projection" in skipped
    # The head's fixed axes gave way to the kernel's own.
    assert replaced.startswith(
        "attach_regularizer replaced the penalty already on 1 kernel: "
        "'head/kernel': ScaledL2(0.01, balanced, input_axes=(0,), "
        "output_axes=(1, 2)) -> ScaledL2(0.01, balanced). "
    )
    # A factory making a new, equal regularizer per call is one penalty.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attached = attach_regularizer(
            model, lambda layer, weight: ScaledL2(0.01), include=["attention"]
        )
    assert len(attached) == 4
    with pytest.raises(ValueError, match="keeps one kernel regularizer"):
        attach_regularizer(model, fixed_axes, include=["attention"])


def test_normalize_depth_divides_by_the_kernels_penalised(attention_reloaded):
    model, attached, reloaded = attention_reloaded["normalize_depth"]
    assert len(attached) == 5  # query, key, value, output, head
    kernels = [w for w in model.trainable_weights if w.path in attached]
    want = sum(
        reference_penalty(keras.ops.convert_to_numpy(w), l2=0.01, scale="none")
        for w in kernels
    ) / len(attached)
    assert float(keras.ops.sum(model.losses)) == pytest.approx(want, rel=1e-5)
    assert {w.regularizer.num_kernels for w in kernels} == {5}
    assert sorted(reloaded) == sorted(attached)
    for weight in kernels:
        assert reloaded[weight.path] == pytest.approx(
            float(weight.regularizer(weight)), rel=1e-6
        )


def test_normalize_depth_needs_the_package_regularizers():
    model = _attention_model()
    with pytest.raises(ValueError) as error:
        attach_regularizer(model, "l2", normalize_depth=True)
    message = str(error.value)
    assert message.startswith("Invalid value for argument `regularizer`")
    assert "with normalize_depth=True" in message
    assert "Received: regularizer=<keras" in message
    assert model.losses == []


@pytest.mark.parametrize(
    "equation, expected",
    [
        ("ab,bc->ac", ((0,), (1,))),
        ("abc,cde->abde", ((0,), (1, 2))),
        ("abcd,cde->abe", ((0, 1), (2,))),
        ("abc,bcd->abd", ((1,), (2,))),  # b is shared: neither fan
        ("ab,b->a", (None, None)),  # no output axis
    ],
)
def test_einsum_kernel_axes(equation, expected):
    assert einsum_kernel_axes(equation) == expected


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"regularizer": 0.01}, "regularizer"),
        ({"regularizer": ScaledL2(), "include": [3]}, "include"),
        ({"regularizer": ScaledL2(), "exclude": [None]}, "exclude"),
        ({"regularizer": ScaledL2(), "normalize_depth": 1}, "normalize_depth"),
        (
            {"regularizer": ScaledL2(), "include_embeddings": "no"},
            "include_embeddings",
        ),
    ],
)
def test_bad_arguments(kwargs, name):
    model = _attention_model()
    with pytest.raises(ValueError) as error:
        attach_regularizer(model, **kwargs)
    assert f"Invalid value for argument `{name}`" in str(error.value)
    assert "Received:" in str(error.value)


def test_embedding_tables_are_an_option():
    model = _pretrained()
    with_tables = attach_regularizer(model, ScaledL2(0.01))
    model = _pretrained()
    without = attach_regularizer(
        model, ScaledL2(0.01), include_embeddings=False
    )
    assert sorted(set(with_tables) - set(without)) == ["embed/embeddings"]
    assert model.get_layer("embed").embeddings.regularizer is None


def test_a_penalty_no_config_carries_is_restored_by_load_model(tmp_path):
    class Block(keras.layers.Layer):
        """A custom layer: its config does not save its sub-layer."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            # Named automatically: `dense_<n>` differs from one model (and
            # process) to the next, so the record falls back to positions.
            self.inner = keras.layers.Dense(4)

        def build(self, input_shape):
            self.inner.build(input_shape)

        def call(self, x):
            return self.inner(x)

    keras.saving.register_keras_serializable("test_attach")(Block)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(1, name="head")(Block(name="block")(inputs))
    model = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning, match="in Block 'block'") as caught:
        attach_regularizer(model, ScaledL2(0.01))
    assert "1 of the 2 penalties" in str(caught[0].message)
    assert caught[0].filename == __file__  # the caller's, not the package's
    inner = f"block/{model.get_layer('block').inner.name}"
    report = penalty_report(model)
    assert [(r.layer, r.reload) for r in report.rows] == [
        (inner, "package"),
        ("head", "keras"),
    ]
    before = [float(keras.ops.convert_to_numpy(p)) for p in model.losses]
    path = tmp_path / "block.keras"
    model.save(path)
    assert len(keras.models.load_model(path).losses) == 1  # the head only
    reloaded = load_model(path)
    np.testing.assert_allclose(
        [float(keras.ops.convert_to_numpy(p)) for p in reloaded.losses],
        before,
        rtol=1e-6,
    )
    assert reloaded.get_layer("block").inner.name != inner.split("/")[1]
    # Saved as a folder, the record is read from it too.
    folder = tmp_path / "block_folder"
    model.save(folder, zipped=False)
    np.testing.assert_allclose(
        [
            float(keras.ops.convert_to_numpy(p))
            for p in load_model(folder).losses
        ],
        before,
        rtol=1e-6,
    )
    # A penalty set by hand where no config is known to carry it, and no
    # record: whether it comes back depends on the layer's constructor.
    plain = keras.models.load_model(path)
    plain_inner = plain.get_layer("block").inner
    plain_inner.kernel.regularizer = ScaledL2(0.01)
    rows = penalty_report(plain).rows
    assert [(r.layer, r.reload) for r in rows] == [
        (f"block/{plain_inner.name}", "unknown"),
        ("head", "keras"),
    ]
    assert "not known to carry it" in str(penalty_report(plain))


def test_a_record_of_a_different_model_is_refused(tmp_path, capsys):
    model = _attention_model()
    attach_regularizer(model, ScaledL2(0.01, scale="none"))
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path, "a") as archive:
        name = next(
            n
            for n in archive.namelist()
            if n.endswith(".json") and "assets" in n
        )
        record = json.loads(archive.read(name))
    record["penalties"][0]["shape"] = [99, 99]
    edited = tmp_path / "edited.keras"
    with (
        zipfile.ZipFile(path) as source,
        zipfile.ZipFile(edited, "w") as target,
    ):
        for item in source.namelist():
            data = source.read(item)
            if item == name:
                data = json.dumps(record).encode()
            target.writestr(item, data)
    with pytest.raises(ValueError, match="neither by that name nor in that"):
        load_model(edited)
    with pytest.raises(SystemExit) as exit:
        cli.main(["inspect", str(edited)])
    assert exit.value.code == 2
    assert "its record of penalties does not fit" in capsys.readouterr().err


def test_a_model_that_is_not_a_layer_is_refused():
    with pytest.raises(ValueError) as error:
        attach_regularizer(None, ScaledL2(0.01))
    assert str(error.value) == (
        "Invalid value for argument `model`: expected a Keras model or "
        "layer. Received: model=None"
    )


def test_an_unbuilt_model_is_refused():
    unbuilt = keras.Sequential(
        [keras.layers.Dense(3, name="dense")], name="unbuilt"
    )
    with pytest.raises(ValueError) as error:
        attach_regularizer(unbuilt, ScaledL2(0.01))
    message = str(error.value)
    assert message.startswith(
        "Invalid value for argument `model`: expected a built model"
    )
    assert "model.build(input_shape)" in message  # the remedy
    assert message.endswith(
        "Received: model=<Sequential name=unbuilt, built=False>"
    )
    unbuilt.build((None, 4))
    assert attach_regularizer(unbuilt, ScaledL2(0.01)) == ["dense/kernel"]


def test_a_model_without_kernels_is_refused():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.BatchNormalization()], name="norms"
    )
    with pytest.raises(ValueError) as error:
        attach_regularizer(model, ScaledL2(0.01))
    message = str(error.value)
    assert message.startswith(
        "Invalid value for argument `model`: expected a model holding at "
        "least one kernel of a kind attach_regularizer knows (Supported: "
    )
    assert message.endswith(
        "Received: model=<Sequential name=norms, built=True>"
    )


@pytest.mark.parametrize(
    "argument, value, unknown",
    [
        ("include", "haed", "'haed'"),
        ("include", ["head", "lstn"], "'lstn'"),
        ("exclude", ["encodr"], "'encodr'"),
    ],
)
def test_a_layer_name_that_matches_no_layer_is_refused(
    argument, value, unknown
):
    model = _pretrained()
    with pytest.raises(ValueError) as error:
        attach_regularizer(model, ScaledL2(0.01), **{argument: value})
    message = str(error.value)
    assert message.startswith(f"Invalid value for argument `{argument}`")
    assert f"({unknown} matches none; its layers: 'encoder', 'conv'" in message
    assert message.endswith(f"Received: {argument}={value!r}")
    assert model.losses == []  # nothing attached


@pytest.mark.parametrize(
    "include",
    [
        keras.layers.Conv2D,  # a class the model does not have
        "haed*",  # a pattern that matches nothing
        ["norm*"],  # layers without a kernel
        [],
    ],
)
def test_an_include_that_selects_no_kernel_is_refused(include):
    model = _pretrained()
    with pytest.raises(ValueError) as error:
        attach_regularizer(model, ScaledL2(0.01), include=include)
    message = str(error.value)
    assert message.startswith(
        "Invalid value for argument `include`: expected layer classes or "
        "name patterns that select at least one kernel of 'pretrained'"
    )
    assert message.endswith(f"Received: include={include!r}")
    assert model.losses == []


def test_replacing_a_penalty_warns_at_the_callers_line():
    model = _pretrained()
    attach_regularizer(model, keras.regularizers.L2(0.01), include="head")
    attach_regularizer(model, ScaledL1(0.02), include="conv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        attached = attach_regularizer(model, ScaledL2(0.01))
    assert len(attached) == len(EXPECTED_KERNELS)
    assert len(caught) == 1  # one warning per call, for both kernels
    assert caught[0].category is UserWarning
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)
    assert str(caught[0].message).startswith(
        "attach_regularizer replaced the penalty already on 2 kernels: "
        "'encoder/conv/kernel': ScaledL1(0.02, balanced) -> "
        "ScaledL2(0.01, balanced); "
        "'head/kernel': L2(0.01) -> ScaledL2(0.01, balanced). "
        "To keep a kernel's own penalty, leave its layer out with `exclude`"
    )
    # The report shows the penalty now on each.
    labels = {
        f"{row.layer}/{row.weight}": row.regularizer
        for row in penalty_report(model).rows
    }
    assert labels["head/kernel"] == "ScaledL2(0.01, balanced)"
    assert labels["encoder/conv/kernel"] == "ScaledL2(0.01, balanced)"
    # The same penalty again, or an equal one, changes nothing: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert attach_regularizer(model, ScaledL2(0.01)) == attached
        attach_regularizer(model, lambda layer, weight: ScaledL2(0.01))
    with pytest.warns(UserWarning, match="replaced the penalty") as caught:
        attach_regularizer(
            model, ScaledL2(0.01, scale="none"), normalize_depth=True
        )
    (message,) = [str(w.message) for w in caught if w.category is UserWarning]
    assert message.startswith(
        "attach_regularizer replaced the penalty already on 6 kernels: "
        "'encoder/conv/kernel', 'encoder/lstm/lstm_cell/kernel', "
        "'encoder/lstm/lstm_cell/recurrent_kernel', 'embed/embeddings', "
        "'einsum/kernel' and 1 more: ScaledL2(0.01, balanced) -> "
        "ScaledL2(0.01, none, num_kernels=6). "
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        attach_regularizer(
            model, ScaledL2(0.01, scale="none"), normalize_depth=True
        )


def test_anchoring_again_warns_only_once_the_kernels_moved():
    model = _pretrained()
    attach_regularizer(model, ScaledL2(0.1), anchor=True)
    with warnings.catch_warnings():
        # The same starting weights: the same penalty.
        warnings.simplefilter("error", UserWarning)
        attach_regularizer(model, ScaledL2(0.1), anchor=True)
    head = model.get_layer("head").kernel
    head.assign(head + 1.0)
    with pytest.warns(UserWarning, match="replaced the penalty") as caught:
        attach_regularizer(model, ScaledL2(0.1), anchor=True)
    (message,) = [str(w.message) for w in caught if w.category is UserWarning]
    assert message.startswith(
        "attach_regularizer replaced the penalty already on 1 kernel: "
        "'head/kernel': ScaledL2(0.1, balanced) toward its starting weights "
        "-> ScaledL2(0.1, balanced) toward its starting weights. "
    )


def _nested_functional():
    """A functional model inside a functional one: its layers' weight
    paths do not name it."""
    keras.utils.set_random_seed(0)
    images = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(4, 3, name="conv")(images)
    backbone = keras.Model(images, features, name="backbone")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name="classifier")


def _mobilenet_inside():
    """The model of issue 32: MobileNetV3Small inside a functional model."""
    backbone = keras.applications.MobileNetV3Small(
        weights=None, input_shape=(32, 32, 3), include_top=False
    )
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name="classifier")


@pytest.mark.parametrize(
    "build, first",
    [
        (_nested_functional, "backbone/conv/kernel"),
        (_mobilenet_inside, "MobileNetV3Small/conv/kernel"),
    ],
)
def test_attach_and_the_report_name_each_kernel_alike(build, first):
    if build is _mobilenet_inside and keras.backend.backend() != "tensorflow":
        pytest.skip("keras.applications run in the tensorflow leg")
    model = build()
    assert model.layers[1].get_layer("conv").kernel.path == "conv/kernel"
    attached = attach_regularizer(model, ScaledL2(0.01))
    assert attached[0] == first
    assert attached[-1] == "head/kernel"
    rows = penalty_report(model).rows
    assert sorted(attached) == sorted(f"{r.layer}/{r.weight}" for r in rows)
    # The names stay the same after a reload.
    reloaded = keras.models.model_from_json(model.to_json())
    with warnings.catch_warnings():
        warnings.simplefilter(
            "error", UserWarning
        )  # the reload has the same penalties
        assert attach_regularizer(reloaded, ScaledL2(0.01)) == attached
