"""Saving attached penalties and bringing them back: the one place for it.

What a saved model keeps of the penalties `attach_regularizer` sets, where,
and what brings each back:

- **A layer's config.** Keras's saving (`.keras` and `.h5`) writes each
  layer's config, and `keras.models.load_model` rebuilds the layer from it:
  a penalty comes back where a saved config names it (`KERAS`). That holds
  for the layers of a functional or `Sequential` model, wrappers, recurrent
  layers and `MultiHeadAttention`'s one shared regularizer; not for the
  sub-layers a layer or a subclassed model builds itself (KerasHub's
  backbones and transformer layers save their constructor's arguments).
- **The starting weights** of a penalty toward them (`anchor`) are state,
  not config: the regularizer writes them with the model's weights
  (`ScaledRegularizer.save_own_variables`, into `model.weights.h5`), once.
- **The record.** `remember` leaves on the model a record that `.keras`
  saving writes among the file's assets as `keras_scaled_l2_penalties.json`:
  one entry per regularized kernel (layer name, weight name, layer class,
  shape, position among the model's kernels, serialized regularizer) and,
  for a penalty toward starting weights, where the weights file holds them
  (`"start"`). `load_model` sets every recorded penalty again (`PACKAGE`
  where only the record brings it back). Only starting weights that
  Keras's saving did not reach go beside it, in
  `keras_scaled_l2_anchors.npz` (format 2 stored them all there).
- **`.h5`.** One policy for every penalty a `.h5` file cannot bring back
  (toward starting weights, whose values no config holds, or set where no
  saved config names it): saving refuses it with an error naming the
  remedy (`refuse_h5`, `check_h5`). Nothing is dropped without a word.

`remember` is the one entry point `attach_regularizer` calls;
`keras_scaled_l2.load_model` calls `restore`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import weakref
import zipfile
from collections.abc import Iterator
from typing import Any

import h5py
import keras
import numpy as np

from keras_scaled_l2 import _keras_internals
from keras_scaled_l2._kernels import Kernel, layer_kernels, model_kernels
from keras_scaled_l2._layer_names import weight_owners
from keras_scaled_l2._layer_walk import (
    LayerVisit,
    sublayer_weights,
    walk_layers,
)
from keras_scaled_l2._penalty_tools import is_anchored, same_penalty
from keras_scaled_l2._validation import validate_anchor
from keras_scaled_l2._warnings import warn_at_caller

# What brings a penalty back (`penalty_restorers`).
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

RECORD_FILE = "keras_scaled_l2_penalties.json"
"""The name of the record among a `.keras` file's assets."""

ANCHORS_FILE = "keras_scaled_l2_anchors.npz"
"""Starting weights that the weights file does not hold, beside the record."""

RECORD_FORMAT = 3
"""The version of the record's layout.

1 (0.1.0's first files): no starting weights. 2: every starting weight in
`ANCHORS_FILE`, by position. 3: each entry toward starting weights says
where they are: `{"weights": group}` in the weights file, or
`{"anchors": key}` in `ANCHORS_FILE`. A reader refuses any other format,
so that a version that cannot restore starting weights says so rather
than dropping them.
"""
_READ_FORMATS = (1, 2, RECORD_FORMAT)

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


# ----------------------------------------------------------------- attaching


def remember(model: keras.layers.Layer, kernels: list[Kernel]) -> None:
    """Makes every penalty just attached to `kernels` of `model` survive.

    Leaves the record on `model`, guards its `.h5` saving where needed
    (`_keep`), and warns if `keras.models.load_model` would not restore
    some of `kernels`' penalties.
    """
    _keep(model)
    _warn_unless_keras_restores(model, kernels)


def _keep(model):
    """Leaves the record on `model`; guards `.h5` saving (`check_h5`) on
    the model and on each layer that, saved alone, would lose penalties:
    the outermost layers that save no sub-layer config, and attention
    layers whose projections pull toward their own starting weights."""
    _keras_internals.untracked_attribute(
        model, _RECORD_ATTRIBUTE, lambda: _PenaltyRecord(model)
    )
    attention = [
        visit.layer
        for visit in walk_layers(model)
        if isinstance(visit.layer, keras.layers.MultiHeadAttention)
    ]
    for layer in [model, *unsaved_layers(model), *attention]:
        # A patched `get_config` only where a `.h5` file would lose a
        # penalty: `.h5` saving calls no other method of ours, and these
        # layers' own configs do not see their sub-layers' penalties.
        if _lost_in_h5(layer):
            _keras_internals.guard_get_config(layer, check_h5)
        else:
            _keras_internals.unguard_get_config(layer)


def _warn_unless_keras_restores(model, kernels):
    restorers = penalty_restorers(model)
    lost = {
        id(k.weight): k for k in kernels if restorers[id(k.weight)] != KERAS
    }
    if not lost:
        return
    count = len(lost)
    holders = []
    for layer in unsaved_layers(model):
        if any(id(w) in lost for w in layer.weights):
            holders.append(f"{type(layer).__name__} '{layer.name}'")
            for weight in layer.weights:
                lost.pop(id(weight), None)
    holders += [
        f"{type(k.layer).__name__} '{k.layer.name}' ({k.weight.name})"
        for k in lost.values()
    ]
    warn_at_caller(
        f"keras.models.load_model will not restore {count} of the "
        f"{len(kernels)} penalties just attached: no saved config carries "
        f"them, in {_listed(holders)}. They are recorded in the model and "
        "saved with it in the .keras format (saving as .h5 is refused): "
        "reload it with keras_scaled_l2.load_model(path), which restores "
        "them, or attach them again after loading (KerasHub's "
        "save_to_preset does not keep the record either). "
        "penalty_report(model) shows, per weight, what restores its penalty."
    )


# ----------------------------------------------------------------- .h5


def check_h5(layer: keras.layers.Layer) -> None:
    """Refuses to save `layer` as `.h5` if that would lose a penalty.

    The `.h5` policy: a `.h5` file holds layers' configs and weights, so it
    brings back a penalty only where a saved config names it and the config
    holds all of it. A penalty toward starting weights (whose values no
    config holds), or one that no saved config names (inside a KerasHub
    layer, a custom layer, an anchored attention projection), is refused,
    whether it pulls toward zero or toward the start.

    Raises:
        ValueError: while `.h5` saving asks `layer` for its config, if a
            penalty below it would not come back.
    """
    if not _keras_internals.saving_h5():
        return
    lost = _lost_in_h5(layer)
    if lost:
        raise _h5_refusal(layer.name, lost)


def refuse_h5(regularizer: keras.regularizers.Regularizer) -> None:
    """`check_h5` for one regularizer whose config `.h5` saving asks for.

    A penalty toward starting weights reaches `.h5` saving through its
    layer's config, also in a model built with `anchor=` by hand.
    """
    if _keras_internals.saving_h5() and is_anchored(regularizer):
        raise _h5_refusal(None, [f"{type(regularizer).__name__}(anchor=...)"])


def _lost_in_h5(layer):
    """Names of the penalties below `layer` that `.h5` would not bring back."""
    restorers = penalty_restorers(layer)
    owners = weight_owners(layer)
    return [
        owners.get(id(kernel.weight), kernel.weight.path)
        + f"/{kernel.weight.name}"
        for kernel in model_kernels(layer)
        if is_anchored(kernel.weight.regularizer)
        or restorers.get(id(kernel.weight), KERAS) != KERAS
    ]


def _h5_refusal(name, lost):
    where = "" if name is None else f" of '{name}'"
    return ValueError(
        f"A .h5 file cannot hold the penalties{where} on {_listed(lost)}: "
        ".h5 keeps only the layers' configs and weights, and these are "
        "toward starting weights (a config holds only their shape) or set "
        "where no saved config names them, so they would reload as no "
        "penalty. Save the model in the .keras format "
        "(model.save('model.keras')) and reload it with "
        "keras_scaled_l2.load_model."
    )


def _listed(names):
    listed = ", ".join(names[:5])
    if len(names) > 5:
        listed += f" and {len(names) - 5} more"
    return listed


# ----------------------------------------------------------------- restorers


def penalty_restorers(model: keras.layers.Layer) -> dict[int, str]:
    """Maps `id(weight)` of each regularized weight to what restores it.

    One of `KERAS`, `PACKAGE` and `UNKNOWN` (see each), for `model` saved
    as a whole.
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
        if _RECORD_ATTRIBUTE in vars(layer):
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


# ----------------------------------------------------------------- saving


class _PenaltyRecord(_keras_internals.KerasSaveable):
    """Writes the penalties of a model's kernels when the model is saved.

    Keras's `.keras` saving walks a layer's attributes and calls
    `save_assets(folder)` on each saveable one it finds: so the record is
    made at save time, from the penalties the model holds then. Keras
    walks private attributes (this one) after the layers, so the
    regularizers below have written their starting weights by then and
    say where (`ScaledRegularizer._saved_at`).
    """

    def __init__(self, model):
        self._model = weakref.ref(model) if model is not None else _gone

    def _obj_type(self):
        return _keras_internals.SAVEABLE_KIND

    def save_assets(self, dir_path):
        model = self._model()
        if model is None:
            return
        record, unreached = _record_of(model)
        with open(os.path.join(dir_path, RECORD_FILE), "w") as file:
            json.dump(record, file)
        if unreached:
            np.savez(os.path.join(dir_path, ANCHORS_FILE), **unreached)

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
    """The record of `model`'s penalties, and the starting weights that the
    weights file does not hold, by key."""
    owners = weight_owners(model)
    penalties = []
    unreached = {}
    for position, kernel in enumerate(model_kernels(model)):
        regularizer = kernel.weight.regularizer
        if regularizer is None:
            continue
        entry = {
            "layer": owners.get(id(kernel.weight), kernel.weight.path),
            "weight": kernel.weight.name,
            "class_name": type(kernel.layer).__name__,
            "shape": list(kernel.weight.shape),
            "position": position,
            "regularizer": keras.saving.serialize_keras_object(regularizer),
        }
        if is_anchored(regularizer):
            values = regularizer.anchor_values()
            if regularizer._saved_at is None:
                unreached[str(position)] = values
                entry["start"] = {"anchors": str(position)}
            else:
                entry["start"] = {"weights": regularizer._saved_at}
            entry["start"]["sha256"] = _digest(values)
        penalties.append(entry)
    record = {
        "format": RECORD_FORMAT,
        "model": {"name": model.name, "class_name": type(model).__name__},
        "penalties": penalties,
    }
    return record, unreached


# ----------------------------------------------------------------- loading


def restore(
    model: keras.layers.Layer,
    filepath: str | os.PathLike,
    custom_objects: dict[str, Any] | None,
    safe_mode: bool,
) -> bool:
    """Sets every penalty the file's records hold on `model`, loaded from it.

    Returns whether the file held a record.

    Raises:
        PenaltyRecordError: if a record does not fit `model`.
    """
    with _saved_file(filepath) as saved:
        if saved is None:
            return False
        records = saved.records()
        for record, anchors in records:
            _restore_record(
                model, record, anchors, saved, custom_objects, safe_mode
            )
    return bool(records)


class _SavedFile:
    """The records and weights of a `.keras` file or folder, for reading."""

    def __init__(self, path, archive):
        self._path = path
        self._archive = archive
        self._weights = None

    def _read(self, name):
        if self._archive is not None:
            return self._archive.read(name)
        with open(os.path.join(self._path, name), "rb") as file:
            return file.read()

    def _names(self):
        if self._archive is not None:
            return set(self._archive.namelist())
        return {
            os.path.relpath(os.path.join(folder, name), self._path).replace(
                os.sep, "/"
            )
            for folder, _, files in os.walk(self._path)
            for name in files
        }

    def records(self):
        """`(record, anchors)` for each record: `anchors` from its npz."""
        names = self._names()
        found = []
        for name in sorted(n for n in names if n.endswith("/" + RECORD_FILE)):
            record = json.loads(self._read(name))
            beside = name[: -len(RECORD_FILE)] + ANCHORS_FILE
            anchors = {}
            if beside in names:
                with np.load(
                    io.BytesIO(self._read(beside)), allow_pickle=False
                ) as stored:
                    anchors = {key: stored[key] for key in stored}
            found.append((record, anchors))
        return found

    def saved_variable(self, group, key):
        """The array the weights file holds for `group` under `key`."""
        if self._weights is None:
            name = _keras_internals.WEIGHTS_FILE
            if self._archive is not None:
                source = self._archive.open(name)
            else:
                source = os.path.join(self._path, name)
            self._weights = h5py.File(source, "r")
        return _keras_internals.saved_variable(self._weights, group, key)

    def close(self):
        if self._weights is not None:
            self._weights.close()


@contextlib.contextmanager
def _saved_file(filepath):
    path = os.fspath(filepath)
    if os.path.isdir(path):  # saved with `zipped=False`
        saved = _SavedFile(path, None)
    elif zipfile.is_zipfile(path):
        saved = _SavedFile(path, zipfile.ZipFile(path))
    else:
        if not path.endswith((".h5", ".hdf5")):
            warn_at_caller(
                f"keras_scaled_l2.load_model reads the penalty record from a "
                f"local .keras file or folder; {path} is neither, so "
                "penalties that no saved config carries were not restored. "
                "Copy the file locally and load it from there."
            )
        yield None
        return
    try:
        yield saved
    finally:
        saved.close()
        if saved._archive is not None:
            saved._archive.close()


def _restore_record(model, record, anchors, saved, custom_objects, safe_mode):
    """Sets every penalty of `record` again on the kernels of `model`."""
    if record.get("format") not in _READ_FORMATS:
        raise PenaltyRecordError(
            f"The penalty record in this file has format "
            f"{record.get('format')!r}; this version of keras-scaled-l2 "
            f"reads formats {_READ_FORMATS}. Upgrade keras-scaled-l2."
        )
    root = _recorded_root(model, record["model"])
    for entry, kernel in _matched(root, record["penalties"]):
        regularizer = keras.saving.deserialize_keras_object(
            entry["regularizer"],
            custom_objects=custom_objects,
            safe_mode=safe_mode,
        )
        if is_anchored(regularizer):
            values = _starting_weights(entry, anchors, saved)
            regularizer._set_anchor(validate_anchor(values), like=kernel.weight)
        kernel.set_regularizer(regularizer)
    _keep(root)


def _starting_weights(entry, anchors, saved):
    """The starting weights the file holds for `entry`, wherever they are."""
    # Format 2 keyed every one by position in the npz; format 3 says where.
    start = entry.get("start", {"anchors": str(entry["position"])})
    try:
        if "weights" in start:
            values = saved.saved_variable(start["weights"], "anchor")
        else:
            values = anchors[start["anchors"]]
    except KeyError:
        values = None
    # The digest (format 3) makes sure the weights file's group is this
    # penalty's, not another's of the same shape.
    if values is None or start.get("sha256", _digest(values)) != _digest(
        values
    ):
        raise PenaltyRecordError(
            f"The saved penalty of kernel '{entry['layer']}/"
            f"{entry['weight']}' pulls toward starting weights that the "
            "file does not hold. Attach the penalties again with "
            "attach_regularizer(..., anchor=True) on the pretrained weights."
        )
    return values


def _digest(values):
    """SHA-256 of the starting weights' bytes, as float32 in C order."""
    data = np.ascontiguousarray(values, dtype=np.float32)
    return hashlib.sha256(data.tobytes()).hexdigest()


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
