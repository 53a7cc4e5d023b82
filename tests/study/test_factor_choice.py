"""The factor-choice benchmark: its replays decide what the schedule and
KerasTuner decide, its statistics are what the cells give, its quick run
resumes and summarizes."""

import json
import math
import subprocess
import sys

import factor_choice
import keras
import numpy as np
import pytest
from nested_close import assert_nested_close
from project_paths import ROOT
from transfer_study import choice
from transfer_study.settings import FULL

from keras_scaled_l2 import _halving

SCRIPT = ROOT / "benchmarks" / "factor_choice.py"

FACTORS = [10.0**k for k in np.arange(-4, 0.01, 0.5)]  # 9, half-decades


def curves(val, test=None, penalty=None, collapsed=None):
    """`choice.Curves` of hand-built arrays `[factor, epoch]`."""
    val = np.asarray(val, dtype=float)
    test = val if test is None else np.asarray(test, dtype=float)
    penalty = np.zeros_like(val) if penalty is None else penalty
    collapsed = (
        np.zeros(val.shape, dtype=bool) if collapsed is None else collapsed
    )
    return choice.Curves(
        [
            {
                "factor": factor,
                "val_curve": list(val[i]),
                "test_curve": list(test[i]),
                "penalty_curve": list(np.asarray(penalty)[i]),
                "collapsed_curve": list(collapsed[i]),
            }
            for i, factor in enumerate(FACTORS)
        ]
    )


def drifting(epochs=30):
    """Validation loss whose best factor moves up with the epochs: position
    2 after 10 epochs, position 6 after 30."""
    positions = np.arange(9)[:, None]
    optimum = np.where(np.arange(1, epochs + 1) <= 10, 2, 6)[None, :]
    return 1.0 + 0.01 * (positions - optimum) ** 2


def test_grid_choices_and_regret_by_hand():
    val = drifting()
    test = val.copy()
    test[5, -1] = 0.5  # the oracle, which validation does not see
    penalty = np.zeros_like(val)
    penalty[:, -1] = np.linspace(0.5, 0.0, 9)[::-1]  # grows with the factor
    curve = curves(val, test, penalty)
    assert choice.grid_choice(curve) == (6, 9 * 30)
    assert curve.regret(6) == pytest.approx(1.0 / 0.5 - 1)
    # On val_loss the penalty pulls the choice down to a smaller factor.
    position, _ = choice.grid_choice(curve, on_val_loss=True)
    assert position < 6
    assert curve.position(FACTORS[3] * (1 + 1e-9)) == 3
    assert curve.position(FACTORS[3] * 1.1) is None


def test_the_search_replay_is_the_schedule_on_the_curves():
    curve = curves(drifting())
    prior = FACTORS[4]
    position, spent = choice.search_choice(curve, prior)
    # The same schedule, asked directly with the curves' scores.
    records = []
    decision = _halving.run_in_turn(
        _halving.Plan(epochs=30),
        lambda fit: _halving.Record(
            fit.grid_index,
            0,
            fit.epochs,
            float(drifting()[4 + fit.grid_index, fit.epochs - 1]),
            False,
        ),
        records,
    )
    assert position == 4 + decision.chosen == 6
    assert spent == _halving.epochs_spent(records)
    assert spent < 9 * 30 * 0.75


def test_the_hyperband_replay_is_keras_tuners_decision():
    pytest.importorskip("keras_tuner")
    # Best at every epoch near the 8th factor (1e-0.5), linearly worse
    # away from it in log10(factor).
    distance = np.abs(np.log10(FACTORS) + 0.5)[:, None]
    curve = curves(1.0 + distance * np.ones((9, 30)))
    factor, spent = choice.hyperband_choice(curve, budget=300, seed=0)
    # It stops before the trial that would take it past the budget, with
    # a factor near the best: among its many samples, one lands within a
    # tenth of a decade.
    assert 300 - 30 < spent <= 300
    assert abs(np.log10(factor) + 0.5) < 0.1
    assert curve.at(FACTORS[2])[0][0] == pytest.approx(curve.val[2, 0])
    between = 10.0 ** ((np.log10(FACTORS[2]) + np.log10(FACTORS[3])) / 2)
    assert curve.at(between)[1][-1] == pytest.approx(
        (curve.test[2, -1] + curve.test[3, -1]) / 2
    )


def test_statistics_by_hand():
    cells = {"a": [0.0, 0.02], "b": [0.06, 0.08], "c": [0.2, 0.4]}
    grid = {"a": [0.0, 0.0], "b": [0.06, 0.08], "c": [0.0, 0.0]}
    entry = choice.statistics(cells, grid)
    assert entry["cells"] == 3
    assert entry["worst"] == pytest.approx(0.3)
    assert entry["median"] == pytest.approx(0.07)
    assert entry["over_2_percent"] == 2
    assert entry["over_5_percent"] == 2
    assert entry["over_10_percent"] == 1
    # `a` and `b` reach zero difference; `c` is worse on every seed.
    assert entry["within_seed_noise_of_grid"] == 2
    assert entry["worst_mean_excess_over_grid"] == pytest.approx(0.3)


def _run(tmp_path, *arguments):
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--output",
            str(tmp_path),
            *arguments,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_quick_run_resumes_and_summarizes(tmp_path):
    if keras.backend.backend() != "jax":
        pytest.skip("the quick run runs in the jax leg, its fastest")
    first = _run(tmp_path, "--only", "mlp/diabetes/adam")
    second = _run(tmp_path)
    trained = [line for line in second.splitlines() if line.startswith("[")]
    assert trained and not any("diabetes" in line for line in trained)
    saved = json.loads((tmp_path / "factor_choice.json").read_text())
    assert_nested_close(
        factor_choice.summarize(saved["records"], factor_choice.QUICK_SETTINGS),
        saved["summary"],
        rel=1e-9,
    )
    summary = saved["summary"]
    assert summary["setups"] == ["mlp/diabetes/adam", "mlp/mnist1d/adam"]
    for method in choice.METHODS:
        entry = summary["regret"][method]
        assert entry["cells"] > 0 and entry["worst"] >= entry["median"] >= 0
    assert summary["regret"]["grid"]["worst"] >= 0
    assert summary["cost"]["grid"] == {"median": 1.0, "worst": 1.0}
    assert summary["cost"]["search"]["median"] > 0
    assert factor_choice.format_table(summary) in second
    assert "mlp/diabetes/adam" in first
    for record in saved["records"]:
        epochs = saved["settings"]["epochs"][record["data"]]
        assert len(record["val_curve"]) == epochs
        assert all(math.isfinite(v) for v in record["test_curve"])


RESULTS = ROOT / "benchmarks" / "results" / "factor_choice.json"


@pytest.mark.run_once
def test_the_pages_hold_the_published_table():
    published = json.loads(RESULTS.read_text())
    assert published["mode"] == "full"
    summary = published["summary"]
    # The published summary is what its records give.
    assert_nested_close(
        factor_choice.summarize(published["records"], FULL),
        summary,
        rel=1e-9,
    )
    block = factor_choice.choice_block(summary)
    for name in factor_choice.PAGES:
        text = (ROOT / name).read_text()
        assert factor_choice.pages_block(text) == block, name
    # The block's numbers are the summary's: one row checked by hand.
    search = summary["regret"]["search"]
    row = next(
        line for line in block.splitlines() if line.startswith("| `search_")
    )
    assert f"{100 * search['worst']:.1f}%" in row
    assert f"{search['over_5_percent']} of {search['cells']}" in row
    assert f"{summary['cost']['search']['median']:.2f}" in row
    # So are the lead sentence's.
    lead = block.splitlines()[0]
    reuse = summary["regret"]["reuse"]
    assert (
        f"a median {100 * reuse['median']:.1f}% and up to "
        f"{100 * reuse['worst']:.1f}% ({reuse['over_5_percent']} of "
        f"{reuse['cells']} cells over 5 %)"
    ) in lead
    assert f"{search['within_seed_noise_of_grid']} of {search['cells']}" in lead
