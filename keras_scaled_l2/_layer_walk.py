"""The one walk over a model's layers, which every module uses.

Finding kernels, attaching penalties, naming weights, telling what restores
a penalty and restoring one from a saved record all visit the same layers
in the same order: depth first, children in the order the layer tracks
them, each layer once (where it is first reached, when it is shared).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import keras

from keras_scaled_l2 import _keras_internals


@dataclasses.dataclass(frozen=True, eq=False)
class LayerVisit:
    """One layer as the walk reaches it.

    Attributes:
        layer: The layer.
        name: The chain of layer names below the root, `"inner/dense"`
            (`""` for the root itself). It does not depend on how the model
            was built, unlike a weight's `path`, so a model and its reload
            give the same names.
        parent: The visit of the layer that holds this one (`None` for the
            root).
    """

    layer: keras.layers.Layer
    name: str
    parent: LayerVisit | None

    def child(self, layer: keras.layers.Layer) -> LayerVisit:
        """The visit of one of this layer's direct sub-layers."""
        name = f"{self.name}/{layer.name}" if self.name else layer.name
        return LayerVisit(layer, name, self)


def walk_layers(
    root: keras.layers.Layer,
    descend: Callable[[LayerVisit], bool] | None = None,
) -> Iterator[LayerVisit]:
    """Yields a `LayerVisit` for `root` and for every layer below it.

    Depth first, each layer once. `descend(visit)` decides, after the visit
    is yielded, whether the walk goes into that layer's sub-layers (default:
    always); a caller may so record what it learnt of the layer before the
    decision is asked for.
    """
    seen: set[int] = set()
    stack = [LayerVisit(root, "", None)]
    while stack:
        visit = stack.pop()
        if id(visit.layer) in seen:
            continue
        seen.add(id(visit.layer))
        yield visit
        if descend is None or descend(visit):
            children = list(_keras_internals.sublayers(visit.layer))
            stack.extend(visit.child(child) for child in reversed(children))


def sublayer_weights(layer: keras.layers.Layer) -> set[int]:
    """The `id`s of the weights that `layer`'s sub-layers hold."""
    return {
        id(weight)
        for child in _keras_internals.sublayers(layer)
        for weight in child.weights
    }
