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

from keras_scaled_l2._types import FanAxes


def invalid_argument(name: str, expected: str, value: object) -> ValueError:
    """Builds the one `ValueError` message format used across the package."""
    return ValueError(
        f"Invalid value for argument `{name}`: expected {expected}. "
        f"Received: {name}={value!r}"
    )


def _is_bool(value: object) -> bool:
    # `bool` is an `int` subclass and numpy's `bool_` is neither: both are
    # rejected explicitly so that `ScaledL2(True)` is an error, not `1.0`.
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def validate_factor(value: object, name: str) -> float:
    """Returns `value` as a Python float if it is a non-negative finite real.

    Python and numpy scalars are accepted; bools, strings, `None`, sequences,
    NaN, infinities and negative numbers are not.
    """
    expected = "a non-negative finite float"
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise invalid_argument(name, expected, value)
    if not math.isfinite(value) or value < 0:
        raise invalid_argument(name, expected, value)
    return float(value)


def validate_fraction(value: object, name: str) -> float:
    """Returns `value` as a Python float if it lies strictly in (0, 1)."""
    expected = "a float strictly between 0 and 1"
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise invalid_argument(name, expected, value)
    # Not `0 < value < 1`: `numbers.Real` declares only `<` and `<=`. NaN
    # fails `value < 1`.
    if value <= 0 or not value < 1:
        raise invalid_argument(name, expected, value)
    return float(value)


def validate_flag(value: object, name: str) -> bool:
    """Returns `value` if it is `True` or `False` (numpy bools included)."""
    if not _is_bool(value):
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
    if _is_bool(value) or not isinstance(value, numbers.Integral) or value < 1:
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
        or any(_is_bool(a) or not isinstance(a, numbers.Integral) for a in axes)
        or len(set(axes)) != len(axes)
    ):
        raise invalid_argument(name, expected, value)
    return tuple(int(a) for a in axes)
