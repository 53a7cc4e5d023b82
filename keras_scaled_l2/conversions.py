"""Factor conversions: between scales, to weight decay, from lambda/(2m)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_scaled_l2._kernels import model_kernels
from keras_scaled_l2._validation import (
    invalid_argument,
    validate_choice,
    validate_factor,
    validate_optional_positive_int,
)
from keras_scaled_l2.scales import SCALES, shape_multiplier


def equivalent_factor(
    factor: float,
    shape: Sequence[int],
    from_scale: str = "none",
    to_scale: str = "balanced",
    input_axes: Sequence[int] | None = None,
    output_axes: Sequence[int] | None = None,
) -> float:
    """The factor under `to_scale` that gives the same penalty on a kernel.

    Derivation: the penalty is `factor * s(shape) * norm(w)` and the norm
    does not depend on the scale, so equal penalties need
    `to_factor * s_to(shape) = factor * s_from(shape)`, i.e.
    `to_factor = factor * s_from(shape) / s_to(shape)`. It holds for L1 and
    L2 alike, whatever the weights.

    Examples:
        >>> equivalent_factor(0.01, (256, 128))  # L2(0.01) on a 256x128 kernel
        0.8533333333333334

    Args:
        factor: Non-negative float, the factor under `from_scale`.
        shape: The kernel shape.
        from_scale: Scale of `factor`. Defaults to `"none"` (Keras's `L2`).
        to_scale: Scale of the result. Defaults to `"balanced"`.
        input_axes: Optional fan axes of the kernel, see `compute_fans`.
        output_axes: Optional fan axes of the kernel.

    Returns:
        A Python float.
    """
    factor = validate_factor(factor, "factor")
    s_from = _multiplier(
        shape, from_scale, "from_scale", input_axes, output_axes
    )
    s_to = _multiplier(shape, to_scale, "to_scale", input_axes, output_axes)
    return factor * s_from / s_to


def equivalent_model_factor(
    model: keras.Model,
    factor: float,
    from_scale: str = "none",
    to_scale: str = "balanced",
) -> float:
    """The factor under `to_scale` that keeps a model's total L2 penalty.

    One factor cannot match every layer at once (that is the point of
    scaling), so this matches the sum over the kernels
    `attach_regularizer` would regularize, at the model's current weights:
    `to_factor = factor * sum_k s_from(k) |w_k|^2 / sum_k s_to(k) |w_k|^2`.
    The per-layer penalties then shift towards the small layers.

    Args:
        model: A built Keras model.
        factor: Non-negative float, the factor under `from_scale`.
        from_scale: Defaults to `"none"`.
        to_scale: Defaults to `"balanced"`.

    Returns:
        A Python float.

    Examples:
        >>> import keras
        >>> model = keras.Sequential([
        ...     keras.Input((8,)),
        ...     keras.layers.Dense(4, kernel_initializer="ones"),
        ... ])
        >>> round(equivalent_model_factor(model, 0.01), 6)  # 0.01 / ((8+4)/32)
        0.026667
    """
    factor = validate_factor(factor, "factor")
    validate_choice(from_scale, "from_scale", tuple(SCALES))
    validate_choice(to_scale, "to_scale", tuple(SCALES))
    numerator = denominator = 0.0
    for kernel in model_kernels(model):
        shape = tuple(kernel.weight.shape)
        axes = (kernel.input_axes, kernel.output_axes)
        squares = kernel.sum_of_squares()
        numerator += shape_multiplier(shape, from_scale, None, *axes) * squares
        denominator += shape_multiplier(shape, to_scale, None, *axes) * squares
    if not denominator:
        raise ValueError(
            "equivalent_model_factor needs a model with non-zero kernels of "
            "a kind attach_regularizer knows."
        )
    return factor * numerator / denominator


def weight_decay_for_l2(l2: float) -> float:
    """The decoupled `weight_decay` matching a coupled L2 factor under SGD.

    Derivation: with a penalty `l2 * sum(w**2)` the gradient gains
    `2 * l2 * w`, so plain SGD with learning rate `lr` updates
    `w <- w - lr * grad - lr * 2 * l2 * w`. Keras optimizers apply
    `weight_decay=wd` as `w <- w - lr * wd * w` next to the update, so
    `wd = 2 * l2` gives the same step, whatever the learning rate. For a
    scaled penalty, use `2 * l2 * s(shape)` per kernel (Keras's
    `weight_decay` is one number per optimizer).

    The match is exact only for SGD without momentum. With momentum the
    L2 gradient goes through the momentum buffer and the decay does not.
    Under Adam, RMSprop and other adaptive optimizers no `weight_decay`
    matches: the L2 gradient is divided by the running gradient scale, so
    large-gradient weights are barely decayed; decoupled decay
    (`keras.optimizers.AdamW`, Loshchilov and Hutter 2019) decays every
    weight alike and is usually what one wants there.

    Examples:
        >>> weight_decay_for_l2(0.01)
        0.02

    Args:
        l2: Non-negative float, the coupled L2 factor.

    Returns:
        A Python float.
    """
    return 2.0 * validate_factor(l2, "l2")


def keras_factor_from_lambda(lam: float, num_examples: int) -> float:
    """The Keras factor for the textbook `lambda / (2m)` convention.

    The textbook cost is `(1/m) sum(loss) + lambda / (2m) sum(w**2)` over
    `m` training examples; Keras minimises `mean(loss) + factor *
    sum(w**2)`, so `factor = lambda / (2 * m)`. Equivalently, use
    `ScaledL2(lam, scale="none", num_examples=m)`.

    Examples:
        >>> keras_factor_from_lambda(1.0, 50000)
        1e-05

    Args:
        lam: Non-negative float, the textbook `lambda`.
        num_examples: Positive int `m`, the training-set size.

    Returns:
        A Python float.
    """
    lam = validate_factor(lam, "lam")
    multiplier = shape_multiplier((), "none", _positive(num_examples))
    return lam * multiplier


def _positive(num_examples: object) -> int:
    value = validate_optional_positive_int(num_examples, "num_examples")
    if value is None:
        raise invalid_argument("num_examples", "a positive integer", None)
    return value


def _multiplier(
    shape: Sequence[int],
    scale: str,
    name: str,
    input_axes: Sequence[int] | None,
    output_axes: Sequence[int] | None,
) -> float:
    validate_choice(scale, name, tuple(SCALES))
    multiplier = shape_multiplier(shape, scale, None, input_axes, output_axes)
    if not multiplier:
        raise ValueError(
            f"A kernel of shape {shape} has no elements; no factor matches."
        )
    return multiplier
