"""What brings each penalty back when a saved model is loaded.

A layer's penalty comes back from `keras.models.load_model` only when a
saved config carries it. That holds for the layers of a functional or
`Sequential` model, for wrappers and recurrent layers and for
`MultiHeadAttention`'s projections, but not for the sub-layers that a
layer or a subclassed model builds itself: KerasHub's backbones and their
`TransformerEncoder` / `TransformerDecoder` layers save their constructor's
arguments, and those hold no regularizers. There the record that
`attach_regularizer` leaves (see `_penalty_record`) lets
`keras_scaled_l2.load_model` restore them.
"""

from __future__ import annotations

from collections.abc import Iterator

import keras

from keras_scaled_l2 import _keras_internals
from keras_scaled_l2._layer_walk import (
    LayerVisit,
    sublayer_weights,
    walk_layers,
)
from keras_scaled_l2._penalty_record import has_record
from keras_scaled_l2.kernels import Kernel, layer_kernels, model_kernels
from keras_scaled_l2.regularizers import same_penalty

KERAS = "keras"
"""Its layer's saved config carries the penalty: `keras.models.load_model`
restores it (and `keras_scaled_l2.load_model` too)."""
PACKAGE = "package"
"""Only `keras_scaled_l2.load_model` restores it, from the record
`attach_regularizer` left on a layer holding it."""
UNKNOWN = "unknown"
"""Neither a config Keras saves nor a record carries it: it comes back only
if its layer's constructor sets it again (a custom layer that builds
`Dense(..., kernel_regularizer=...)` in `__init__` does)."""


def penalty_restorers(model: keras.layers.Layer) -> dict[int, str]:
    """Maps `id(weight)` of each regularized weight to what restores it.

    One of `KERAS`, `PACKAGE` and `UNKNOWN` (see each).
    """
    restorers: dict[int, str] = {}
    recorded: set[int] = set()
    saved: dict[int, bool] = {}  # id(layer): a saved config rebuilds it
    kernels_of: dict[int, dict[int, Kernel]] = {}

    def descend(visit: LayerVisit) -> bool:
        return not kernels_of[id(visit.layer)]

    for visit in walk_layers(model, descend):
        layer = visit.layer
        parent = visit.parent
        saved[id(layer)] = parent is None or (
            saved[id(parent.layer)] and _saves_sublayers(parent.layer)
        )
        if has_record(layer):
            recorded.update(id(k.weight) for k in model_kernels(layer))
        kernels = {id(k.weight): k for k in layer_kernels(layer)}
        kernels_of[id(layer)] = kernels
        below = set() if kernels else sublayer_weights(layer)
        for weight in layer.weights:
            if weight.regularizer is not None and id(weight) not in below:
                kernel = kernels.get(id(weight))
                carried = saved[id(layer)] and _config_carries(layer, kernel)
                restorers.setdefault(id(weight), KERAS if carried else UNKNOWN)
    for weight_id, restorer in restorers.items():
        if restorer == UNKNOWN and weight_id in recorded:
            restorers[weight_id] = PACKAGE
    return restorers


def unsaved_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Yields the outermost layers of `model` that save no sub-layer config.

    Their sub-layers' penalties do not come back from
    `keras.models.load_model`.
    """
    outermost: set[int] = set()

    def descend(visit: LayerVisit) -> bool:
        return id(visit.layer) not in outermost and not layer_kernels(
            visit.layer
        )

    for visit in walk_layers(model, descend):
        layer = visit.layer
        if layer_kernels(layer):
            continue
        if _keras_internals.sublayers(layer) and not _saves_sublayers(layer):
            outermost.add(id(layer))
            yield layer


def _saves_sublayers(layer):
    """Whether `layer`'s saved config rebuilds its sub-layers from theirs."""
    kinds = (
        keras.layers.RNN,
        keras.layers.StackedRNNCells,
        keras.layers.Wrapper,
    )
    if isinstance(layer, kinds):
        return True
    return type(layer).get_config in _keras_internals.graph_configs()


def _config_carries(layer, kernel):
    """Whether `layer`'s own config saves the penalty of `kernel`."""
    if kernel is None:
        # A bias or other weight: a Keras layer's config names its
        # regularizer; another layer's may or may not.
        return type(layer).__module__.startswith("keras.")
    if isinstance(layer, keras.layers.MultiHeadAttention):
        saved = _keras_internals.attention_kernel_regularizer(layer)
    elif kernel.attribute is None:
        return False
    else:
        saved = getattr(kernel.layer, kernel.attribute, None)
    return same_penalty(saved, kernel.weight.regularizer)
