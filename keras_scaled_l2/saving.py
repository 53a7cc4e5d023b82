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
import warnings
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
UNKNOWN = "unknown"
"""What brings a weight's penalty back (see `reload_paths`)."""


class PenaltyRecordError(ValueError):
    """A saved penalty record that cannot be restored on the loaded model."""


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
        PenaltyRecordError: (a `ValueError`) if the record does not fit the
            loaded model: it names kernels the model does not have.
    """
    model = keras.models.load_model(
        filepath,
        custom_objects=custom_objects,
        compile=compile,
        safe_mode=safe_mode,
    )
    records = _read_records(filepath)
    for record in records:
        _restore(model, record, custom_objects, safe_mode)
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
    record `attach_regularizer` left on a layer holding it; `"unknown"`:
    neither a config Keras saves nor a record carries it, so it comes back
    only if its layer's constructor sets it again (a custom layer that
    builds `Dense(..., kernel_regularizer=...)` in `__init__` does).
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
                paths.setdefault(id(weight), KERAS if carried else UNKNOWN)
        saves_children = saved and _saves_sublayers(layer)
        for child in children:
            visit(child, saves_children)

    visit(model, True)
    for weight_id, path in paths.items():
        if path == UNKNOWN and weight_id in recorded:
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


def same_penalty(a, b):
    """Whether two regularizers (or `None`s) save as the same config."""
    if a is b:
        return True
    if a is None or b is None:
        return False
    return keras.saving.serialize_keras_object(
        a
    ) == keras.saving.serialize_keras_object(b)


class _PenaltyRecord(_keras_internals.KerasSaveable):
    """Writes the penalties of a model's kernels when the model is saved.

    Keras's `.keras` saving walks a layer's attributes and calls
    `save_assets(folder)` on each saveable one it finds: so the record is
    made at save time, from the penalties the model holds then.
    """

    def __init__(self, model):
        self._model = weakref.ref(model) if model is not None else _gone

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
        # Copied with its model: the copy's record describes the copy.
        model = self._model()
        return type(self)(None if model is None else copy.deepcopy(model, memo))

    def __reduce__(self):
        return type(self), (self._model(),)


def _gone():
    return None


def _record_of(model):
    owners = weight_owners(model)
    penalties = [
        {
            "layer": owners.get(id(kernel.weight), kernel.weight.path),
            "weight": kernel.weight.name,
            "class_name": type(kernel.layer).__name__,
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
    if os.path.isdir(path):  # saved with `zipped=False`
        return [
            _read_json(os.path.join(folder, RECORD_FILE))
            for folder, _, files in sorted(os.walk(path))
            if RECORD_FILE in files
        ]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return [
                json.loads(archive.read(name))
                for name in archive.namelist()
                if name.endswith("/" + RECORD_FILE)
            ]
    if not path.endswith((".h5", ".hdf5")):
        warnings.warn(
            f"keras_scaled_l2.load_model reads the penalty record from a "
            f"local .keras file or folder; {path} is neither, so penalties "
            "that no saved config carries were not restored. Copy the file "
            "locally and load it from there.",
            stacklevel=3,
        )
    return []


def _read_json(path):
    with open(path) as file:
        return json.load(file)


def _restore(model, record, custom_objects, safe_mode):
    if record.get("format") != _RECORD_FORMAT:
        raise PenaltyRecordError(
            f"The penalty record in this file has format "
            f"{record.get('format')!r}; this version of keras-scaled-l2 "
            f"reads format {_RECORD_FORMAT}. Upgrade keras-scaled-l2."
        )
    root = _recorded_root(model, record["model"])
    for entry, kernel in _matched(root, record["penalties"]):
        regularizer = keras.saving.deserialize_keras_object(
            entry["regularizer"],
            custom_objects=custom_objects,
            safe_mode=safe_mode,
        )
        if kernel.attribute is not None:
            setattr(kernel.layer, kernel.attribute, regularizer)
        kernel.weight.regularizer = regularizer
    keep_record(root)


def _recorded_root(model, described):
    found = [
        layer
        for layer in _all_layers(model)
        if layer.name == described["name"]
        and type(layer).__name__ == described["class_name"]
    ]
    if len(found) != 1:
        raise PenaltyRecordError(
            "The saved penalty record is for the "
            f"{described['class_name']} '{described['name']}', which the "
            f"loaded model has {len(found)} of; cannot tell where to "
            "restore the penalties. Attach them again with "
            "attach_regularizer."
        )
    return found[0]


def _matched(root, penalties):
    """Pairs each record entry with its kernel in the loaded model.

    By layer name first; where names differ (layers named automatically,
    `dense_3` in one process and `dense` in another), by position in the
    model, if the kernel there has the recorded layer class, weight name
    and shape.
    """
    kernels = list(model_kernels(root))
    owners = weight_owners(root)
    by_name = {(owners.get(id(k.weight)), k.weight.name): k for k in kernels}
    pairs = [(e, by_name.get((e["layer"], e["weight"]))) for e in penalties]
    if all(k is not None and _fits(e, k) for e, k in pairs):
        return pairs
    pairs = [
        (e, kernels[e["position"]] if e["position"] < len(kernels) else None)
        for e in penalties
    ]
    for entry, kernel in pairs:
        if kernel is None or not _fits(entry, kernel):
            raise PenaltyRecordError(
                f"The saved penalty record of '{root.name}' names kernel "
                f"'{entry['layer']}/{entry['weight']}' ({entry['class_name']}, "
                f"shape {tuple(entry['shape'])}), which the loaded model has "
                "neither by that name nor in that place: it was built "
                "differently from the model saved. Attach the penalties "
                "again with attach_regularizer."
            )
    return pairs


def _fits(entry, kernel):
    return (
        list(kernel.weight.shape) == entry["shape"]
        and kernel.weight.name == entry["weight"]
        and type(kernel.layer).__name__ == entry["class_name"]
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
