"""Loading a saved model with every penalty `attach_regularizer` set.

`keras.models.load_model` restores the penalties that saved configs carry.
The others (sub-layers of KerasHub backbones, layers inside custom layers)
come back from the record the `.keras` file holds (`_persistence`).
"""

from __future__ import annotations

import os
from typing import Any

import keras

from keras_scaled_l2 import _keras_internals, _persistence
from keras_scaled_l2._persistence import PenaltyRecordError

__all__ = ["PenaltyRecordError", "load_model"]


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

    Examples:
        >>> import os, tempfile
        >>> from keras_scaled_l2 import ScaledL2, attach_regularizer
        >>> model = keras.Sequential(
        ...     [keras.Input((4,)), keras.layers.Dense(2, name="dense")],
        ...     name="mlp",
        ... )
        >>> attach_regularizer(model, ScaledL2(0.01))
        ['dense/kernel']
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
    if _persistence.restore(model, filepath, custom_objects, safe_mode):
        _keras_internals.drop_step_functions(model)
    return model
