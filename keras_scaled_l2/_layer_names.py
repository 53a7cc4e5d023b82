"""Names of the layers that own a model's weights, stable across reloads.

A weight's `path` depends on how the model was built: a nested model's
layer is `inner/dense/kernel` when built in place but `dense/kernel` after
a reload. Names here are the chain of layer names below the model instead
(`inner/dense`), which both give. A weight is named by its layer's name and
its own (`inner/dense/kernel`): `attach_regularizer` returns these names,
and `penalty_report` shows the same two parts as its `layer` and `weight`.
"""

from collections.abc import Callable

import keras

from keras_scaled_l2._layer_walk import sublayer_weights, walk_layers


def layer_namer(model: keras.layers.Layer) -> Callable[[keras.Variable], str]:
    """Returns `name_of(weight)`: the name of the layer holding `weight`.

    The innermost layer's name chain below `model`; a weight that no layer
    of `model` tracks (a model not built yet) is named by its `path`.
    """
    owners = weight_owners(model)

    def name_of(weight: keras.Variable) -> str:
        return owners.get(id(weight), weight.path)

    return name_of


def weight_namer(model: keras.layers.Layer) -> Callable[[keras.Variable], str]:
    """Returns `name_of(weight)`: `inner/dense/kernel`, layer and weight.

    The name `layer_namer` gives the layer holding `weight`, then the
    weight's own name: the same whether the model was built in place or
    reloaded, and the full chain of layers below `model` where a nested
    functional model's `weight.path` leaves its name out. A weight that no
    layer of `model` tracks is named by its `path`.
    """
    owners = weight_owners(model)

    def name_of(weight: keras.Variable) -> str:
        owner = owners.get(id(weight))
        return weight.path if owner is None else f"{owner}/{weight.name}"

    return name_of


def weight_owners(model: keras.layers.Layer) -> dict[int, str]:
    """Maps `id(weight)` to the name of the innermost layer holding it.

    A layer reached twice (shared between branches or models) keeps the
    name it was first reached by. The model's own weights are not named.
    """
    owners: dict[int, str] = {}
    for visit in walk_layers(model):
        if not visit.name:
            continue
        below = sublayer_weights(visit.layer)
        for weight in visit.layer.weights:
            if id(weight) not in below:
                owners.setdefault(id(weight), visit.name)
    return owners
