"""The factor grid of each variant: the same for every model and size."""

import math

from keras_scaled_l2.scales import shape_multiplier
from transfer_study.settings import hidden_kernel_shape, num_kernels


def multiplier(variant, family, width, depth, num_train):
    """What the variant multiplies its factor by on a hidden kernel."""
    if variant.decoupled:
        value = 1.0
    else:
        value = shape_multiplier(
            hidden_kernel_shape(family, width),
            variant.scale,
            num_train if variant.num_examples else None,
        )
    if variant.normalize_depth:
        value /= num_kernels(family, depth)
    return value


def factor_grid(variant, setup, settings):
    """Half-decade grid around the factor that matches `none` at center.

    The center gives the reference model's hidden kernels the penalty (or
    decay) that `none` (or `adamw`) gives them at `settings.center`;
    `half_decades` points on each side, plus the default (0.01 for the
    coupled penalties, Keras AdamW's 0.004 for the decay). The grid does not
    depend on the model or the data size, so a factor chosen on one
    configuration can be looked up on every other.
    """
    kind = "decay" if variant.decoupled else "l2"
    width, depth = settings.shapes_of(setup).reference
    scaled = multiplier(
        variant,
        setup.family,
        width,
        depth,
        settings.num_train[setup.data][0],
    )
    center = settings.center[kind][setup.architecture]
    middle = round(2 * math.log10(center / scaled))
    steps = range(
        middle - settings.half_decades, middle + settings.half_decades + 1
    )
    grid = {float(f"{10 ** (k / 2):.6g}") for k in steps}
    if not variant.num_examples:
        grid.add(variant.default_factor)
    return sorted(grid)
