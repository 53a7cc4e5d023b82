"""Argument checks shared by every public constructor.

Each helper returns the cleaned value or raises a `ValueError` whose message
names the argument, says what was expected and shows what was received::

    Invalid value for argument `l2`: expected a non-negative finite float.
    Received: l2=-1.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_scaled_l2._types import FanAxes


def invalid_argument(name: str, expected: str, value: object) -> ValueError:
    """Builds the one `ValueError` message format used across the package."""
    return ValueError(
        f"Invalid value for argument `{name}`: expected {expected}. "
        f"Received: {name}={value!r}"
    )


def is_bool(value: object) -> bool:
    # `bool` is an `int` subclass and numpy's `bool_` is neither: both are
    # rejected explicitly so that `ScaledL2(True)` is an error, not `1.0`.
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def validate_factor(value: object, name: str) -> float:
    """Returns `value` as a Python float if it is a non-negative finite real.

    Python and numpy scalars are accepted; bools, strings, `None`, sequences,
    NaN, infinities and negative numbers are not.
    """
    expected = "a non-negative finite float"
    if is_bool(value) or not isinstance(value, numbers.Real):
        raise invalid_argument(name, expected, value)
    if not math.isfinite(value) or value < 0:
        raise invalid_argument(name, expected, value)
    return float(value)


def validate_fraction(value: object, name: str) -> float:
    """Returns `value` as a Python float if it lies strictly in (0, 1)."""
    expected = "a float strictly between 0 and 1"
    if is_bool(value) or not isinstance(value, numbers.Real):
        raise invalid_argument(name, expected, value)
    # Not `0 < value < 1`: `numbers.Real` declares only `<` and `<=`. NaN
    # fails `value < 1`.
    if value <= 0 or not value < 1:
        raise invalid_argument(name, expected, value)
    return float(value)


def validate_flag(value: object, name: str) -> bool:
    """Returns `value` if it is `True` or `False` (numpy bools included)."""
    if not is_bool(value):
        raise invalid_argument(name, "True or False", value)
    return bool(value)


def validate_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Returns `value` if it is one of the strings in `choices`."""
    if not isinstance(value, str) or value not in choices:
        raise invalid_argument(name, f"one of {tuple(choices)}", value)
    return value


def validate_optional_positive_int(value: object, name: str) -> int | None:
    """Returns `None` or `value` as a Python int if it is a positive integer."""
    if value is None:
        return None
    if is_bool(value) or not isinstance(value, numbers.Integral) or value < 1:
        raise invalid_argument(name, "a positive integer or None", value)
    return int(value)


def validate_axes_pair(input_axes: object, output_axes: object) -> FanAxes:
    """Returns both axes arguments as tuples of ints, or both as `None`.

    Axes may be negative (counted from the end, as in numpy). What can be
    checked without a kernel is checked here: each is a non-empty sequence of
    distinct ints, both or neither are given, and no axis is named twice.
    Range checks need the kernel's rank and happen when the penalty is
    computed (see `keras_scaled_l2.scales.compute_fans`).
    """
    if (input_axes is None) != (output_axes is None):
        given, missing = (
            ("input_axes", "output_axes")
            if output_axes is None
            else ("output_axes", "input_axes")
        )
        value = input_axes if output_axes is None else output_axes
        raise invalid_argument(
            missing,
            f"a sequence of ints when `{given}` is given ({given}={value!r})",
            None,
        )
    if input_axes is None:
        return None, None
    input_axes = _validate_axes(input_axes, "input_axes")
    output_axes = _validate_axes(output_axes, "output_axes")
    if set(input_axes) & set(output_axes):
        raise invalid_argument(
            "output_axes",
            f"axes disjoint from input_axes={input_axes!r}",
            output_axes,
        )
    return input_axes, output_axes


def _validate_axes(value: Any, name: str) -> tuple[int, ...]:
    expected = "a non-empty sequence of distinct ints"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise invalid_argument(name, expected, value)
    axes = tuple(value)
    if (
        not axes
        or any(is_bool(a) or not isinstance(a, numbers.Integral) for a in axes)
        or len(set(axes)) != len(axes)
    ):
        raise invalid_argument(name, expected, value)
    return tuple(int(a) for a in axes)


def validate_anchor(value: object) -> Any:
    """Returns the `anchor` of a scaled penalty in one of its two forms.

    `None` (a penalty toward zero); a float64 or float32 numpy copy of a
    finite real array of rank 1 or more (starting weights given as numpy,
    Python lists, a backend tensor or a Keras variable: those of another
    float dtype become float32, which holds float16 and bfloat16 values
    exactly); or, as a config writes it, a dict of `shape` (a list of
    positive ints) and `dtype` (`"float32"` or `"float64"`), which stands
    for starting weights whose values are restored with the model's weights.
    """
    expected = (
        "None, the kernel's starting weights (a finite float array) or "
        'their config {"shape": [...], "dtype": "float32"}'
    )
    if value is None:
        return None
    if isinstance(value, dict):
        shape, dtype = value.get("shape"), value.get("dtype")
        if (
            set(value) != {"shape", "dtype"}
            or not isinstance(shape, (list, tuple))
            or not shape
            or any(
                is_bool(d) or not isinstance(d, numbers.Integral) or d < 1
                for d in shape
            )
            or dtype not in ("float32", "float64")
        ):
            raise invalid_argument("anchor", expected, value)
        return {"shape": [int(d) for d in shape], "dtype": dtype}
    if isinstance(value, (str, bytes)) or is_bool(value):
        raise invalid_argument("anchor", expected, value)
    if isinstance(value, keras.Variable):
        value = value.value  # JAX's variables warn when numpy reads them
    try:
        array = np.array(keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError) as error:
        raise invalid_argument("anchor", expected, value) from error
    summary = f"<array of shape {array.shape} and dtype {array.dtype}>"
    if array.dtype.kind not in "fiu" and str(array.dtype) != "bfloat16":
        raise invalid_argument("anchor", expected, shown(summary))
    if array.ndim == 0 or array.size == 0:
        raise invalid_argument("anchor", expected, shown(summary))
    if array.dtype != np.float64:
        array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise invalid_argument(
            "anchor", expected, shown(summary[:-1] + ", not all finite>")
        )
    return array


class _Shown(str):
    def __repr__(self) -> str:
        return str(self)


def shown(text: str) -> object:
    """`text` as an error message shows a received value: without quotes.

    For values too large to print, such as an array: a summary of it.
    """
    return _Shown(text)
