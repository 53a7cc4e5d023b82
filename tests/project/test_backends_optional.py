"""No backend is a hard dependency: JAX users need no TensorFlow.

Each test runs a fresh process in which TensorFlow cannot be imported,
whatever this environment has installed.
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from project_paths import SCRIPTS

from keras_scaled_l2 import _backend

pytestmark = pytest.mark.run_once  # each process picks its own backend


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
            str(SCRIPTS / "without_tensorflow.py"),
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
    assert last_line == f"ImportError: {_missing('tensorflow')}"


def _missing(backend, python=sys.executable):
    """The message for a missing backend, with this installation's command
    (`python -m pip`: the interpreter that ran it)."""
    return (
        "keras-scaled-l2 needs a Keras backend, and the configured one, "
        f"'{backend}', is not installed. Install it with: "
        f"{_expected_install(backend, python)}; or choose an installed "
        "backend with "
        "the environment variable KERAS_BACKEND=tensorflow|jax|torch."
    )


def _expected_install(extra, python):
    """The command for this installation, from its metadata: `pip install
    -e "CLONE[extra]"` after the Quick start's editable install from a
    clone, the backend alone after an install from a wheel file (as CI's
    release check does)."""
    pip = f"{python} -m pip install"
    # From the clone's folder its build's egg-info comes first on sys.path:
    # the installation is the distribution pip wrote its INSTALLER into.
    (installed, *_) = [
        d
        for d in importlib.metadata.distributions(name="keras-scaled-l2")
        if d.read_text("INSTALLER")
    ]
    origin = installed.read_text("direct_url.json")
    if origin is None:
        return f"{pip} 'keras-scaled-l2[{extra}]'"
    origin = json.loads(origin)
    assert origin["url"].startswith("file://"), origin
    if "dir_info" not in origin:  # a wheel file
        return f"{pip} {extra}"
    editable = "-e " if origin["dir_info"].get("editable") else ""
    return f"{pip} {editable}'{origin['url'][len('file://') :]}[{extra}]'"


# Refuses to import one module, named by REFUSED_MODULE, as an environment
# without it would; in every process that has this folder on PYTHONPATH.
SITECUSTOMIZE = textwrap.dedent(
    """
    import importlib.abc, os, sys

    class _Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == os.environ["REFUSED_MODULE"]:
                raise ModuleNotFoundError(
                    f"No module named {name!r}", name=name
                )
            return None

    sys.meta_path.insert(0, _Refuse())
    """
)


@pytest.mark.parametrize(
    "command, backend",
    [("keras-scaled-l2", "jax"), ("python -m keras_scaled_l2", "tensorflow")],
)
def test_the_command_line_says_in_one_line_what_to_install(
    tmp_path, command, backend
):
    if command == "keras-scaled-l2":
        script = shutil.which(command, path=os.path.dirname(sys.executable))
        if script is None:
            pytest.skip("the console script is not installed")
        argv = [script]
        with open(script) as lines:  # its interpreter, from the #! line
            python = lines.readline().removeprefix("#!").strip()
    else:
        argv = [sys.executable, "-m", "keras_scaled_l2"]
        python = sys.executable
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = [str(tmp_path), os.environ.get("PYTHONPATH", "")]
    result = subprocess.run(
        [*argv, "inspect", "model.keras"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={
            **os.environ,
            "KERAS_BACKEND": backend,
            "REFUSED_MODULE": backend,
            "PYTHONPATH": os.pathsep.join(filter(None, path)),
        },
        cwd=tmp_path,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"keras-scaled-l2: error: {_missing(backend, python)}\n"
    )


@pytest.mark.parametrize(
    "direct_url, expected",
    [
        (None, "'keras-scaled-l2[jax]'"),
        (
            {"url": "file:///src/keras-scaled-l2", "dir_info": {}},
            "'/src/keras-scaled-l2[jax]'",
        ),
        (
            {
                "url": "file:///src/keras-scaled-l2",
                "dir_info": {"editable": True},
            },
            "-e '/src/keras-scaled-l2[jax]'",
        ),
        (
            {
                "url": "https://example.org/keras_scaled_l2-0.1.0.whl",
                "archive_info": {},
            },
            "jax",
        ),
    ],
    ids=["index", "folder", "editable", "wheel-url"],
)
def test_the_install_command_fits_how_the_package_was_installed(
    monkeypatch, tmp_path, direct_url, expected
):
    # An installation's metadata as pip writes it, first on sys.path, with
    # a build's egg-info (no INSTALLER) before it, as in a clone's folder.
    build = tmp_path / "build" / "keras_scaled_l2.egg-info"
    build.mkdir(parents=True)
    (build / "PKG-INFO").write_text("Name: keras-scaled-l2\nVersion: 0.1.0\n")
    site = tmp_path / "site" / "keras_scaled_l2-0.1.0.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Name: keras-scaled-l2\nVersion: 0.1.0\n")
    (site / "INSTALLER").write_text("pip\n")
    if direct_url is not None:
        (site / "direct_url.json").write_text(json.dumps(direct_url))
    monkeypatch.syspath_prepend(str(site.parent))
    monkeypatch.syspath_prepend(str(build.parent))
    assert _backend.install_command("jax") == (
        f"{sys.executable} -m pip install {expected}"
    )
