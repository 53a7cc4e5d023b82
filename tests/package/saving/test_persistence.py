"""What a `.keras` file stores of the starting weights, and files of every
record format reloading with exactly what they hold."""

import json
import os
import warnings
import zipfile

import keras
import keras_hub
import numpy as np
import pytest
from anchored_file import saved_state
from project_paths import DATA

from keras_scaled_l2 import (
    PenaltyRecordError,
    ScaledL2,
    attach_regularizer,
    load_model,
)

SLACK = 0.01
"""The file of an anchored model may exceed plain + one copy by 1 %.

What it adds beyond the copy is fixed per anchored kernel (about 2.3 kB
of HDF5 group for the regularizer's variables and 0.6 kB of record), so
the models here have kernels of 64k values or more, as real ones do.
"""


def _functional():
    inputs = keras.Input((256,))
    x = keras.layers.Dense(384, activation="relu", name="hidden")(inputs)
    x = keras.layers.Dense(256, activation="relu", name="middle")(x)
    outputs = keras.layers.Dense(10, name="head")(x)
    return keras.Model(inputs, outputs, name="functional")


def _backbone():
    return keras_hub.models.BertBackbone(
        vocabulary_size=500,
        num_layers=2,
        num_heads=2,
        hidden_dim=256,
        intermediate_dim=1024,
        max_sequence_length=32,
    )


def _attention():
    tokens = keras.Input((8, 256))
    attention = keras.layers.MultiHeadAttention(8, 64, name="attention")
    outputs = attention(tokens, tokens)
    return keras.Model(tokens, outputs, name="attending")


def _anchored_bytes(model):
    return sum(
        int(np.prod(w.shape)) * 4
        for w in model.weights
        if getattr(w.regularizer, "anchored", False)
    )


@pytest.mark.parametrize("build", [_functional, _backbone, _attention])
def test_an_anchored_file_holds_each_starting_weight_once(build, tmp_path):
    keras.utils.set_random_seed(0)
    plain = build()
    plain_path = tmp_path / "plain.keras"
    plain.save(str(plain_path))
    anchored = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # penalties only the record keeps
        attach_regularizer(anchored, ScaledL2(0.1), anchor=True)
    copy = _anchored_bytes(anchored)
    assert copy > 0.5 * os.path.getsize(plain_path)  # most kernels anchored
    path = tmp_path / "anchored.keras"
    anchored.save(str(path))
    size = os.path.getsize(path)
    limit = (os.path.getsize(plain_path) + copy) * (1 + SLACK)
    assert size <= limit, (size, limit)
    with zipfile.ZipFile(path) as archive:
        assert not any(n.endswith("anchors.npz") for n in archive.namelist())
    # And they come back, exactly.
    reloaded = load_model(str(path))
    starts = [
        w.regularizer.anchor_values()
        for w in anchored.weights
        if getattr(w.regularizer, "anchored", False)
    ]
    again = [
        w.regularizer.anchor_values()
        for w in reloaded.weights
        if getattr(w.regularizer, "anchored", False)
    ]
    assert len(again) == len(starts)
    for start, back in zip(starts, again, strict=True):
        np.testing.assert_array_equal(back, start)


@pytest.mark.parametrize("record_format", [2, 3])
def test_files_of_each_record_format_reload_with_what_they_hold(record_format):
    # Format 2 (every starting weight in the record's npz) was written
    # before starting weights were stored once; format 3 by this version.
    # Both by `tests/support/anchored_file.py`.
    name = f"anchored_record_format_{record_format}"
    expected = json.loads((DATA / f"{name}.json").read_text())["state"]
    with zipfile.ZipFile(DATA / f"{name}.keras") as archive:
        stored = [n for n in archive.namelist() if n.endswith("anchors.npz")]
        assert len(stored) == (1 if record_format == 2 else 0)
    reloaded = saved_state(load_model(str(DATA / f"{name}.keras")))
    assert sorted(reloaded) == sorted(expected)
    for key, saved in expected.items():
        penalty, start = reloaded[key]["penalty"], reloaded[key]["start"]
        # Recomputed from the same float32 weights, on another processor's
        # kernels: equal up to the last bits.
        assert penalty == pytest.approx(saved["penalty"], rel=1e-5)
        if saved["start"] is None:
            assert start is None
        else:  # float32 values through JSON: exact
            assert start == saved["start"]


def _rewritten(source, target, change):
    """Copies the archive `source` to `target`, each member's bytes as
    `change(name, data)` gives them (`None`: left out)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = change(name, old.read(name))
            if data is not None:
                new.writestr(name, data)


def _with_starts_moved(move):
    """A `change` that edits the record's `start` entries with `move`."""

    def change(name, data):
        if not name.endswith("keras_scaled_l2_penalties.json"):
            return data
        record = json.loads(data)
        move([e for e in record["penalties"] if "start" in e])
        return json.dumps(record).encode()

    return change


def _swap_two_of_one_shape(entries):
    first, second = [e for e in entries if e["shape"] == [3, 2, 3]][:2]
    first["start"]["weights"], second["start"]["weights"] = (
        second["start"]["weights"],
        first["start"]["weights"],
    )


def _point_nowhere(entries):
    entries[0]["start"]["weights"] = "layers/nothing/kernel_regularizer"


@pytest.mark.parametrize(
    "record_format, change",
    [
        (2, lambda name, data: None if name.endswith(".npz") else data),
        (3, _with_starts_moved(_swap_two_of_one_shape)),
        (3, _with_starts_moved(_point_nowhere)),
    ],
    ids=["npz-removed", "another-kernels-start", "a-group-not-there"],
)
def test_a_file_that_lost_its_starting_weights_is_refused(
    tmp_path, record_format, change
):
    source = DATA / f"anchored_record_format_{record_format}.keras"
    assert load_model(str(source)).losses  # the file itself loads
    broken = tmp_path / "broken.keras"
    _rewritten(source, broken, change)
    with pytest.raises(PenaltyRecordError, match="does not hold"):
        load_model(str(broken))


def _encoder_model():
    tokens = keras.Input((6, 16))
    encoded = keras_hub.layers.TransformerEncoder(32, 2, name="encoder")(tokens)
    outputs = keras.layers.Dense(1, name="head")(encoded)
    return keras.Model(tokens, outputs, name="encoding")


def test_h5_refuses_every_penalty_it_cannot_bring_back(tmp_path):
    # Toward zero, inside a layer whose config does not save its
    # sub-layers': a .h5 file would reload it as no penalty.
    model = _encoder_model()
    with pytest.warns(UserWarning, match="will not restore"):
        attach_regularizer(model, ScaledL2(0.01))
    with pytest.raises(ValueError, match=r"A \.h5 file cannot hold") as error:
        model.save(str(tmp_path / "model.h5"))
    assert "encoder/" in str(error.value) and "head" not in str(error.value)
    model.save(str(tmp_path / "model.keras"))  # .keras holds them
    assert len(load_model(str(tmp_path / "model.keras")).losses) == len(
        model.losses
    )


def test_only_a_model_that_needs_it_gets_a_guarded_get_config(tmp_path):
    # Every penalty carried by a layer config: nothing patched, and .h5
    # saves and reloads them.
    model = _functional()
    attach_regularizer(model, ScaledL2(0.01))
    assert "get_config" not in vars(model)
    path = str(tmp_path / "model.h5")
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        [float(p) for p in reloaded.losses],
        [float(p) for p in model.losses],
        rtol=1e-6,
    )
    # Anchored where a config carries it: the model is guarded ...
    with pytest.warns(UserWarning, match="replaced the penalty"):
        attach_regularizer(model, ScaledL2(0.01), anchor="hidden")
    assert "get_config" in vars(model)
    with pytest.raises(ValueError, match=r"A \.h5 file cannot hold"):
        model.save(path)
    # ... and no longer once the penalty is toward zero again.
    with pytest.warns(UserWarning, match="replaced the penalty"):
        attach_regularizer(model, ScaledL2(0.01))
    assert "get_config" not in vars(model)
    model.save(path)
