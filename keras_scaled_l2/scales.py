"""From a kernel's shape to the multiplier `s(shape)` of its penalty.

A scaled penalty is `factor * s(shape) * norm(w)`. This module holds the
fan counting and the table of scales, as data: every regularizer class looks
its scale up here, so each formula exists once.

| scale        | s(shape)                      |
|--------------|-------------------------------|
| `"none"`     | `1`                           |
| `"size"`     | `1 / size`                    |
| `"fan_in"`   | `1 / fan_in`                  |
| `"fan_out"`  | `1 / fan_out`                 |
| `"balanced"` | `(fan_in + fan_out) / size`   |

With `num_examples=m`, `s` is further multiplied by `1 / (2 * m)`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TypeGuard

from keras_scaled_l2._validation import invalid_argument, validate_axes_pair

SCALES: dict[str, Callable[[int, int, int], float]] = {
    "none": lambda fan_in, fan_out, size: 1.0,
    "size": lambda fan_in, fan_out, size: 1.0 / size,
    "fan_in": lambda fan_in, fan_out, size: 1.0 / fan_in,
    "fan_out": lambda fan_in, fan_out, size: 1.0 / fan_out,
    "balanced": lambda fan_in, fan_out, size: (fan_in + fan_out) / size,
}
"""Maps each scale name to `s(fan_in, fan_out, size)`.

Examples:
    >>> balanced = SCALES["balanced"]
    >>> balanced(256, 128, 256 * 128)  # (256 + 128) / (256 * 128)
    0.01171875
"""

FAN_SCALES = ("fan_in", "fan_out", "balanced")
"""The scales that depend on which kernel axes are fans."""


def compute_fans(
    shape: Sequence[int],
    input_axes: Sequence[int] | None = None,
    output_axes: Sequence[int] | None = None,
) -> tuple[int, int]:
    """Returns `(fan_in, fan_out)` of a kernel shape.

    Without axes, this is the rule of Keras's initializers
    (`keras.initializers.GlorotUniform` and every `VarianceScaling`): rank 0
    gives `(1, 1)`; rank 1 `(n, n)`; rank 2 `(rows, columns)`; rank 3 and up
    treats all dimensions but the last two as a receptive field, so
    `fan_in = receptive_field * shape[-2]` and
    `fan_out = receptive_field * shape[-1]`.

    With `input_axes` and `output_axes`, `fan_in` is the product of the input
    dimensions and `fan_out` that of the output dimensions, and dimensions
    named in neither act as a receptive field and multiply both: the conv
    rule above is the case `input_axes=(-2,)`, `output_axes=(-1,)`. Where
    every dimension is named (the `EinsumDense` projections of attention,
    for example) this equals what Keras's initializers count with axes.
    Where one is not, Keras (3.15 and newer, whose `VarianceScaling` takes
    axes) leaves it out of both fans; here it multiplies both, so that
    giving the conv rule's axes explicitly changes nothing, and so that a
    kernel axis an `EinsumDense` equation shares between input and output
    (one independent matrix per index, see `einsum_kernel_axes`) gets, under
    the balanced scale, exactly the sum of the penalties its matrices would
    get apart: `(n*a + n*b) / (n*a*b) = (a + b) / (a*b)`.

    Examples:
        >>> compute_fans((3, 3, 16, 32))
        (144, 288)
        >>> compute_fans((16, 4, 8), input_axes=(0,), output_axes=(1, 2))
        (16, 32)

        The conv rule, with its axes given:

        >>> compute_fans((3, 3, 16, 32), input_axes=(2,), output_axes=(3,))
        (144, 288)

    Args:
        shape: The kernel shape, a sequence of ints.
        input_axes: Optional tuple of ints, the axes a layer contracts with
            its input. Defaults to `None` (the Keras rule above).
        output_axes: Optional tuple of ints, the axes a layer produces its
            output along. Given if and only if `input_axes` is.

    Returns:
        A tuple of two Python ints.
    """
    if not _fully_known(tuple(shape)):
        raise invalid_argument(
            "shape", "a fully known shape (no `None` dimension)", tuple(shape)
        )
    shape = tuple(int(dim) for dim in shape)
    rank = len(shape)
    input_axes, output_axes = validate_axes_pair(input_axes, output_axes)
    if input_axes is None or output_axes is None:
        if rank == 0:
            return 1, 1
        if rank == 1:
            return shape[0], shape[0]
        input_axes, output_axes = (rank - 2,), (rank - 1,)
    inputs = _normalize_axes(input_axes, shape, "input_axes")
    outputs = _normalize_axes(output_axes, shape, "output_axes")
    if set(inputs) & set(outputs):
        raise invalid_argument(
            "output_axes",
            f"axes disjoint from input_axes={tuple(input_axes)} for a kernel "
            f"of shape {shape}",
            tuple(output_axes),
        )
    receptive_field = math.prod(
        dim
        for axis, dim in enumerate(shape)
        if axis not in inputs and axis not in outputs
    )
    fan_in = receptive_field * math.prod(shape[a] for a in inputs)
    fan_out = receptive_field * math.prod(shape[a] for a in outputs)
    return int(fan_in), int(fan_out)


def _normalize_axes(
    axes: Sequence[int], shape: tuple[int, ...], name: str
) -> tuple[int, ...]:
    rank = len(shape)
    if any(not -rank <= axis < rank for axis in axes):
        raise invalid_argument(
            name,
            f"axes in range [{-rank}, {rank}) for a kernel of shape {shape}",
            tuple(axes),
        )
    return tuple(axis % rank for axis in axes)


def shape_multiplier(
    shape: Sequence[int | None],
    scale: str = "balanced",
    num_examples: int | None = None,
    input_axes: Sequence[int] | None = None,
    output_axes: Sequence[int] | None = None,
) -> float:
    """Returns `s(shape)` as a Python float, `num_examples` included.

    The result depends only on the static shape, so it is computed once per
    shape (and cached) while a model is traced: at run time the penalty costs
    one multiplication by a constant, as Keras's own `L2` does.

    Examples:
        >>> shape_multiplier((256, 128), "balanced")
        0.01171875
        >>> shape_multiplier((256, 128), "none", num_examples=1000)
        0.0005

    Args:
        shape: The kernel shape, a sequence of ints (`None` for unknown).
        scale: A key of `SCALES`. Defaults to `"balanced"`.
        num_examples: Optional training-set size `m`; multiplies the result
            by `1 / (2 * m)`. Defaults to `None`.
        input_axes: See `compute_fans`. Defaults to `None`.
        output_axes: See `compute_fans`. Defaults to `None`.

    Returns:
        A Python float.

    Raises:
        ValueError: if the shape has unknown (`None`) dimensions and the
            scale needs them, or if the axes do not fit the shape.
    """
    return _cached_multiplier(
        tuple(None if dim is None else int(dim) for dim in shape),
        scale,
        num_examples,
        None if input_axes is None else tuple(input_axes),
        None if output_axes is None else tuple(output_axes),
    )


@functools.lru_cache(maxsize=1024)
def _cached_multiplier(
    shape: tuple[int | None, ...],
    scale: str,
    num_examples: int | None,
    input_axes: tuple[int, ...] | None,
    output_axes: tuple[int, ...] | None,
) -> float:
    multiplier = 1.0
    if scale != "none":
        if not _fully_known(shape):
            raise ValueError(
                f"The penalty with scale={scale!r} is computed from the "
                "kernel's static shape, which must be fully known; build the "
                "layer on inputs of known shape, or use scale='none'. "
                f"Received: shape={shape}"
            )
        fan_in, fan_out = compute_fans(shape, input_axes, output_axes)
        size = math.prod(shape)
        # A kernel with no elements has no penalty, whatever its scale.
        multiplier = SCALES[scale](fan_in, fan_out, size) if size else 0.0
    if num_examples is not None:
        multiplier /= 2.0 * num_examples
    return float(multiplier)


def _fully_known(
    shape: tuple[int | None, ...],
) -> TypeGuard[tuple[int, ...]]:
    return all(dim is not None for dim in shape)
