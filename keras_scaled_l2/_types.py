"""Type aliases of the public signatures."""

from typing import Any, TypeAlias

Tensor: TypeAlias = Any
"""A backend tensor, a `keras.Variable` or a numpy array.

Keras 3 has no tensor type common to its backends (and ships no type
information), so this alias only documents what a signature expects.
"""

FanAxes: TypeAlias = tuple[tuple[int, ...] | None, tuple[int, ...] | None]
"""`(input_axes, output_axes)` of a kernel, both `None` for the Keras rule."""
