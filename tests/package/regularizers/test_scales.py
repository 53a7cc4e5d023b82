import ast
import doctest
import inspect
import math

import keras
import numpy as np
import pytest
from reference import reference_fans, reference_multiplier

from keras_scaled_l2 import SCALES, ScaledL2, compute_fans, shape_multiplier
from keras_scaled_l2 import scales as scales_module

SHAPES = [
    (),
    (7,),
    (5, 3),
    (3, 4, 6),
    (3, 3, 16, 32),
    (2, 3, 4, 5, 6),
    (1, 1, 64, 8),
]


@pytest.mark.run_once
@pytest.mark.parametrize("shape", SHAPES)
def test_fans_follow_the_keras_initializer_rule(shape):
    assert compute_fans(shape) == reference_fans(shape)


@pytest.mark.run_once
@pytest.mark.parametrize(
    "shape, input_axes, output_axes, expected",
    [
        # MultiHeadAttention query kernel (dim, heads, key_dim).
        ((16, 4, 8), (0,), (1, 2), (16, 32)),
        # MultiHeadAttention output kernel (heads, key_dim, dim).
        ((4, 8, 16), (0, 1), (2,), (32, 16)),
        # Axes counted from the end, as numpy does.
        ((16, 4, 8), (-3,), (-2, -1), (16, 32)),
        # Unnamed axes act as a receptive field: the conv rule itself.
        ((3, 3, 16, 32), (2,), (3,), (144, 288)),
    ],
)
def test_fans_with_axes(shape, input_axes, output_axes, expected):
    assert compute_fans(shape, input_axes, output_axes) == expected
    assert reference_fans(shape, input_axes, output_axes) == expected


@pytest.mark.run_once
@pytest.mark.parametrize("scale", sorted(SCALES))
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("num_examples", [None, 1, 1000])
def test_multiplier_matches_reference(scale, shape, num_examples):
    got = shape_multiplier(shape, scale, num_examples)
    want = reference_multiplier(shape, scale, num_examples)
    assert got == pytest.approx(want, rel=1e-12)
    assert type(got) is float


def test_num_examples_gives_the_textbook_cost():
    # (1/m) sum(loss) + lambda / (2m) sum(w**2), with l2=lambda, scale="none".
    lam, m = 0.7, 250
    kernel = np.arange(12, dtype="float32").reshape(3, 4) / 10
    penalty = ScaledL2(lam, scale="none", num_examples=m)(kernel)
    want = lam / (2 * m) * np.sum(kernel.astype("float64") ** 2)
    assert float(penalty) == pytest.approx(want, rel=1e-6)


@pytest.mark.run_once
def test_empty_kernel_has_no_penalty():
    assert shape_multiplier((0, 4), "balanced") == 0.0


@pytest.mark.parametrize(
    "shape",
    [(64, 32), (1024, 1024), (300, 5), (3, 3, 64, 128), (5, 40, 20)],
)
@pytest.mark.parametrize(
    "initializer",
    [keras.initializers.GlorotUniform, keras.initializers.GlorotNormal],
)
def test_balanced_glorot_kernels_start_near_twice_the_factor(
    shape, initializer
):
    # Glorot draws with variance 2 / (fan_in + fan_out), so the expected
    # sum(w**2) is 2 * size / (fan_in + fan_out) and the balanced penalty
    # is 2 * l2 whatever the size: a check that our fans are Keras's fans.
    l2 = 0.01
    kernel = keras.ops.convert_to_numpy(initializer(seed=1)(shape))
    balanced = float(ScaledL2(l2, scale="balanced")(kernel))
    assert balanced == pytest.approx(2 * l2, rel=0.1)


def test_plain_l2_spreads_over_two_orders_of_magnitude_at_glorot_init():
    # The contrast the balanced scale removes: in expectation the ratio is
    # (1024 * 1024 / 1024) / (32 / 16.5), about 528.
    shapes = [(32, 1), (1024, 1024)]
    penalties = [
        float(
            keras.regularizers.L2(0.01)(
                keras.initializers.GlorotUniform(seed=0)(shape)
            )
        )
        for shape in shapes
    ]
    assert penalties[1] / penalties[0] > 200


@pytest.mark.run_once
def test_unknown_dimension_is_named_in_the_error():
    with pytest.raises(ValueError) as error:
        shape_multiplier((None, 4), "fan_in")
    message = str(error.value)
    assert "scale='fan_in'" in message
    assert "Received: shape=(None, 4)" in message


@pytest.mark.run_once
def test_unknown_dimension_is_fine_without_scaling():
    assert shape_multiplier((None, 4), "none") == 1.0


@pytest.mark.run_once
@pytest.mark.parametrize(
    "input_axes, output_axes, name, received",
    [
        ((0,), (3,), "output_axes", "(3,)"),
        ((-4,), (1,), "input_axes", "(-4,)"),
        ((0,), (-3,), "output_axes", "(-3,)"),  # -3 is axis 0 at rank 3
    ],
)
def test_axes_that_do_not_fit_the_kernel(
    input_axes, output_axes, name, received
):
    with pytest.raises(ValueError) as error:
        compute_fans((16, 4, 8), input_axes, output_axes)
    message = str(error.value)
    assert f"Invalid value for argument `{name}`" in message
    assert f"Received: {name}={received}" in message
    assert "(16, 4, 8)" in message


@pytest.mark.run_once
def test_scales_table_is_the_documented_one():
    fan_in, fan_out, size = 6, 10, 60
    got = {name: fn(fan_in, fan_out, size) for name, fn in SCALES.items()}
    assert got == {
        "none": 1.0,
        "size": 1 / 60,
        "fan_in": 1 / 6,
        "fan_out": 1 / 10,
        "balanced": 16 / 60,
    }
    assert math.isclose(got["balanced"], got["fan_in"] + got["fan_out"])


def _keras_fans(shape, **axes):
    """The fans Keras's own `VarianceScaling` counts for `shape`.

    Read off its uniform limit, `sqrt(3 * scale / fan)`: with at least 500
    samples the largest one lies within 5 % of the limit (the chance that
    all fall below 95 % of it is under 1e-11), so the fan comes back within
    11 %, while the rules compared below differ by 4x or more.
    """
    fans = []
    for mode in ("fan_in", "fan_out"):
        initializer = keras.initializers.VarianceScaling(
            1.0, mode=mode, distribution="uniform", seed=0, **axes
        )
        values = keras.ops.convert_to_numpy(initializer(shape))
        fans.append(3.0 / float(np.max(np.abs(values))) ** 2)
    return fans


@pytest.mark.parametrize(
    "shape", [(512,), (32, 16), (3, 3, 16, 8), (2, 4, 8, 16), (3, 5, 7, 11)]
)
def test_fans_without_axes_are_the_ones_keras_initializers_count(shape):
    assert list(compute_fans(shape)) == pytest.approx(
        _keras_fans(shape), rel=0.11
    )


def test_fans_with_axes_against_keras_initializers():
    if (
        "input_axes"
        not in inspect.signature(keras.initializers.VarianceScaling).parameters
    ):
        pytest.skip(f"Keras {keras.__version__} initializers take no axes")
    # Every dimension named: the same fans.
    named = {"input_axes": (0,), "output_axes": (1, 2)}
    assert list(compute_fans((16, 4, 8), **named)) == pytest.approx(
        _keras_fans((16, 4, 8), **named), rel=0.11
    )
    # A dimension named in neither: Keras leaves it out, the package
    # multiplies it into both fans (documented in `compute_fans`).
    conv = {"input_axes": (2,), "output_axes": (3,)}
    keras_in, keras_out = _keras_fans((3, 3, 16, 32), **conv)
    assert (keras_in, keras_out) == pytest.approx((16, 32), rel=0.11)
    assert compute_fans((3, 3, 16, 32), **conv) == (9 * 16, 9 * 32)


@pytest.mark.run_once
def test_axes_may_be_any_sequence_and_dims_numpy_ints():
    as_tuples = shape_multiplier((16, 4, 8), "fan_in", None, (0,), (1, 2))
    as_lists = shape_multiplier([16, 4, 8], "fan_in", None, [0], [1, 2])
    assert as_lists == as_tuples == 1 / 16
    fans = compute_fans((np.int64(5),))
    assert fans == (5, 5) and all(type(fan) is int for fan in fans)


@pytest.mark.run_once
@pytest.mark.parametrize(
    "axes, missing, given",
    [
        ({"input_axes": (0,)}, "output_axes", "input_axes=(0,)"),
        ({"output_axes": (1,)}, "input_axes", "output_axes=(1,)"),
    ],
)
def test_one_axes_argument_alone_is_refused(axes, missing, given):
    with pytest.raises(ValueError) as error:
        compute_fans((4, 8), **axes)
    assert str(error.value) == (
        f"Invalid value for argument `{missing}`: expected a sequence of "
        f"ints when `{given.split('=')[0]}` is given ({given}). "
        f"Received: {missing}=None"
    )


@pytest.mark.run_once
def test_fans_of_an_unknown_dimension_are_refused():
    with pytest.raises(ValueError) as error:
        compute_fans((None, 4))
    assert str(error.value) == (
        "Invalid value for argument `shape`: expected a fully known shape "
        "(no `None` dimension). Received: shape=(None, 4)"
    )


def test_the_scales_table_example_runs():
    # Doctest collects no attribute docstrings, and `SCALES` documents
    # itself with one: run its example here.
    source = inspect.getsource(scales_module)
    tree = ast.parse(source)
    docstring = next(
        later.value.value
        for node, later in zip(tree.body, tree.body[1:], strict=False)
        if isinstance(node, ast.AnnAssign)
        and getattr(node.target, "id", None) == "SCALES"
        and isinstance(later, ast.Expr)
    )
    test = doctest.DocTestParser().get_doctest(
        docstring, {"SCALES": SCALES}, "SCALES", None, 0
    )
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert runner.tries >= 2 and runner.failures == 0
