"""The study's follow-up runs: their arithmetic, their published numbers.

- `data_size_steps.py`: the data-size axis at equal steps.
- `adamw_width.py`: AdamW across width with the biases left alone. How it
  trains (as Keras's AdamW told to leave the biases alone) is tested in
  `test_lambda_transfer.test_kernel_only_decay_trains_as_keras_adamw_excluding_biases`.
- `grid_ends.py`: the best factors at a grid end, against no penalty, and
  trained again beyond the end where no penalty is worse.
"""

import dataclasses
import json
import math
import pathlib
import sys

import numpy as np
import pytest
from nested_close import assert_nested_close

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
import adamw_width  # noqa: E402
import data_size_steps  # noqa: E402
import grid_ends  # noqa: E402
from transfer_study.curves import axis_entry  # noqa: E402
from transfer_study.grid import factor_grid  # noqa: E402
from transfer_study.settings import FULL, L2_VARIANTS, Group, Setup  # noqa: E402

pytestmark = pytest.mark.run_once  # numpy and JSON only, no backend
# Means, logs and parabola vertices that numpy recomputes: see
# test_lambda_transfer.SUMMARY_RTOL.
SUMMARY_RTOL = 1e-9


def test_fewer_rows_train_for_the_steps_of_all_rows():
    for data, epochs in {
        "synthetic": 40,
        "diabetes": 110,
        "mnist1d": 120,
    }.items():
        assert data_size_steps.equal_steps_epochs(data) == epochs
        rows, fewer = FULL.num_train[data]
        batch = FULL.batch_size[data]
        # Keras takes ceil(rows / batch) steps an epoch.
        assert epochs * math.ceil(fewer / batch) == FULL.epochs[
            data
        ] * math.ceil(rows / batch)


def test_steps_that_rows_cannot_match_exactly_are_refused():
    settings = dataclasses.replace(
        FULL, num_train={**FULL.num_train, "mnist1d": (4000, 700)}
    )
    with pytest.raises(ValueError, match="cannot take exactly"):
        data_size_steps.equal_steps_epochs("mnist1d", settings)


def _curve(best_log10, cliff_log10=None):
    """Per seed a parabola in log10(factor) with its vertex at
    `best_log10[seed]`, and a collapse from `cliff_log10` on."""
    factors = 10 ** np.arange(-4.0, 0.01, 0.5)
    logs = np.log10(factors)
    losses = np.array([1 + (logs - best) ** 2 for best in best_log10])
    collapsed = np.zeros_like(losses)
    if cliff_log10 is not None:
        collapsed[:, logs >= cliff_log10 - 1e-9] = 1.0
    return factors, losses, np.zeros_like(losses), collapsed


@pytest.mark.parametrize(
    ("cliff_log10", "predicted"),
    [
        (-0.5, 4 * 10**-2.5),  # far cliff: the rows' ratio
        (-1.5, 10**-1.5 / 3),  # near cliff: a third of it
    ],
)
def test_pair_entry_ratio_exponent_cliff_and_capped_rule(
    cliff_log10, predicted
):
    # Each seed's best moves, by the same 10**0.5 on both row counts. The
    # mean of parabolas is the parabola at the mean vertex, so a draw that
    # takes the same seeds of both gives exactly that ratio; a draw that
    # paired other seeds would not.
    small = _curve([-2.0, -1.5, -2.5], cliff_log10)
    large = _curve([-2.5, -2.0, -3.0], -1.0)
    entry = data_size_steps.pair_entry(
        axis_entry([small, large], "test"), "test", small, large, 4.0, True
    )
    assert entry["best_factors"] == pytest.approx([1e-2, 10**-2.5], rel=1e-9)
    assert entry["ratio"] == pytest.approx(10**0.5, rel=1e-9)
    assert entry["ratio_interval"] == pytest.approx([10**0.5] * 2, rel=1e-9)
    assert entry["exponent"] == pytest.approx(0.5 / math.log10(4), rel=1e-9)
    assert entry["collapse_factors"] == pytest.approx(
        [10**cliff_log10, 0.1], rel=1e-12
    )
    assert entry["capped_prediction"] == pytest.approx(predicted, rel=1e-9)
    miss = max(predicted / 1e-2, 1e-2 / predicted)
    assert entry["capped_miss"] == pytest.approx(miss, rel=1e-9)
    # With the cliff of all rows (0.1), the rows' ratio: 4 * 10**-2.5.
    assert entry["capped_prediction_all_rows_cliff"] == pytest.approx(
        4 * 10**-2.5, rel=1e-9
    )


def test_curves_of_other_seeds_are_refused():
    small, large = _curve([-2.0, -2.0, -2.0]), _curve([-2.5, -2.5])
    with pytest.raises(ValueError, match="same seeds"):
        data_size_steps.pair_entry(
            axis_entry([small, small], "test"), "test", small, large, 4.0, True
        )


def test_no_collapse_on_the_grid_is_none_and_leaves_the_rows_ratio():
    small, large = _curve([-2.0] * 3), _curve([-2.5] * 3)
    entry = data_size_steps.pair_entry(
        axis_entry([small, large], "test"), "test", small, large, 4.0, True
    )
    assert entry["collapse_factors"] == [None, None]
    assert entry["capped_prediction"] == pytest.approx(4 * 10**-2.5, rel=1e-12)
    without = data_size_steps.pair_entry(
        axis_entry([small, large], "test"), "test", small, large, 4.0, False
    )
    assert "capped_prediction" not in without


def test_published_data_size_steps_are_what_their_records_give():
    published = json.loads((RESULTS / "data_size_steps.json").read_text())
    study = json.loads((RESULTS / "lambda_transfer.json").read_text())
    assert published["backend"] == study["backend"]
    # Every group trained, each for the steps of the run on all rows.
    keys = {Group.of_record(r).key for r in published["records"]}
    assert keys == {g.key for g in data_size_steps.to_train()}
    for record in published["records"]:
        epochs = data_size_steps.equal_steps_epochs(record["data"])
        assert record["epochs"] == epochs
        assert record["num_train"] == FULL.num_train[record["data"]][1]
    assert_nested_close(
        data_size_steps.summarize(published["records"], study["records"]),
        published["summary"],
        rel=SUMMARY_RTOL,
    )
    assert all(s["complete"] for s in published["summary"]["setups"])
    # The scales page shows both tables, character for character.
    page = (ROOT / "docs" / "pages" / "scales.md").read_text()
    assert data_size_steps.format_table(published["summary"]) in page
    assert data_size_steps.cliff_table(published["summary"]) in page


def test_width_axis_is_the_studys():
    for data in ("synthetic", "diabetes"):
        configs = adamw_width.width_configs(data)
        assert [c["width"] for c in configs] == [64, 256, 1024]
        assert {c["depth"] for c in configs} == {4}
        assert {c["num_train"] for c in configs} == {FULL.num_train[data][0]}


def test_published_adamw_width_is_what_its_records_give():
    published = json.loads((RESULTS / "adamw_width.json").read_text())
    study = json.loads((RESULTS / "lambda_transfer.json").read_text())
    assert published["backend"] == study["backend"]
    keys = {Group.of_record(r).key for r in published["records"]}
    assert keys == {g.key for g in adamw_width.to_train()}
    assert {r["variant"] for r in published["records"]} == {"adamw"}
    assert not any(r["decay_biases"] for r in published["records"])
    assert_nested_close(
        adamw_width.summarize(published["records"], study["summary"]),
        published["summary"],
        rel=SUMMARY_RTOL,
    )
    for setup in published["summary"]["setups"]:
        assert setup["complete"]
    page = (ROOT / "docs" / "pages" / "scales.md").read_text()
    assert adamw_width.format_table(published["summary"]) in page


def _end_records(unpenalized_seeds=(0, 1, 2)):
    """One configuration: `none` on four factors, lowest loss at the lowest
    factor, three seeds; the unpenalized member of `unpenalized_seeds`."""
    config = {
        "family": "cnn",
        "data": "mnist1d",
        "optimizer": "adam",
        "width": 8,
        "depth": 3,
        "num_train": 4000,
    }
    losses = {1e-4: 0.50, 10**-3.5: 0.52, 1e-3: 0.55, 10**-2.5: 0.70}
    records = [
        {
            **config,
            "seed": seed,
            "variant": "none",
            "factor": float(f"{factor:.6g}"),
            "test_data_loss": loss + 0.01 * seed,
            "test_metric": 0.9,
            "collapsed": False,
        }
        for seed in (0, 1, 2)
        for factor, loss in losses.items()
    ]
    records += [
        {
            **config,
            "seed": seed,
            "variant": "unpenalized",
            "factor": 0.0,
            "test_data_loss": 0.53 + 0.01 * seed,
            "test_metric": 0.9,
            "collapsed": False,
        }
        for seed in unpenalized_seeds
    ]
    return config, records


def test_best_at_the_grid_end_against_no_penalty_paired_by_seed():
    config, records = _end_records()
    factors, losses, plain = grid_ends.paired_curves(records, config, "none")
    # The grid holds factors to 6 significant digits, as the study does.
    np.testing.assert_allclose(
        factors, [1e-4, 10**-3.5, 1e-3, 10**-2.5], rtol=1e-6
    )
    np.testing.assert_allclose(plain, [0.53, 0.54, 0.55])
    check = grid_ends.against_unpenalized(factors, losses, plain, "key")
    # Every seed's unpenalized member is 0.03 above its best: the interval
    # of the mean is that one value, and it does not reach zero.
    assert check["best_grid_factor"] == 1e-4
    assert check["end"] == "low"
    assert check["difference"] == pytest.approx(0.03, rel=1e-12)
    assert check["interval"] == pytest.approx([0.03, 0.03], rel=1e-12)
    assert check["relative"] == pytest.approx(0.03 / 0.51, rel=1e-12)
    assert not check["flat_to_none"]
    # Differences of both signs: no penalty does as well, within the noise.
    flat = grid_ends.against_unpenalized(
        factors, losses, losses[:, 0] + np.array([-0.02, 0.02, 0.0]), "key"
    )
    assert flat["interval"][0] < 0 < flat["interval"][1]
    assert flat["flat_to_none"]


def test_a_grid_end_without_the_same_seeds_unpenalized_is_refused():
    config, records = _end_records(unpenalized_seeds=(0, 1))
    with pytest.raises(ValueError, match="pairs them seed by seed"):
        grid_ends.paired_curves(records, config, "none")
    config, records = _end_records(unpenalized_seeds=())
    with pytest.raises(ValueError, match="no unpenalized member"):
        grid_ends.paired_curves(records, config, "none")


def test_the_widened_grid_keeps_the_studys_factors_and_goes_beyond():
    setup = Setup("transformer", "mnist1d", "sgd")
    for name in ("none", "balanced"):
        (variant,) = [v for v in L2_VARIANTS if v.name == name]
        study = factor_grid(variant, setup, FULL)
        widened = factor_grid(
            variant, setup, grid_ends.widened_settings(setup, name, "low")
        )
        assert len(study) == 9  # the default factor lies on the grid here
        # Four half-decades below the study's lowest, then all of its own.
        below = [
            float(f"{study[0] * 10 ** (-k / 2):.6g}") for k in (4, 3, 2, 1)
        ]
        assert widened[:4] == pytest.approx(below, rel=1e-5)
        assert widened[4:] == study
        assert grid_ends._even_run(np.array(widened)) == slice(0, 13)
    # AdamW widens its decay grid, here upward, and leaves the penalties'.
    widened = grid_ends.widened_settings(setup, "adamw", "high")
    assert widened.center["l2"] == FULL.center["l2"]
    assert widened.center["decay"]["transformer/mnist1d"] == pytest.approx(
        10 * FULL.center["decay"]["transformer/mnist1d"], rel=1e-12
    )
    assert widened.half_decades == FULL.half_decades + 2


def test_the_default_factor_off_the_grid_stays_out_of_the_curve():
    factors = np.array([1e-8, 10**-7.5, 1e-7, 10**-6.5, 1e-2])
    assert grid_ends._even_run(factors) == slice(0, 4)
    assert grid_ends._even_run(factors[::-1][:1]) == slice(0, 1)


def test_published_grid_ends_are_what_their_records_give():
    published = json.loads((RESULTS / "grid_ends.json").read_text())
    study = json.loads((RESULTS / "lambda_transfer.json").read_text())
    assert published["backend"] == study["backend"]
    assert published["settings"]["shift"] == grid_ends.SHIFT
    assert_nested_close(
        grid_ends.summarize(study, published["records"]),
        published["summary"],
        rel=SUMMARY_RTOL,
    )
    # Every grid end of the study is listed, and each is either flat down
    # to no penalty or trained again, on every seed, beyond it.
    ends = published["summary"]["ends"]
    assert len(ends) == len(grid_ends.grid_ends(study["summary"]))
    todo = grid_ends.to_extend(
        grid_ends.grid_ends(study["summary"]),
        grid_ends.with_derived_records(study["records"]),
    )
    trained = {Group.of_record(r).key for r in published["records"]}
    assert trained == {g.key for groups, _, _ in todo.values() for g in groups}
    for end in ends:
        assert end["against_unpenalized"]["flat_to_none"] or end["extended"]
    # What the scales page concludes from it.
    assert published["summary"]["every_end_flat_to_none"]
    page = (ROOT / "docs" / "pages" / "scales.md").read_text()
    assert grid_ends.format_table(published["summary"]) in page
