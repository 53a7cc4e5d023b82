import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from saved_models import INPUT_SHAPE, regularized_model

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


@pytest.mark.parametrize("target", BACKENDS)
def test_a_file_saved_here_loads_on_every_backend(tmp_path, target):
    if importlib.util.find_spec(target) is None:
        pytest.skip(f"{target} is not installed")
    model = regularized_model()
    path = tmp_path / "model.keras"
    model.save(path)
    x = (
        np.random.default_rng(1)
        .normal(size=(3, *INPUT_SHAPE))
        .astype("float32")
    )
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
