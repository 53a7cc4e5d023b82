"""The record of attached penalties that a saved model carries.

`attach_regularizer` leaves a record on the model. Saving the model in the
`.keras` format writes it among the file's assets, as
`keras_scaled_l2_penalties.json`: one entry per regularized kernel, with
the name of the layer holding it, the weight's name, the layer's class, the
kernel's shape, its position among the model's kernels and the serialized
regularizer. The starting weights of penalties toward them (`anchor`),
which a config does not hold, go beside it in
`keras_scaled_l2_anchors.npz`, keyed by position: all of them, also those
that Keras saves with the layers' weights (where a layer's config carries
the penalty), so that the record alone restores every penalty whatever
rebuilds the layers. This module writes those files, reads them back and
matches their entries to the kernels of a loaded model.
"""

from __future__ import annotations

import copy
import io
import json
import os
import weakref
import zipfile
from typing import Any

import keras
import numpy as np

from keras_scaled_l2 import _keras_internals
from keras_scaled_l2._layer_names import weight_owners
from keras_scaled_l2._layer_walk import walk_layers
from keras_scaled_l2._warnings import warn_at_caller
from keras_scaled_l2.kernels import model_kernels
from keras_scaled_l2.regularizers import h5_refusal, is_anchored

RECORD_FILE = "keras_scaled_l2_penalties.json"
"""The name of the record among a `.keras` file's assets."""

ANCHORS_FILE = "keras_scaled_l2_anchors.npz"
"""The starting weights the record restores, beside it."""

RECORD_FORMAT = 2
"""The version of the record's layout: 2 with starting weights beside it.

A reader refuses any but 1 (0.1.0, no starting weights) and 2, so that an
older version of the package that cannot restore starting weights says
so rather than dropping them.
"""
_FORMAT_WITHOUT_ANCHORS = 1
_READ_FORMATS = (_FORMAT_WITHOUT_ANCHORS, RECORD_FORMAT)

_RECORD_ATTRIBUTE = "_keras_scaled_l2_penalties"


class PenaltyRecordError(ValueError):
    """A saved penalty record that cannot be restored on the loaded model.

    `keras_scaled_l2.load_model` raises it when the record in a file names
    kernels the loaded model does not have (the model was built differently
    from the one saved, or the record was edited), or has a format this
    version cannot read. It is a `ValueError`.

    Examples:
        >>> issubclass(PenaltyRecordError, ValueError)
        True
    """


def keep_record(model: keras.layers.Layer) -> None:
    """Makes saving `model` (or a model holding it) record its penalties.

    Saving it as `.h5`, which cannot hold the record, is refused while it
    has penalties toward starting weights: some of those (inside KerasHub
    layers, `MultiHeadAttention` projections) no saved config reaches, so
    only the model's own config can refuse them.
    """
    _keras_internals.untracked_attribute(
        model, _RECORD_ATTRIBUTE, lambda: _PenaltyRecord(model)
    )
    refuse_h5_with_anchors(model)


def refuse_h5_with_anchors(layer: keras.layers.Layer) -> None:
    """Makes saving `layer` as `.h5` fail while it holds starting weights.

    For a layer whose config does not carry its sub-layers' penalties (an
    attention layer, a KerasHub backbone), saved alone.
    """
    _keras_internals.guard_get_config(layer, _refuse_h5_with_anchors)


def _refuse_h5_with_anchors(model: keras.layers.Layer) -> None:
    if not _keras_internals.saving_h5():
        return
    for kernel in model_kernels(model):
        if is_anchored(kernel.weight.regularizer):
            raise h5_refusal(kernel.weight.regularizer)


def has_record(layer: keras.layers.Layer) -> bool:
    """Whether `layer` keeps a record of its penalties (see `keep_record`)."""
    return _RECORD_ATTRIBUTE in vars(layer)


def read_records(filepath: str | os.PathLike) -> list[dict[str, Any]]:
    """Returns the records a saved model holds (`[]` for none, or `.h5`).

    Each with its starting weights under `"anchors"` (`{}` for none).
    """
    path = os.fspath(filepath)
    if os.path.isdir(path):  # saved with `zipped=False`
        return [
            _with_anchors(
                _read_json(os.path.join(folder, RECORD_FILE)),
                os.path.join(folder, ANCHORS_FILE)
                if ANCHORS_FILE in files
                else None,
            )
            for folder, _, files in sorted(os.walk(path))
            if RECORD_FILE in files
        ]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            return [
                _with_anchors(
                    json.loads(archive.read(name)),
                    io.BytesIO(archive.read(anchors))
                    if (anchors := name[: -len(RECORD_FILE)] + ANCHORS_FILE)
                    in names
                    else None,
                )
                for name in sorted(names)
                if name.endswith("/" + RECORD_FILE)
            ]
    if not path.endswith((".h5", ".hdf5")):
        warn_at_caller(
            f"keras_scaled_l2.load_model reads the penalty record from a "
            f"local .keras file or folder; {path} is neither, so penalties "
            "that no saved config carries were not restored. Copy the file "
            "locally and load it from there."
        )
    return []


def restore_record(
    model: keras.layers.Layer,
    record: dict[str, Any],
    custom_objects: dict[str, Any] | None,
    safe_mode: bool,
) -> None:
    """Sets every penalty of `record` again on the kernels of `model`.

    Raises:
        PenaltyRecordError: if the record does not fit `model`.
    """
    if record.get("format") not in _READ_FORMATS:
        raise PenaltyRecordError(
            f"The penalty record in this file has format "
            f"{record.get('format')!r}; this version of keras-scaled-l2 "
            f"reads formats {_READ_FORMATS}. Upgrade keras-scaled-l2."
        )
    root = _recorded_root(model, record["model"])
    anchors = record.get("anchors", {})
    for entry, kernel in _matched(root, record["penalties"]):
        regularizer = keras.saving.deserialize_keras_object(
            entry["regularizer"],
            custom_objects=custom_objects,
            safe_mode=safe_mode,
        )
        if is_anchored(regularizer):
            key = str(entry["position"])
            if key not in anchors:
                raise PenaltyRecordError(
                    f"The saved penalty of kernel '{entry['layer']}/"
                    f"{entry['weight']}' pulls toward starting weights that "
                    "the file does not hold. Attach the penalties again "
                    "with attach_regularizer(..., anchor=True) on the "
                    "pretrained weights."
                )
            regularizer.load_own_variables({"anchor": anchors[key]})
        if kernel.attribute is not None:
            setattr(kernel.layer, kernel.attribute, regularizer)
        kernel.weight.regularizer = regularizer
    keep_record(root)


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
        record, anchors = _record_of(model)
        with open(os.path.join(dir_path, RECORD_FILE), "w") as file:
            json.dump(record, file)
        if anchors:
            np.savez(os.path.join(dir_path, ANCHORS_FILE), **anchors)

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
    """The record of `model`'s penalties, and their starting weights."""
    owners = weight_owners(model)
    kernels = list(model_kernels(model))
    anchors = {
        str(position): kernel.weight.regularizer.anchor_values()
        for position, kernel in enumerate(kernels)
        if is_anchored(kernel.weight.regularizer)
    }
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
        for position, kernel in enumerate(kernels)
        if kernel.weight.regularizer is not None
    ]
    record = {
        "format": RECORD_FORMAT if anchors else _FORMAT_WITHOUT_ANCHORS,
        "model": {"name": model.name, "class_name": type(model).__name__},
        "penalties": penalties,
    }
    return record, anchors


def _read_json(path):
    with open(path) as file:
        return json.load(file)


def _with_anchors(record, anchors_file):
    """`record` with the starting weights of `anchors_file` (`None`: none)."""
    if anchors_file is None:
        return {**record, "anchors": {}}
    with np.load(anchors_file, allow_pickle=False) as anchors:
        return {**record, "anchors": {key: anchors[key] for key in anchors}}


def _recorded_root(model, described):
    found = [
        visit.layer
        for visit in walk_layers(model)
        if visit.layer.name == described["name"]
        and type(visit.layer).__name__ == described["class_name"]
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
