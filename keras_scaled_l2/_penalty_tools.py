"""Small helpers on regularizers that the package's modules share.

Copies with changed arguments (`replaced`), equality as saved
(`same_penalty`), penalties toward starting weights (`is_anchored`) and the
short label the report and warnings print (`penalty_label`).
"""

from __future__ import annotations

from typing import Any, TypeVar

import keras

from keras_scaled_l2.regularizers import ScaledRegularizer

_RegularizerT = TypeVar("_RegularizerT", bound=ScaledRegularizer)


def replaced(regularizer: _RegularizerT, **changes: Any) -> _RegularizerT:
    """A copy of a scaled regularizer with some arguments changed.

    Its starting weights, if any, are copied too, unless `anchor` changes.
    """
    return type(regularizer)(**{**regularizer._arguments(), **changes})


def is_anchored(regularizer: object) -> bool:
    """Whether `regularizer` is a scaled penalty toward starting weights."""
    return isinstance(regularizer, ScaledRegularizer) and regularizer.anchored


def same_penalty(
    a: keras.regularizers.Regularizer | None,
    b: keras.regularizers.Regularizer | None,
) -> bool:
    """Whether two regularizers (or `None`s) save as the same config.

    Penalties toward starting weights, whose configs hold only the weights'
    shape, are the same only if they are one object.
    """
    if a is b:
        return True
    if a is None or b is None:
        return False
    if is_anchored(a) or is_anchored(b):
        return False
    return keras.saving.serialize_keras_object(
        a
    ) == keras.saving.serialize_keras_object(b)


def penalty_label(regularizer: Any) -> str:
    """Names a regularizer by its class and factors: `ScaledL2(0.01, fan_in)`.

    Keras's own show their factors (`L2(0.01)`, `L1L2(l1=0, l2=0.01)`), the
    scaled ones their factors and scale, and `num_kernels` or
    `num_examples` where set; other regularizers their class and the
    numbers and strings of their config.

    Examples:
        >>> from keras_scaled_l2 import ScaledL1L2, ScaledL2
        >>> penalty_label(keras.regularizers.L2(0.01))
        'L2(0.01)'
        >>> penalty_label(ScaledL2(0.01, scale="none", num_kernels=4))
        'ScaledL2(0.01, none, num_kernels=4)'
        >>> penalty_label(ScaledL1L2(l1=0.001, l2=0.01))
        'ScaledL1L2(l1=0.001, l2=0.01, balanced)'
    """
    name = type(regularizer).__name__
    if isinstance(regularizer, ScaledRegularizer):
        factors = [f"{value:g}" for value in _factors(regularizer)]
        if len(factors) == 2:
            factors = [f"l1={factors[0]}", f"l2={factors[1]}"]
        parts = [*factors, regularizer.scale]
        for option in ("num_kernels", "num_examples"):
            if getattr(regularizer, option) is not None:
                parts.append(f"{option}={getattr(regularizer, option)}")
        return f"{name}({', '.join(parts)})"
    if isinstance(regularizer, (keras.regularizers.L1, keras.regularizers.L2)):
        return f"{name}({_factors(regularizer)[0]:g})"
    if isinstance(regularizer, keras.regularizers.L1L2):
        l1, l2 = _factors(regularizer)
        return f"{name}(l1={l1:g}, l2={l2:g})"
    try:
        config = regularizer.get_config()
    except Exception:  # a custom regularizer or a plain function
        return getattr(regularizer, "__name__", name)
    parts = [
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value!r}"
        for key, value in config.items()
        if isinstance(value, (int, float, str)) and not isinstance(value, bool)
    ]
    return f"{name}({', '.join(parts)})"


def _factors(regularizer):
    """Its `l1` and `l2` factors, those it has, as Python floats."""
    return [
        float(getattr(regularizer, factor))
        for factor in ("l1", "l2")
        if getattr(regularizer, factor, None) is not None
    ]
