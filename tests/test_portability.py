import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_scaled_l2 import ScaledL1, ScaledL1L2, ScaledL2

BACKENDS = ["tensorflow", "jax", "torch"]

LOAD = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    import keras_scaled_l2
    model = keras.models.load_model(sys.argv[1])
    x = np.load(sys.argv[2])
    print(json.dumps({
        "backend": keras.backend.backend(),
        "predictions": keras.ops.convert_to_numpy(model(x)).tolist(),
        "penalties": [float(keras.ops.convert_to_numpy(p))
                      for p in model.losses],
    }))
    """
)


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 16))
    x = keras.layers.EinsumDense(
        "abc,cde->abde",
        output_shape=(None, 2, 8),
        kernel_regularizer=ScaledL1L2(
            0.01, 0.02, input_axes=(0,), output_axes=(1, 2)
        ),
    )(inputs)
    x = keras.layers.Reshape((4, 16))(x)
    x = keras.layers.Conv1D(
        8, 3, activation="relu", kernel_regularizer=ScaledL1(0.01)
    )(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(
        1, kernel_regularizer=ScaledL2(0.05, num_examples=100)
    )(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("target", BACKENDS)
def test_a_file_saved_here_loads_on_every_backend(tmp_path, target):
    if importlib.util.find_spec(target) is None:
        pytest.skip(f"{target} is not installed")
    model = _model()
    path = tmp_path / "model.keras"
    model.save(path)
    x = np.random.default_rng(1).normal(size=(3, 4, 16)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(path), str(tmp_path / "x.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "KERAS_BACKEND": target},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["backend"] == target
    np.testing.assert_allclose(
        loaded["predictions"],
        keras.ops.convert_to_numpy(model(x)),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        loaded["penalties"],
        [float(keras.ops.convert_to_numpy(p)) for p in model.losses],
        rtol=1e-5,
    )
