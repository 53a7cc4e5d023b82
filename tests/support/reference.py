"""Independent float64 numpy reference for the scaled penalties.

Written from the formulas in the README, not from the package's code, so that
the two can disagree.
"""

import numpy as np


def reference_fans(shape, input_axes=None, output_axes=None):
    shape = tuple(shape)
    if input_axes is not None:
        rank = len(shape)
        named = {a % rank for a in input_axes} | {a % rank for a in output_axes}
        receptive = np.prod(
            [d for i, d in enumerate(shape) if i not in named], dtype=np.int64
        )
        fan_in = receptive * np.prod([shape[a] for a in input_axes])
        fan_out = receptive * np.prod([shape[a] for a in output_axes])
        return int(fan_in), int(fan_out)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return receptive * shape[-2], receptive * shape[-1]


def reference_scale(fan_in, fan_out, size, scale):
    return {
        "none": 1.0,
        "size": 1.0 / size,
        "fan_in": 1.0 / fan_in,
        "fan_out": 1.0 / fan_out,
        "balanced": (fan_in + fan_out) / size,
    }[scale]


def reference_multiplier(
    shape,
    scale,
    num_examples=None,
    input_axes=None,
    output_axes=None,
    num_kernels=None,
):
    fan_in, fan_out = reference_fans(shape, input_axes, output_axes)
    size = int(np.prod(shape, dtype=np.int64))
    multiplier = reference_scale(fan_in, fan_out, size, scale)
    if num_examples is not None:
        multiplier /= 2.0 * num_examples
    if num_kernels is not None:
        multiplier /= num_kernels
    return multiplier


def reference_penalty(
    weights,
    l1=0.0,
    l2=0.0,
    scale="balanced",
    num_examples=None,
    input_axes=None,
    output_axes=None,
    num_kernels=None,
):
    weights = np.asarray(weights, dtype=np.float64)
    multiplier = reference_multiplier(
        weights.shape, scale, num_examples, input_axes, output_axes, num_kernels
    )
    return multiplier * (
        l1 * np.sum(np.abs(weights)) + l2 * np.sum(np.square(weights))
    )
