"""Penalties that come back after a save and reload.

A layer's penalty comes back from `keras.models.load_model` only when a
saved config carries it. That holds for the layers of a functional or
`Sequential` model, for wrappers and recurrent layers and for
`MultiHeadAttention`'s projections, but not for the sub-layers that a
layer or a subclassed model builds itself: KerasHub's backbones and their
`TransformerEncoder` / `TransformerDecoder` layers save their constructor's
arguments, and those hold no regularizers.

`attach_regularizer` therefore records what it attached on the model: the
record is saved inside the `.keras` file (as an asset) and
`keras_scaled_l2.load_model` restores every penalty from it.
`reload_paths` tells, for each regularized weight, which of the two loaders
brings its penalty back.
"""

from __future__ import annotations

import copy
import json
import os
import weakref
import zipfile
from collections.abc import Iterator
from typing import Any

import keras

from keras_scaled_l2 import _keras_internals
from keras_scaled_l2._layer_names import weight_owners
from keras_scaled_l2.kernels import layer_kernels, model_kernels

RECORD_FILE = "keras_scaled_l2_penalties.json"
"""The name of the record among a `.keras` file's assets."""

_RECORD_ATTRIBUTE = "_keras_scaled_l2_penalties"
_RECORD_FORMAT = 1

KERAS = "keras"
PACKAGE = "package"
LOST = "lost"
"""What brings a weight's penalty back (see `reload_paths`)."""


def load_model(
    filepath: str | os.PathLike,
    custom_objects: dict[str, Any] | None = None,
    compile: bool = True,
    safe_mode: bool = True,
) -> keras.Model:
    """Loads a saved model with every penalty `attach_regularizer` set.

    `keras.models.load_model` (with the same arguments), then the penalties
    recorded in the file are set again, on the same kernels: those of
    sub-layers whose configs do not save regularizers (KerasHub's backbones
    and transformer layers, layers inside custom layers) included. A file
    without a record (saved before the penalties were attached, or as
    `.h5`) loads as `keras.models.load_model` loads it. The loaded model
    keeps the record, so saving it again keeps it too.

    >>> import os, tempfile
    >>> from keras_scaled_l2 import ScaledL2, attach_regularizer
    >>> model = keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(2, name="dense")], name="mlp"
    ... )
    >>> attach_regularizer(model, ScaledL2(0.01))
    ['mlp/dense/kernel']
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> model.save(path)
    >>> len(load_model(path).losses)
    1

    Args:
        filepath: Path to a `.keras` (or `.h5`) file.
        custom_objects: As in `keras.models.load_model`.
        compile: As in `keras.models.load_model`. Defaults to `True`.
        safe_mode: As in `keras.models.load_model`. Defaults to `True`.

    Returns:
        The loaded Keras model.

    Raises:
        ValueError: if the record names kernels the loaded model lacks.
    """
    model = keras.models.load_model(
        filepath,
        custom_objects=custom_objects,
        compile=compile,
        safe_mode=safe_mode,
    )
    records = _read_records(filepath)
    for record in records:
        _restore(model, record, custom_objects)
    if records:
        _keras_internals.drop_step_functions(model)
    return model


def keep_record(model: keras.layers.Layer) -> None:
    """Makes saving `model` (or a model holding it) record its penalties."""
    _keras_internals.untracked_attribute(
        model, _RECORD_ATTRIBUTE, lambda: _PenaltyRecord(model)
    )


def reload_paths(model: keras.layers.Layer) -> dict[int, str]:
    """Maps `id(weight)` of each regularized weight to what restores it.

    `"keras"`: its layer's saved config carries the penalty, so
    `keras.models.load_model` restores it (and `load_model` too);
    `"package"`: only `keras_scaled_l2.load_model` restores it, from the
    record `attach_regularizer` left on a layer holding it; `"lost"`:
    neither, and the penalty is gone after a reload.
    """
    paths: dict[int, str] = {}
    recorded: set[int] = set()

    def visit(layer, saved):
        if _RECORD_ATTRIBUTE in vars(layer):
            recorded.update(id(k.weight) for k in model_kernels(layer))
        kernels = {id(k.weight): k for k in layer_kernels(layer)}
        children = [] if kernels else _keras_internals.sublayers(layer)
        below = {id(w) for child in children for w in child.weights}
        for weight in layer.weights:
            if weight.regularizer is not None and id(weight) not in below:
                kernel = kernels.get(id(weight))
                carried = saved and _config_carries(layer, kernel)
                paths.setdefault(id(weight), KERAS if carried else LOST)
        saves_children = saved and _saves_sublayers(layer)
        for child in children:
            visit(child, saves_children)

    visit(model, True)
    for weight_id, path in paths.items():
        if path == LOST and weight_id in recorded:
            paths[weight_id] = PACKAGE
    return paths


def unsaved_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Yields the outermost layers of `model` that save no sub-layer config.

    Their sub-layers' penalties do not come back from
    `keras.models.load_model`.
    """
    stack = [model]
    while stack:
        layer = stack.pop(0)
        if layer_kernels(layer):
            continue
        children = _keras_internals.sublayers(layer)
        if children and not _saves_sublayers(layer):
            yield layer
        else:
            stack[:0] = children


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
        return True  # a bias or other weight: its layer's config names it
    if isinstance(layer, keras.layers.MultiHeadAttention):
        saved = _keras_internals.attention_kernel_regularizer(layer)
    elif kernel.attribute is None:
        return False
    else:
        saved = getattr(kernel.layer, kernel.attribute, None)
    return _same(saved, kernel.weight.regularizer)


def _same(saved, regularizer):
    if saved is regularizer:
        return True
    if saved is None or regularizer is None:
        return False
    return keras.saving.serialize_keras_object(
        saved
    ) == keras.saving.serialize_keras_object(regularizer)


class _PenaltyRecord(_keras_internals.KerasSaveable):
    """Writes the penalties of a model's kernels when the model is saved.

    Keras's `.keras` saving walks a layer's attributes and calls
    `save_assets(folder)` on each saveable one it finds: so the record is
    made at save time, from the penalties the model holds then.
    """

    def __init__(self, model):
        self._model = weakref.ref(model)

    def _obj_type(self):
        return _keras_internals.SAVEABLE_KIND

    def save_assets(self, dir_path):
        model = self._model()
        if model is None:
            return
        with open(os.path.join(dir_path, RECORD_FILE), "w") as file:
            json.dump(_record_of(model), file)

    def load_assets(self, dir_path):
        """Nothing: `load_model` reads the record from the file itself."""

    def __deepcopy__(self, memo):
        return type(self)(copy.deepcopy(self._model(), memo))

    def __reduce__(self):
        return type(self), (self._model(),)


def _record_of(model):
    owners = weight_owners(model)
    penalties = [
        {
            "layer": owners.get(id(kernel.weight), kernel.weight.path),
            "weight": kernel.weight.name,
            "shape": list(kernel.weight.shape),
            "position": position,
            "regularizer": keras.saving.serialize_keras_object(
                kernel.weight.regularizer
            ),
        }
        for position, kernel in enumerate(model_kernels(model))
        if kernel.weight.regularizer is not None
    ]
    return {
        "format": _RECORD_FORMAT,
        "model": {"name": model.name, "class_name": type(model).__name__},
        "penalties": penalties,
    }


def _read_records(filepath):
    path = os.fspath(filepath)
    if not zipfile.is_zipfile(path):
        return []
    with zipfile.ZipFile(path) as archive:
        return [
            json.loads(archive.read(name))
            for name in archive.namelist()
            if name.endswith("/" + RECORD_FILE)
        ]


def _restore(model, record, custom_objects):
    if record.get("format") != _RECORD_FORMAT:
        raise ValueError(
            f"The penalty record in this file has format "
            f"{record.get('format')!r}; this version of keras-scaled-l2 "
            f"reads format {_RECORD_FORMAT}. Upgrade keras-scaled-l2."
        )
    root = _recorded_root(model, record["model"])
    kernels = list(model_kernels(root))
    _check_kernels(root, kernels, record["penalties"])
    for entry in record["penalties"]:
        kernel = kernels[entry["position"]]
        regularizer = keras.saving.deserialize_keras_object(
            entry["regularizer"], custom_objects=custom_objects
        )
        if kernel.attribute is not None:
            setattr(kernel.layer, kernel.attribute, regularizer)
        kernel.weight.regularizer = regularizer
    keep_record(root)


def _recorded_root(model, described):
    layers = list(_all_layers(model))
    found = [
        layer
        for layer in layers
        if layer.name == described["name"]
        and type(layer).__name__ == described["class_name"]
    ]
    if len(found) != 1:
        found = [
            layer
            for layer in layers
            if type(layer).__name__ == described["class_name"]
        ]
    if len(found) != 1:
        raise ValueError(
            "The saved penalty record is for the "
            f"{described['class_name']} '{described['name']}', which the "
            f"loaded model has {len(found)} of; cannot tell where to "
            "restore the penalties. Re-attach them with attach_regularizer."
        )
    return found[0]


def _check_kernels(root, kernels, penalties):
    for entry in penalties:
        position = entry["position"]
        kernel = kernels[position] if position < len(kernels) else None
        if kernel is None or (
            list(kernel.weight.shape) != entry["shape"]
            or kernel.weight.name != entry["weight"]
        ):
            raise ValueError(
                f"The saved penalty record of '{root.name}' names kernel "
                f"{position} as '{entry['layer']}/{entry['weight']}' of "
                f"shape {tuple(entry['shape'])}, which the loaded model does "
                "not have there: the model was built differently from the "
                "one saved. Re-attach the penalties with attach_regularizer."
            )


def _all_layers(model):
    seen = set()
    stack = [model]
    while stack:
        layer = stack.pop(0)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack[:0] = _keras_internals.sublayers(layer)
