"""Writes `anchored_record_format_<N>.keras` and its expected values.

A functional model with a `Dense` and a `MultiHeadAttention` pulled toward
their starting weights and a head pulled toward zero, trained a little
away from the start, saved with the record format this version writes.
The JSON beside it holds each penalty and starting weight by position, as
the model that was saved computed them, for `test_saved_files.py`.

    python tests/support/anchored_file.py

Run it with the lowest Keras the package declares (3.10): a file written
by a later Keras does not load in an earlier one, and the tests load these
with every Keras CI runs.
"""

import json
import pathlib
import warnings

import keras
import numpy as np

import keras_scaled_l2
from keras_scaled_l2 import ScaledL2, attach_regularizer


def anchored_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10,))
    hidden = keras.layers.Dense(6, name="hidden")(inputs)
    attention = keras.layers.MultiHeadAttention(2, 3, name="attention")
    tokens = keras.layers.Reshape((2, 3))(hidden)
    outputs = keras.layers.Dense(1, name="head")(
        keras.layers.Flatten()(attention(tokens, tokens))
    )
    model = keras.Model(inputs, outputs, name="functional")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the attention's is recorded
        attach_regularizer(model, ScaledL2(0.2), anchor=["hidden", "attention"])
    for weight in model.trainable_weights:
        weight.assign(weight + 0.05)
    return model


def saved_state(model):
    """Penalty and starting weights (or `None`) by weight position."""
    state = {}
    for index, weight in enumerate(model.trainable_weights):
        regularizer = weight.regularizer
        if regularizer is None:
            continue
        start = getattr(regularizer, "anchor_values", lambda: None)()
        state[f"{index} {weight.name}"] = {
            "penalty": float(regularizer(weight)),
            "start": None if start is None else start.tolist(),
        }
    return state


def main():
    from keras_scaled_l2 import _persistence

    folder = pathlib.Path(__file__).resolve().parents[1] / "data"
    name = f"anchored_record_format_{_persistence.RECORD_FORMAT}"
    model = anchored_model()
    model.save(str(folder / f"{name}.keras"))
    expected = {
        "keras_scaled_l2": keras_scaled_l2.__version__,
        "keras": keras.__version__,
        "state": saved_state(model),
    }
    (folder / f"{name}.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(folder / f"{name}.keras")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
