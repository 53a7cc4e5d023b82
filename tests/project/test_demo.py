import subprocess
import sys

import keras
import numpy as np
import pytest
from command_line import run_in_process
from quiet import as_a_user_runs_it, assert_no_native_log_lines

from keras_scaled_l2 import ScaledL2
from keras_scaled_l2.datasets import make_low_signal_tabular, rank_correlation
from keras_scaled_l2.demo import build_mlp


def _run_cli(*arguments, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "keras_scaled_l2", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=as_a_user_runs_it(),
    )


def _parse_table(stdout):
    rows = {}
    for line in stdout.splitlines():
        if not line.startswith(("keras ", "ScaledL2", "none ")):
            continue
        cells = line[26:].split()
        monitor = " ".join(cells[4:-2])
        rows[line[:26].strip()] = {
            "correlation": cells[0],
            "penalty": float(cells[2]),
            "data_loss": float(cells[3]),
            "monitor": monitor,
            "status": cells[-1],
        }
    return rows


@pytest.mark.run_once
def test_demo_shows_the_collapse_of_plain_l2_and_not_of_scaled_l2():
    # The package's main job, run exactly as the README runs it.
    result = _run_cli("demo")
    assert result.returncode == 0, result.stderr
    rows = _parse_table(result.stdout)
    assert len(rows) == 6
    collapsed = rows.pop("keras L2(0.01)")
    assert collapsed["status"] == "collapsed"
    assert collapsed["correlation"] == "undefined"
    assert collapsed["monitor"].startswith("epoch ")
    for name, row in rows.items():
        assert row["status"] == "ok", name
        assert row["monitor"] == "-", name
    assert rows["none (no penalty)"]["penalty"] == 0.0
    assert rows["ScaledL2(0.01) balanced"]["penalty"] > 0
    assert_no_native_log_lines(result)


@pytest.mark.run_once
def test_demo_help_documents_the_options(capsys):
    status, out, _ = run_in_process(capsys, "demo", "--help")
    assert status == 0
    for option in ("--epochs", "--train-rows", "--seed", "--batch-size"):
        assert option in out


@pytest.mark.run_once
@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_demo_rejects_bad_epochs(capsys, value):
    status, _, err = run_in_process(capsys, "demo", "--epochs", value)
    assert status == 2
    assert f"expected a positive integer, received {value!r}" in err


@pytest.mark.run_once
def test_console_script_is_declared():
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="keras-scaled-l2")
    assert script.value == "keras_scaled_l2.cli:main"


@pytest.mark.run_once
def test_data_set_is_seeded_and_low_signal():
    first = make_low_signal_tabular(2000, 2000, seed=3)
    second = make_low_signal_tabular(2000, 2000, seed=3)
    # Exact: one seed, the same process; a claim of bit-identical data.
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    (x, y), (_, y_test) = first
    assert x.dtype == y.dtype == np.float32
    # The target's levels are shared 5/20/50/20/5 % over all rows.
    levels, counts = np.unique(np.r_[y, y_test], return_counts=True)
    np.testing.assert_array_equal(levels, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(
        counts / 4000, [0.05, 0.2, 0.5, 0.2, 0.05], atol=1 / 4000
    )
    # Low signal: a least-squares fit on the training rows correlates only
    # weakly with the test target, yet clearly above zero.
    (x_train, y_train), (x_test, y_test) = make_low_signal_tabular(
        16000, 8000, seed=0
    )
    design = np.c_[x_train, np.ones(len(x_train))]
    coef = np.linalg.lstsq(design, y_train, rcond=None)[0]
    fitted = np.c_[x_test, np.ones(len(x_test))] @ coef
    assert 0.02 < rank_correlation(y_test, fitted) < 0.3


@pytest.mark.run_once
def test_rank_correlation_against_numpy_with_ties():
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=500)
    y_pred = np.round(rng.normal(size=500) + y_true, 1)  # many ties
    # Reference: average ranks by counting, independent of the sort trick.
    less = (y_pred[None, :] < y_pred[:, None]).sum(axis=1)
    equal = (y_pred[None, :] == y_pred[:, None]).sum(axis=1)
    ranks = less + (equal - 1) / 2
    want = np.corrcoef(ranks, y_true)[0, 1]
    assert rank_correlation(y_true, y_pred) == pytest.approx(want, rel=1e-12)


def test_build_mlp_puts_the_penalty_on_every_kernel():
    model = build_mlp(10, lambda: ScaledL2(0.01), depth=3, width=8)
    kernels = [layer.kernel for layer in model.layers]
    assert len(kernels) == 4
    assert all(isinstance(k.regularizer, ScaledL2) for k in kernels)
    assert len(model.losses) == 4
    assert all(layer.bias.regularizer is None for layer in model.layers)
    assert isinstance(model, keras.Model)
