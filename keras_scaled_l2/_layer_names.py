"""Names of the layers that own a model's weights, stable across reloads.

A weight's `path` depends on how the model was built: a nested model's
layer is `inner/dense/kernel` when built in place but `dense/kernel` after
a reload. Names here are the chain of layer names below the model instead
(`inner/dense`), which both give.
"""

from keras_scaled_l2 import _keras_internals


def weight_owners(model):
    """Maps `id(weight)` to the name of the innermost layer holding it.

    A layer reached twice (shared between branches or models) keeps the
    name it was first reached by.
    """
    owners = {}
    visited = set()

    def visit(layer, name):
        if id(layer) in visited:
            return
        visited.add(id(layer))
        if name:
            for weight in layer.weights:
                owners[id(weight)] = name
        for child in _keras_internals.sublayers(layer):
            visit(child, f"{name}/{child.name}" if name else child.name)

    visit(model, "")
    return owners
