"""The README's claims and the project's hygiene, checked."""

import inspect
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_scaled_l2
from keras_scaled_l2 import ScaledL2

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_python_examples_run_in_order():
    # Plain ```python blocks run top to bottom in one namespace, as a reader
    # would paste them; ```python no-run blocks need other devices.
    namespace = {}
    for block in _python_blocks(README):
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["monitor"].collapsed_epoch is None
    assert str(sorted(namespace["history"].history)) in README
    shares = [
        f"{row.layer}: {row.share:.0%}" for row in namespace["report"].rows
    ]
    assert str(shares) in README


def _readme_table_rows():
    """The README's per-layer table, recomputed on Glorot-uniform weights.

    The weights come from numpy, not from a backend's random generator, so
    every backend computes the same table.
    """
    rng = np.random.default_rng(0)

    def mlp(regularizer):
        model = keras.Sequential(
            [keras.Input((784,))]
            + [
                keras.layers.Dense(units, kernel_regularizer=regularizer)
                for units in (1024, 256, 10)
            ]
        )
        return model

    plain = mlp(keras.regularizers.L2(0.01))
    weights = []
    for layer in plain.layers:
        fan_in, fan_out = layer.kernel.shape
        limit = np.sqrt(6 / (fan_in + fan_out))
        weights += [
            rng.uniform(-limit, limit, (fan_in, fan_out)),
            np.zeros(fan_out),
        ]
    plain.set_weights(weights)
    scaled = mlp(ScaledL2(0.01))
    scaled.set_weights(weights)
    plain_penalties = [float(p) for p in plain.losses]
    scaled_penalties = [float(p) for p in scaled.losses]
    rows = []
    for layer, p, s in zip(
        plain.layers, plain_penalties, scaled_penalties, strict=True
    ):
        shape = str(tuple(layer.kernel.shape))
        rows.append(
            f"| {shape:<12} | {p:>10.3f} | "
            f"{100 * p / sum(plain_penalties):>5.1f} % | {s:>16.4f} | "
            f"{100 * s / sum(scaled_penalties):>5.1f} % |"
        )
    return rows


def test_readme_per_layer_table_matches_a_computation():
    for row in _readme_table_rows():
        assert row in README, row


def test_quick_start_has_exactly_two_commands():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", quick_start, flags=re.DOTALL)
    commands = block.strip().splitlines()
    assert len(commands) == 2
    assert commands[0].endswith("keras-scaled-l2 demo")
    assert commands[1].endswith("python tests/run_backends.py")


def test_version_and_typing_marker():
    assert re.fullmatch(r"\d+\.\d+\.\d+", keras_scaled_l2.__version__)
    package = pathlib.Path(keras_scaled_l2.__file__).parent
    assert (package / "py.typed").is_file()


def test_every_public_name_is_in_all():
    public = {
        name
        for name, value in vars(keras_scaled_l2).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public | {"__version__"} == set(keras_scaled_l2.__all__)


@pytest.mark.parametrize(
    "arguments", [["check", "."], ["format", "--check", "."]]
)
def test_ruff_is_clean(arguments):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
