import importlib.util
import textwrap

import keras
import numpy as np
import pytest
from fresh_process import run_json
from saved_models import INPUT_SHAPE, regularized_model

# The backends other than this one: a fresh process on this one reloads the
# same model in test_serialization.py.
OTHER_BACKENDS = [
    name
    for name in ("tensorflow", "jax", "torch")
    if name != keras.backend.backend()
]

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


@pytest.mark.parametrize("target", OTHER_BACKENDS)
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
    loaded = run_json(
        ["-c", LOAD, str(path), str(tmp_path / "x.npy")],
        env={"KERAS_BACKEND": target},
    )
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
