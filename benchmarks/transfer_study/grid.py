"""The factor grid of each variant: the same for every model and size."""

import math

from keras_scaled_l2.scales import shape_multiplier
from transfer_study.settings import DEFAULT_FACTOR


def factor_grid(variant, data, settings):
    """Half-decade grid around the factor that matches `none` at center.

    The center gives the reference model's hidden kernels the penalty that
    `none` gives them at `settings.center[data]`; `half_decades` points on
    each side, plus the default 0.01 for the plain scales. The grid does
    not depend on the model or the data size, so a factor chosen on one
    configuration can be looked up on every other.
    """
    width = settings.reference[0]
    num_examples = settings.num_train[data][0] if variant.num_examples else None
    multiplier = shape_multiplier((width, width), variant.scale, num_examples)
    middle = round(2 * math.log10(settings.center[data] / multiplier))
    steps = range(
        middle - settings.half_decades, middle + settings.half_decades + 1
    )
    grid = {float(f"{10 ** (k / 2):.6g}") for k in steps}
    if not variant.num_examples:
        grid.add(DEFAULT_FACTOR)
    return sorted(grid)
