"""Penalties toward the starting weights (L2-SP): values, training, saving.

Every value is checked against a float64 numpy reference of `w - w0`.
"""

import copy
import pickle
import textwrap
import warnings

import keras
import numpy as np
import pytest
from anchored_file import anchored_model
from command_line import run_in_process
from fresh_process import run_json
from logged import assert_parts_exact
from project_paths import SUPPORT
from reference import reference_penalty
from round_trip import assert_serialization_round_trips

from keras_scaled_l2 import (
    SCALES,
    PenaltyLogger,
    ScaledL1,
    ScaledL1L2,
    ScaledL2,
    attach_regularizer,
    penalty_report,
)

RNG = np.random.default_rng(0)
KERNEL = RNG.normal(size=(6, 5, 4)).astype("float32")
START = RNG.normal(size=(6, 5, 4)).astype("float32")
FACTORS = {
    ScaledL2: dict(l2=0.3),
    ScaledL1: dict(l1=0.2),
    ScaledL1L2: dict(l1=0.1, l2=0.4),
}


def _numpy(value):
    return float(keras.ops.convert_to_numpy(value))


@pytest.mark.parametrize("scale", sorted(SCALES))
@pytest.mark.parametrize("cls", sorted(FACTORS, key=lambda c: c.__name__))
def test_the_penalty_is_that_of_the_distance_to_the_start(cls, scale):
    factors = FACTORS[cls]
    regularizer = cls(**factors, scale=scale, num_examples=50, anchor=START)
    want = reference_penalty(
        KERNEL.astype("float64") - START,
        scale=scale,
        num_examples=50,
        **factors,
    )
    assert _numpy(regularizer(KERNEL)) == pytest.approx(want, rel=1e-6)
    # At the start itself the penalty is zero, whatever the factor.
    assert _numpy(regularizer(START)) == 0.0


def test_the_start_is_a_float32_copy_taken_when_given():
    start = START.copy()
    regularizer = ScaledL2(0.1, anchor=start)
    start += 1.0
    values = regularizer.anchor_values()
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, START)  # a copy: exact
    float64 = ScaledL2(0.1, anchor=START.astype("float64"))
    # float64 where the backend holds float64 (JAX without x64 does not).
    held = "float32" if keras.backend.backend() == "jax" else "float64"
    assert float64.anchor_values().dtype == np.dtype(held)
    assert float64.get_config()["anchor"]["dtype"] == held
    assert ScaledL2(0.1).anchor_values() is None
    assert not ScaledL2(0.1).anchored and regularizer.anchored


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_kernels_accumulate_in_float32(dtype):
    layer = keras.layers.Dense(512, dtype=dtype)
    layer.build((None, 512))
    values = keras.ops.convert_to_numpy(keras.ops.cast(layer.kernel, "float32"))
    start = values + np.float32(0.25)
    regularizer = ScaledL2(1.0, scale="none", anchor=layer.kernel)
    np.testing.assert_array_equal(regularizer.anchor_values(), values)
    moved = ScaledL2(1.0, scale="none", anchor=start)
    penalty = moved(layer.kernel)
    assert keras.backend.standardize_dtype(penalty.dtype) == "float32"
    # 512 * 512 squares of 0.25: 16384, far past float16's precision at
    # that size (its spacing there is 16), exact in float32.
    want = np.sum((values.astype("float64") - start) ** 2)
    assert _numpy(penalty) == pytest.approx(want, rel=1e-6)
    assert _numpy(regularizer(layer.kernel)) == 0.0


def _pretrained():
    """A small model whose two hidden layers stand for a pretrained body."""
    keras.utils.set_random_seed(1)
    body = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(16, activation="tanh", name="first"),
            keras.layers.Dense(8, activation="tanh", name="second"),
        ],
        name="body",
    )
    return keras.Sequential(
        [body, keras.layers.Dense(1, name="head")], name="tuned"
    )


def _data(rows=64):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(rows, 10)).astype("float32")
    y = (x[:, :1] - x[:, 1:2] + 0.1 * rng.normal(size=(rows, 1))).astype(
        "float32"
    )
    return x, y


def test_attach_anchors_the_selected_layers_and_pulls_the_head_to_zero():
    model = _pretrained()
    starts = {
        w.path: keras.ops.convert_to_numpy(w).astype("float64")
        for w in model.trainable_weights
        if w.name == "kernel"
    }
    attached = attach_regularizer(model, ScaledL2(0.5), anchor="body")
    assert attached == [
        "body/first/kernel",
        "body/second/kernel",
        "head/kernel",
    ]
    body, head = model.get_layer("body"), model.get_layer("head")
    for layer in body.layers:
        assert layer.kernel_regularizer is layer.kernel.regularizer
        np.testing.assert_array_equal(
            layer.kernel.regularizer.anchor_values(), starts[layer.kernel.path]
        )
    assert not head.kernel.regularizer.anchored
    assert [_numpy(p) for p in model.losses[:2]] == [0.0, 0.0]
    model.compile(keras.optimizers.SGD(0.1), "mse", metrics=["mse"])
    model.fit(*_data(), epochs=2, verbose=0)
    for layer in [*body.layers, head]:
        kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
        start = starts[layer.kernel.path] if layer is not head else 0.0
        want = reference_penalty(kernel - start, l2=0.5)
        got = _numpy(layer.kernel.regularizer(layer.kernel))
        assert got == pytest.approx(want, rel=1e-5), layer.name
        assert got > 0


def test_the_logger_splits_the_loss_exactly_in_a_compiled_step():
    model = _pretrained()
    attach_regularizer(
        model, ScaledL1L2(0.01, 0.3, scale="fan_in"), anchor=True
    )
    # XLA on TensorFlow, a jitted step on JAX. PyTorch's jit_compile is
    # torch.compile, whose first trace of this step takes over a minute:
    # the PyTorch leg runs the step eagerly.
    model.compile(
        keras.optimizers.Adam(0.05),
        "mse",
        metrics=["mse"],
        jit_compile=keras.backend.backend() != "torch",
    )
    x, y = _data()
    history = model.fit(
        x,
        y,
        epochs=3,
        validation_split=0.25,
        verbose=0,
        callbacks=[PenaltyLogger(per_layer=True)],
    ).history
    assert_parts_exact(history)
    assert {"penalty/body/first", "penalty/body/second", "penalty/head"} <= set(
        history
    )
    assert history["penalty"][-1] > 0
    # evaluate's penalty is the float64 reference of the weights now.
    logs = model.evaluate(
        x, y, verbose=0, return_dict=True, callbacks=[PenaltyLogger()]
    )
    want = 0.0
    for layer in [*model.get_layer("body").layers, model.get_layer("head")]:
        kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
        start = layer.kernel.regularizer.anchor_values()
        want += reference_penalty(kernel - start, 0.01, 0.3, "fan_in")
    assert logs["penalty"] == pytest.approx(want, rel=1e-5)


def test_the_config_holds_the_shape_and_a_rebuilt_copy_says_what_is_missing():
    regularizer = ScaledL1(0.2, scale="size", anchor=START)
    assert regularizer.get_config()["anchor"] == {
        "shape": [6, 5, 4],
        "dtype": "float32",
    }
    rebuilt = assert_serialization_round_trips(regularizer)
    assert rebuilt.anchored
    with pytest.raises(ValueError, match="were not restored: it was rebuilt"):
        rebuilt(KERNEL)
    with pytest.raises(ValueError, match="were not restored"):
        rebuilt.anchor_values()
    # Pickling and deepcopy keep the values.
    for copied in (
        pickle.loads(pickle.dumps(regularizer)),
        copy.deepcopy(regularizer),
    ):
        np.testing.assert_array_equal(copied.anchor_values(), START)
        assert _numpy(copied(KERNEL)) == _numpy(regularizer(KERNEL))


def test_clone_model_leaves_a_penalty_that_refuses_to_compute():
    model = _pretrained()
    attach_regularizer(model, ScaledL2(0.1), anchor=True)
    clone = keras.models.clone_model(model)
    with pytest.raises(ValueError, match=r"keras\.models\.clone_model"):
        clone.losses  # noqa: B018


@pytest.mark.parametrize(
    "anchor, shown",
    [
        ("kernel", "anchor='kernel'"),
        (True, "anchor=True"),
        (3.0, "anchor=<array of shape () and dtype float64>"),
        (np.zeros((2, 0)), "anchor=<array of shape (2, 0) and dtype float64>"),
        (
            np.array([[1.0, np.nan]]),
            "anchor=<array of shape (1, 2) and dtype float64, not all finite>",
        ),
        (np.array([["a"]]), "anchor=<array of shape (1, 1) and dtype <U1>"),
        ({"shape": [2, 0], "dtype": "float32"}, "anchor={'shape': [2, 0]"),
        ({"shape": [2], "dtype": "int8"}, "anchor={'shape': [2], 'dtype'"),
    ],
)
def test_bad_starting_weights_are_refused_with_the_value(anchor, shown):
    with pytest.raises(ValueError) as error:
        ScaledL2(0.1, anchor=anchor)
    message = str(error.value)
    assert message.startswith("Invalid value for argument `anchor`: expected")
    assert f"Received: {shown}" in message


def test_a_start_that_does_not_fit_the_kernel_is_refused():
    layer = keras.layers.Dense(
        4, kernel_regularizer=ScaledL2(0.1, anchor=np.zeros((4, 3)))
    )
    layer.build((None, 3))
    with pytest.raises(ValueError) as error:
        layer.losses  # noqa: B018
    assert str(error.value) == (
        "Invalid value for argument `anchor`: expected starting weights of "
        "the kernel's shape (3, 4). Received: anchor=<array of shape (4, 3)>"
    )


def test_attach_refuses_what_it_cannot_anchor():
    unbuilt = keras.Sequential([keras.layers.Dense(3)], name="unbuilt")
    with pytest.raises(ValueError, match=r"'unbuilt' .*: it is not built"):
        attach_regularizer(unbuilt, ScaledL2(0.1), anchor=True)
    model = _pretrained()
    with pytest.raises(
        ValueError, match="found no kernel of 'tuned' to anchor"
    ):
        attach_regularizer(model, ScaledL2(0.1), anchor="no_such_layer")
    with pytest.raises(ValueError, match="Received: regularizer=<keras"):
        attach_regularizer(model, keras.regularizers.L2(0.1), anchor=True)
    with pytest.raises(ValueError, match="its own `anchor` fits one kernel"):
        attach_regularizer(model, ScaledL2(0.1, anchor=START))
    with pytest.raises(ValueError, match="Received: anchor=3"):
        attach_regularizer(model, ScaledL2(0.1), anchor=3)
    with pytest.raises(ValueError, match="Received: anchor=None"):
        attach_regularizer(model, ScaledL2(0.1), anchor=None)
    with pytest.raises(ValueError, match="found no kernel of 'tuned'"):
        attach_regularizer(model, ScaledL2(0.1), anchor=[])
    assert model.losses == []  # nothing was attached by the refusals
    # Nor changed: the regularizer an attention layer saves stays.
    attending = _attending_layers()
    with pytest.raises(ValueError, match="Received: regularizer=<keras"):
        attach_regularizer(attending, keras.regularizers.L2(0.1), anchor=True)
    saved = attending.get_layer("attention").get_config()["kernel_regularizer"]
    assert saved["class_name"] == "ScaledL2"


def _attending_layers():
    """A functional model whose only kernels are attention projections."""
    inputs = keras.Input((6,))
    tokens = keras.layers.Reshape((2, 3))(inputs)
    attention = keras.layers.MultiHeadAttention(
        1, 3, name="attention", kernel_regularizer=ScaledL2(0.3, "size")
    )
    outputs = keras.layers.Flatten()(attention(tokens, tokens))
    return keras.Model(inputs, outputs, name="attending")


def _attending():
    """`_attending_layers`, its projections toward their starting weights."""
    model = _attending_layers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the attention's is recorded
        attach_regularizer(model, ScaledL2(0.1), anchor=True)
    return model


def test_h5_refuses_starting_weights(tmp_path):
    model = _pretrained()
    attach_regularizer(model, ScaledL2(0.1), anchor=True)
    with pytest.raises(ValueError, match=r"A \.h5 file cannot hold"):
        model.save(str(tmp_path / "model.h5"))
    # Where no layer config holds them (attention projections), the
    # model's own config refuses; the one the attention's config saves is
    # cleared, so that no reload brings back a penalty toward zero.
    attending = _attending()
    assert (
        attending.get_layer("attention").get_config()["kernel_regularizer"]
        is None
    )
    with pytest.raises(ValueError, match=r"A \.h5 file cannot hold"):
        attending.save(str(tmp_path / "attending.h5"))
    attending.save(str(tmp_path / "attending.keras"))  # .keras holds them
    # Inside another model, and then saved alone: still refused.
    inputs = keras.Input((6,))
    outer = keras.Model(inputs, _attending_layers()(inputs), name="outer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the attention's is recorded
        attach_regularizer(outer, ScaledL2(0.1), anchor=True)
    with pytest.raises(ValueError, match=r"A \.h5 file cannot hold"):
        outer.get_layer("attending").save(str(tmp_path / "inner.h5"))


def test_weights_files_carry_the_starting_weights(tmp_path):
    model = _pretrained()
    attach_regularizer(model, ScaledL2(0.1), anchor="body")
    first = model.get_layer("body").layers[0]
    start = first.kernel.regularizer.anchor_values()
    path = str(tmp_path / "tuned.weights.h5")
    model.save_weights(path)
    # Another model, anchored elsewhere, loads the saved starting weights
    # into its own penalty's variable (the one traced steps read).
    other = _pretrained()
    for weight in other.trainable_weights:
        weight.assign(weight * 2.0)
    attach_regularizer(other, ScaledL2(0.1), anchor="body")
    regularizer = other.get_layer("body").layers[0].kernel.regularizer
    variable = regularizer._anchor
    other.load_weights(path)
    assert regularizer._anchor is variable
    np.testing.assert_array_equal(regularizer.anchor_values(), start)
    # Weights saved without starting weights, into anchored penalties.
    plain = _pretrained()
    attach_regularizer(plain, ScaledL2(0.1))
    plain_path = str(tmp_path / "plain.weights.h5")
    plain.save_weights(plain_path)
    with pytest.raises(ValueError, match="hold none for it"):
        other.load_weights(plain_path)
    # Starting weights saved, into penalties toward zero: said, not lost
    # without a word.
    with pytest.warns(UserWarning, match="they were not loaded"):
        plain.load_weights(path)


def test_the_report_and_inspect_name_the_starting_point_penalty(
    tmp_path, capsys
):
    model = _pretrained()
    attach_regularizer(model, ScaledL2(0.1), anchor="body")
    report = penalty_report(model)
    assert [r.toward for r in report.rows] == ["start", "start", "zero"]
    text = str(report)
    assert "toward" in text.splitlines()[1]
    assert (
        "toward start: 2 of these penalties are starting-point penalties"
        in text
    )
    path = str(tmp_path / "tuned.keras")
    model.save(path)
    code, out, _ = run_in_process(capsys, "inspect", path)
    assert code == 0
    assert "starting-point penalties (L2-SP)" in out
    # Without a starting-point penalty, the report has no such column.
    toward_zero = _pretrained()
    attach_regularizer(toward_zero, ScaledL2(0.1))
    plain = str(penalty_report(toward_zero))
    assert "head" in plain and "toward" not in plain


RELOAD = textwrap.dedent(
    """
    import json, sys
    import keras
    from anchored_file import saved_state as state  # by weight position
    from keras_scaled_l2 import load_model

    out = {}
    for path in sys.argv[1:]:
        out[path] = {
            "keras": state(keras.models.load_model(path)),
            "package": state(load_model(path)),
        }
    print(json.dumps(out))
    """
)


def test_starting_weights_reload_exactly_in_a_fresh_process(tmp_path):
    functional = anchored_model()
    paths, package_only = {}, {}
    for model in (functional, _pretrained()):
        if model is not functional:
            attach_regularizer(model, ScaledL1L2(0.1, 0.2), anchor="body")
            for weight in model.trainable_weights:
                weight.assign(weight * 1.5)
        path = str(tmp_path / f"{model.name}.keras")
        model.save(path)
        paths[path] = {
            f"{index} {w.name}": (
                _numpy(w.regularizer(w)),
                w.regularizer.anchor_values()
                if w.regularizer.anchored
                else None,
            )
            for index, w in enumerate(model.trainable_weights)
            if w.regularizer is not None
        }
        # The attention's four come back only with the package's loader.
        package_only[path] = {
            f"{index} {w.name}"
            for index, w in enumerate(model.trainable_weights)
            if w.path.startswith("attention/")
        }
    reloaded = run_json(
        ["-c", RELOAD, *paths], env={"PYTHONPATH": str(SUPPORT)}
    )
    for path, saved in paths.items():
        package = reloaded[path]["package"]
        assert sorted(package) == sorted(saved)
        for name, (penalty, start) in saved.items():
            assert package[name]["penalty"] == pytest.approx(penalty, rel=1e-6)
            if start is None:
                assert package[name]["start"] is None
            else:  # float32 values through JSON: exact
                np.testing.assert_array_equal(package[name]["start"], start)
        # keras.models.load_model: exact where a layer's config carries
        # the penalty.
        keras_only = reloaded[path]["keras"]
        carried = set(saved) - package_only[path]
        assert sorted(keras_only) == sorted(carried)
        for name in carried:
            assert keras_only[name] == package[name]
