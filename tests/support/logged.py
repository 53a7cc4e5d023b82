"""The identities every PenaltyLogger history must satisfy."""

import numpy as np


def assert_parts_exact(history, prefixes=("", "val_")):
    """`data_loss + penalty == loss`, `data_loss == mse`, layers sum up.

    Needs a model compiled with `loss="mse", metrics=["mse"]`.
    """
    for prefix in prefixes:
        data = np.array(history[f"{prefix}data_loss"])
        penalty = np.array(history[f"{prefix}penalty"])
        np.testing.assert_allclose(
            data + penalty, history[f"{prefix}loss"], rtol=1e-6, atol=0
        )
        np.testing.assert_allclose(
            data, history[f"{prefix}mse"], rtol=1e-5, atol=0
        )
        per_layer = [
            values
            for key, values in history.items()
            if key.startswith(f"{prefix}penalty/")
        ]
        if per_layer:
            np.testing.assert_allclose(
                np.sum(per_layer, axis=0), penalty, rtol=1e-6
            )
