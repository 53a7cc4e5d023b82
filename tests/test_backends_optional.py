"""No backend is a hard dependency: JAX users need no TensorFlow.

Each test runs a fresh process in which TensorFlow cannot be imported,
whatever this environment has installed.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.run_once  # each process picks its own backend

HERE = pathlib.Path(__file__).resolve().parent

TRAIN_SAVE_RELOAD = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("error", UserWarning)
    import keras, numpy as np
    from keras_scaled_l2 import (
        CollapseMonitor, PenaltyLogger, ScaledL1L2, ScaledL2,
        attach_regularizer, penalty_report,
    )
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, :1] + rng.normal(size=(256, 1))).astype("float32")
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(32, activation="relu",
                           kernel_regularizer=ScaledL2(0.1)),
        keras.layers.Dense(16, activation="relu", name="attached"),
        keras.layers.Dense(1, kernel_regularizer=ScaledL1L2(0.01, 0.1)),
    ])
    attach_regularizer(model, ScaledL2(0.1, scale="fan_in"), include="attached")
    model.compile("adam", "mse", metrics=["mse"])
    history = model.fit(
        x, y, epochs=2, batch_size=64, verbose=0,
        callbacks=[PenaltyLogger(per_layer=True), CollapseMonitor(x[:64])],
    ).history
    path = sys.argv[1]
    model.save(path)
    reloaded = keras.models.load_model(path)
    print(json.dumps({
        "backend": keras.backend.backend(),
        "tensorflow_loaded": "tensorflow" in sys.modules,
        "keys": sorted(history),
        "loss": history["loss"][-1],
        "parts": history["data_loss"][-1] + history["penalty"][-1],
        "penalty": float(keras.ops.sum(model.losses)),
        "reloaded_penalty": float(keras.ops.sum(reloaded.losses)),
        "report_total": penalty_report(reloaded).total,
    }))
    """
)


def _run_without_tensorflow(script, *arguments, backend):
    return subprocess.run(
        [
            sys.executable,
            str(HERE / "without_tensorflow.py"),
            str(script),
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "KERAS_BACKEND": backend},
        cwd=script.parent,
    )


def test_jax_trains_saves_and_reloads_without_tensorflow(tmp_path):
    pytest.importorskip("jax", reason="the JAX backend is not installed")
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SAVE_RELOAD)
    result = _run_without_tensorflow(
        script, str(tmp_path / "model.keras"), backend="jax"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["backend"] == "jax"
    assert not got["tensorflow_loaded"]
    assert {"data_loss", "penalty", "penalty/(other)"} <= set(got["keys"])
    assert got["parts"] == pytest.approx(got["loss"], rel=1e-6)
    assert got["penalty"] > 0
    assert got["reloaded_penalty"] == pytest.approx(got["penalty"], rel=1e-6)
    assert got["report_total"] == pytest.approx(got["penalty"], rel=1e-6)


def test_a_missing_backend_names_the_extra_that_installs_it(tmp_path):
    script = tmp_path / "import.py"
    script.write_text("import keras_scaled_l2\n")
    result = _run_without_tensorflow(script, backend="tensorflow")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (
        "ImportError: keras-scaled-l2 needs a Keras backend, and the "
        "configured one, 'tensorflow', is not installed. Install it with: "
        'pip install "keras-scaled-l2[tensorflow]"; or choose an installed '
        "backend with the environment variable "
        "KERAS_BACKEND=tensorflow|jax|torch."
    )
