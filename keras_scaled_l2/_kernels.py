"""Finding the kernels of a model, and the fan axes of each: reading only.

`attach_regularizer` changes models; the penalty report and the factor
conversions only read them. Both find kernels here, so that reading a model
never depends on the code that changes one.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterator

import keras
import numpy as np

from keras_scaled_l2 import _keras_internals
from keras_scaled_l2._layer_walk import LayerVisit, walk_layers
from keras_scaled_l2._types import FanAxes

# Layer kinds and their kernels: (weight attribute, regularizer attribute).
# The regularizer attribute is what the layer's config saves (`None`: the
# config saves none for that weight).
_KERNELS = (
    (keras.layers.EinsumDense, (("kernel", "kernel_regularizer"),)),
    (keras.layers.Dense, (("kernel", "kernel_regularizer"),)),
    (
        (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D),
        (("kernel", "depthwise_regularizer"),),
    ),
    (
        (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D),
        (
            ("depthwise_kernel", "depthwise_regularizer"),
            ("pointwise_kernel", "pointwise_regularizer"),
        ),
    ),
    (
        (
            keras.layers.Conv1D,
            keras.layers.Conv2D,
            keras.layers.Conv3D,
            keras.layers.Conv1DTranspose,
            keras.layers.Conv2DTranspose,
            keras.layers.Conv3DTranspose,
        ),
        (("kernel", "kernel_regularizer"),),
    ),
    (
        keras.layers.Embedding,
        (
            ("embeddings", "embeddings_regularizer"),
            # An untied `ReversibleEmbedding`'s output projection (a matmul
            # kernel, hidden x vocabulary); its config has no regularizer.
            ("reverse_embeddings", None),
        ),
    ),
    (
        (
            keras.layers.SimpleRNNCell,
            keras.layers.LSTMCell,
            keras.layers.GRUCell,
        ),
        (
            ("kernel", "kernel_regularizer"),
            ("recurrent_kernel", "recurrent_regularizer"),
        ),
    ),
)
SUPPORTED_LAYERS = (
    *(
        kind
        for kinds, _ in _KERNELS
        for kind in (kinds if isinstance(kinds, tuple) else (kinds,))
    ),
    keras.layers.MultiHeadAttention,
)
"""The layer classes whose kernels `attach_regularizer` knows."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One kernel of a model and where its regularizer lives.

    Attributes:
        layer: The layer that owns the kernel (an RNN's cell for RNNs).
        weight: The kernel variable.
        attribute: The layer attribute its config saves the regularizer in,
            or `None` where the config saves none for this weight.
        input_axes: Fan axes derived from an `EinsumDense` equation, or
            `None` for the Keras fan rule.
        output_axes: As `input_axes`.
    """

    layer: keras.layers.Layer
    weight: keras.Variable
    attribute: str | None
    input_axes: tuple[int, ...] | None = None
    output_axes: tuple[int, ...] | None = None

    def set_regularizer(
        self, regularizer: keras.regularizers.Regularizer | None
    ) -> None:
        """Sets the penalty where the config saves it and where Keras reads it.

        Keras computes a weight's penalty from `weight.regularizer`; the
        layer's config saves the attribute `attribute` names.
        """
        if self.attribute is not None:
            setattr(self.layer, self.attribute, regularizer)
        self.weight.regularizer = regularizer

    def sum_of_squares(self) -> float:
        """The kernel's current `sum(w**2)`, in float64, as a Python float."""
        values = keras.ops.convert_to_numpy(self.weight)
        return float(np.sum(np.square(values, dtype=np.float64)))


def einsum_kernel_axes(equation: str) -> FanAxes:
    """Returns the fan axes of an `EinsumDense` kernel from its equation.

    Kernel axes contracted with the input are the input axes; those that
    appear in the output only are the output axes. A kernel axis that
    appears in both the input and the output indexes independent matrices
    (`"abc,bcd->abd"` holds one `c x d` matrix per `b`): it is neither, so
    `compute_fans` counts it as a receptive field in both fans. Keras's
    `EinsumDense` counts such an axis as an output axis when it initializes
    the kernel; see `compute_fans` for why the penalty does not.

    Examples:
        >>> einsum_kernel_axes("abc,cde->abde")  # MultiHeadAttention query
        ((0,), (1, 2))
        >>> einsum_kernel_axes("abcd,cde->abe")  # its output projection
        ((0, 1), (2,))
        >>> einsum_kernel_axes("abc,bcd->abd")  # one matrix per b
        ((1,), (2,))

    Returns:
        `(input_axes, output_axes)`, or `(None, None)` when either is empty.
    """
    operands, output = equation.replace(" ", "").split("->")
    inputs, kernel = operands.split(",")
    input_axes = tuple(
        i for i, c in enumerate(kernel) if c in inputs and c not in output
    )
    output_axes = tuple(
        i for i, c in enumerate(kernel) if c in output and c not in inputs
    )
    if not input_axes or not output_axes:
        return None, None
    return input_axes, output_axes


def layer_kernels(layer: keras.layers.Layer) -> list[Kernel]:
    """Returns the `Kernel`s of one layer of a supported kind (else `[]`)."""
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return [
            kernel
            for projection in _keras_internals.sublayers(layer)
            for kernel in layer_kernels(projection)
        ]
    slots = next(
        (slots for kinds, slots in _KERNELS if isinstance(layer, kinds)), ()
    )
    axes: FanAxes = (None, None)
    if isinstance(layer, keras.layers.EinsumDense):
        axes = einsum_kernel_axes(layer.equation)
    return [
        Kernel(layer, getattr(layer, weight), attribute, *axes)
        for weight, attribute in slots
        if getattr(layer, weight, None) is not None
    ]


def model_kernels(model: keras.layers.Layer) -> Iterator[Kernel]:
    """Yields every `Kernel` of a model, nested layers included, each once."""
    found: dict[int, list[Kernel]] = {}

    def descend(visit: LayerVisit) -> bool:
        return not found[id(visit.layer)] and not isinstance(
            visit.layer, keras.layers.MultiHeadAttention
        )

    seen: set[int] = set()
    for visit in walk_layers(model, descend):
        kernels = found[id(visit.layer)] = layer_kernels(visit.layer)
        for kernel in kernels:
            if id(kernel.weight) not in seen:
                seen.add(id(kernel.weight))
                yield kernel


# Per layer that computes penalties: id(weight) -> (weight, fan axes).
_AXES_BY_LAYER: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def weight_fan_axes(
    layer: keras.layers.Layer, weight: keras.Variable
) -> FanAxes:
    """Returns the fan axes `weight` has as a kernel of `layer` or below.

    `(input_axes, output_axes)` of an `EinsumDense` kernel (from its
    equation), `(None, None)` for every other weight. Looked up once per
    layer and weight: a layer's regularization losses ask for every one of
    its regularized weights at every step.
    """
    table = _AXES_BY_LAYER.get(layer)
    entry = table.get(id(weight)) if table is not None else None
    if entry is None or entry[0] is not weight:
        table = {
            id(k.weight): (k.weight, (k.input_axes, k.output_axes))
            for k in model_kernels(layer)
        }
        _AXES_BY_LAYER[layer] = table
        # Not a kernel (a bias, say): the Keras rule, remembered too.
        entry = table.setdefault(id(weight), (weight, (None, None)))
    return entry[1]
