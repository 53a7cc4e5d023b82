import math

import numpy as np
import pytest

from keras_scaled_l2 import ScaledL1, ScaledL1L2, ScaledL2

pytestmark = pytest.mark.run_once  # no backend computes a result here

CLASSES_AND_FACTORS = [
    (ScaledL2, "l2"),
    (ScaledL1, "l1"),
    (ScaledL1L2, "l1"),
    (ScaledL1L2, "l2"),
]
BAD_FACTORS = [
    (-1.0, "-1.0"),
    (-1, "-1"),
    (np.float32(-0.5), "np.float32(-0.5)"),
    (math.nan, "nan"),
    (math.inf, "inf"),
    (-math.inf, "-inf"),
    (True, "True"),
    (np.bool_(False), "np.False_"),
    ("0.01", "'0.01'"),
    (None, "None"),
    ([0.01], "[0.01]"),
    (1 + 2j, "(1+2j)"),
]


def _error(cls, **kwargs):
    with pytest.raises(ValueError) as error:
        cls(**kwargs)
    return str(error.value)


@pytest.mark.parametrize("cls, name", CLASSES_AND_FACTORS)
@pytest.mark.parametrize("value, shown", BAD_FACTORS)
def test_bad_factor(cls, name, value, shown):
    assert _error(cls, **{name: value}) == (
        f"Invalid value for argument `{name}`: expected a non-negative "
        f"finite float. Received: {name}={shown}"
    )


@pytest.mark.parametrize("cls, name", CLASSES_AND_FACTORS)
@pytest.mark.parametrize(
    "value", [np.float32(0.25), np.float64(0.25), np.int64(0), 0, 0.25]
)
def test_numpy_and_python_scalars_are_stored_as_python_floats(cls, name, value):
    regularizer = cls(**{name: value})
    assert type(getattr(regularizer, name)) is float
    assert getattr(regularizer, name) == float(value)
    assert type(regularizer.get_config()[name]) is float


VALID_SCALES = "('none', 'size', 'fan_in', 'fan_out', 'balanced')"


@pytest.mark.parametrize("cls", [ScaledL2, ScaledL1, ScaledL1L2])
@pytest.mark.parametrize(
    "value, shown",
    [
        ("bogus", "'bogus'"),
        ("Balanced", "'Balanced'"),
        (1, "1"),
        (None, "None"),
    ],
)
def test_bad_scale(cls, value, shown):
    assert _error(cls, scale=value) == (
        "Invalid value for argument `scale`: expected one of "
        f"{VALID_SCALES}. Received: scale={shown}"
    )


@pytest.mark.parametrize("cls", [ScaledL2, ScaledL1, ScaledL1L2])
@pytest.mark.parametrize(
    "value, shown",
    [
        (0, "0"),
        (-5, "-5"),
        (2.5, "2.5"),
        (1000.0, "1000.0"),
        (True, "True"),
        ("1000", "'1000'"),
    ],
)
@pytest.mark.parametrize("name", ["num_examples", "num_kernels"])
def test_bad_counts(cls, value, shown, name):
    assert _error(cls, **{name: value}) == (
        f"Invalid value for argument `{name}`: expected a positive "
        f"integer or None. Received: {name}={shown}"
    )


def test_numpy_integer_num_examples_is_stored_as_int():
    regularizer = ScaledL2(num_examples=np.int64(500))
    assert type(regularizer.num_examples) is int
    assert regularizer.num_examples == 500


@pytest.mark.parametrize("cls", [ScaledL2, ScaledL1, ScaledL1L2])
@pytest.mark.parametrize(
    "kwargs, name, expected, shown",
    [
        (
            {"input_axes": (0,)},
            "output_axes",
            "a sequence of ints when `input_axes` is given (input_axes=(0,))",
            "None",
        ),
        (
            {"output_axes": [1, 2]},
            "input_axes",
            "a sequence of ints when `output_axes` is given "
            "(output_axes=[1, 2])",
            "None",
        ),
        (
            {"input_axes": (0, 1), "output_axes": (1, 2)},
            "output_axes",
            "axes disjoint from input_axes=(0, 1)",
            "(1, 2)",
        ),
        (
            {"input_axes": (), "output_axes": (1,)},
            "input_axes",
            "a non-empty sequence of distinct ints",
            "()",
        ),
        (
            {"input_axes": (0, 0), "output_axes": (1,)},
            "input_axes",
            "a non-empty sequence of distinct ints",
            "(0, 0)",
        ),
        (
            {"input_axes": 0, "output_axes": (1,)},
            "input_axes",
            "a non-empty sequence of distinct ints",
            "0",
        ),
        (
            {"input_axes": "0", "output_axes": (1,)},
            "input_axes",
            "a non-empty sequence of distinct ints",
            "'0'",
        ),
        (
            {"input_axes": (0,), "output_axes": (1.0,)},
            "output_axes",
            "a non-empty sequence of distinct ints",
            "(1.0,)",
        ),
        (
            {"input_axes": (True,), "output_axes": (1,)},
            "input_axes",
            "a non-empty sequence of distinct ints",
            "(True,)",
        ),
    ],
)
def test_bad_axes(cls, kwargs, name, expected, shown):
    assert _error(cls, **kwargs) == (
        f"Invalid value for argument `{name}`: expected {expected}. "
        f"Received: {name}={shown}"
    )


def test_axes_out_of_range_for_the_kernel_are_reported_when_called():
    regularizer = ScaledL2(input_axes=(0,), output_axes=(3,))
    with pytest.raises(ValueError) as error:
        regularizer(np.ones((16, 4, 8), "float32"))
    assert str(error.value) == (
        "Invalid value for argument `output_axes`: expected axes in range "
        "[-3, 3) for a kernel of shape (16, 4, 8). Received: output_axes=(3,)"
    )
