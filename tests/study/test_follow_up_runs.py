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

import adamw_width
import data_size_steps
import grid_ends
import numpy as np
import pytest
from nested_close import assert_nested_close
from project_paths import ROOT
from transfer_study import adam_decay
from transfer_study.curves import axis_entry
from transfer_study.grid import factor_grid
from transfer_study.settings import FULL, L2_VARIANTS, Group, Setup

RESULTS = ROOT / "benchmarks" / "results"

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
    # The study page shows both tables, character for character.
    page = (ROOT / "docs" / "pages" / "study.md").read_text()
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
    page = (ROOT / "docs" / "pages" / "study.md").read_text()
    assert adamw_width.format_table(published["summary"]) in page


CNN_CONFIG = {
    "family": "cnn",
    "data": "mnist1d",
    "optimizer": "adam",
    "width": 8,
    "depth": 3,
    "num_train": 4000,
}


def _end_records(unpenalized=(0.53, 0.54, 0.55), variant="none"):
    """One configuration: `variant` on four factors, lowest loss at the
    lowest, one seed per entry of `unpenalized` (`None`: that seed has no
    unpenalized member), in shuffled order."""
    losses = {1e-4: 0.50, 10**-3.5: 0.52, 1e-3: 0.55, 10**-2.5: 0.70}
    records = [
        {
            **CNN_CONFIG,
            "seed": seed,
            "variant": variant,
            "factor": float(f"{factor:.6g}"),
            "test_data_loss": loss + 0.01 * seed,
            "test_metric": 0.9,
            "collapsed": False,
        }
        for seed in range(len(unpenalized))
        for factor, loss in losses.items()
    ]
    records += [
        {
            **CNN_CONFIG,
            "seed": seed,
            "variant": "unpenalized",
            "factor": 0.0,
            "test_data_loss": loss,
            "test_metric": 0.9,
            "collapsed": False,
        }
        for seed, loss in enumerate(unpenalized)
        if loss is not None
    ]
    # Record order must not pair the seeds.
    order = np.random.default_rng(0).permutation(len(records))
    return [records[i] for i in order]


def test_best_at_the_grid_end_against_no_penalty_paired_by_seed():
    records = _end_records()
    factors, losses, plain = grid_ends.paired_curves(
        records, CNN_CONFIG, "none"
    )
    # The grid holds factors to 6 significant digits, as the study does.
    np.testing.assert_allclose(
        factors, [1e-4, 10**-3.5, 1e-3, 10**-2.5], rtol=1e-6
    )
    np.testing.assert_allclose(plain, [0.53, 0.54, 0.55])
    np.testing.assert_allclose(losses[:, 0], [0.50, 0.51, 0.52])
    check = grid_ends.against_unpenalized(factors, losses, plain, "key")
    # Every seed's unpenalized member is 0.03 above its best: the interval
    # of the mean is that one value, and it does not reach zero.
    assert check["best_grid_factor"] == 1e-4
    assert check["end"] == "low"
    assert check["difference"] == pytest.approx(0.03, rel=1e-12)
    assert check["interval"] == pytest.approx([0.03, 0.03], rel=1e-12)
    assert check["relative"] == pytest.approx(0.03 / 0.51, rel=1e-12)
    assert not check["unpenalized_within_noise"]
    # Differences of both signs: the seeds cannot tell them apart.
    mixed = grid_ends.against_unpenalized(
        factors, losses, losses[:, 0] + np.array([-0.02, 0.02, 0.0]), "key"
    )
    assert mixed["interval"][0] < 0 < mixed["interval"][1]
    assert mixed["unpenalized_within_noise"]


def test_a_grid_end_without_the_same_seeds_unpenalized_is_refused():
    records = _end_records(unpenalized=(0.53, None, 0.55))
    with pytest.raises(ValueError, match="pairs them seed by seed"):
        grid_ends.paired_curves(records, CNN_CONFIG, "none")
    records = _end_records(unpenalized=(None, None, None))
    with pytest.raises(ValueError, match="no unpenalized member"):
        grid_ends.paired_curves(records, CNN_CONFIG, "none")


def _ends(*variants):
    setup = Setup("cnn", "mnist1d", "adam")
    return [(setup, variant, "width", 0, CNN_CONFIG) for variant in variants]


def test_ends_to_train_again_by_configuration_and_source_variant():
    setup = Setup("cnn", "mnist1d", "adam")
    # No penalty worse on every seed: train `none` again, for itself and
    # for `none/kernels`, which trains as it; all three seeds, one group
    # each, on the grid widened at the low end.
    records = grid_ends.with_derived_records(_end_records())
    todo = grid_ends.to_extend(_ends("none", "none/kernels"), records)
    ((groups, widened, variants),) = todo.values()
    assert variants == {"none"}
    assert [g.seed for g in groups] == [0, 1, 2]
    assert {g.key.rsplit("/", 1)[0] for g in groups} == {
        "cnn/mnist1d/adam/w8/d3/n4000"
    }
    assert widened == grid_ends.widened_settings(setup, "none", "low")
    # No penalty within the noise: nothing to train.
    flat = _end_records(unpenalized=(0.48, 0.53, 0.52))
    assert grid_ends.to_extend(_ends("none"), flat) == {}
    # Two ends of one configuration that would widen it two ways.
    both = _end_records() + [
        r for r in _end_records(variant="adamw") if r["variant"] == "adamw"
    ]
    with pytest.raises(ValueError, match="widen it two ways"):
        grid_ends.to_extend(_ends("none", "adamw"), both)
    with pytest.raises(ValueError, match="Received: end=None"):
        grid_ends.widened_settings(setup, "none", None)


def test_a_rerun_is_compared_with_the_study_on_the_runs_both_trained():
    study = _end_records()
    again = [
        {**r, "test_data_loss": r["test_data_loss"] * (1.1 if r["seed"] else 1)}
        for r in study
        if r["factor"] <= 1e-3
    ] + [{**study[0], "factor": 1e-9}]
    # Seeds 1 and 2 of 3 factors and the unpenalized member: 10% apart.
    expected = [0.0] * 4 + [0.1] * 8
    got = grid_ends.reproduced(study, again, CNN_CONFIG)
    assert got["runs"] == len(expected)
    assert got["largest"] == pytest.approx(max(expected), rel=1e-9)
    assert got["median"] == pytest.approx(np.median(expected), rel=1e-9)
    other = {**CNN_CONFIG, "width": 32}
    assert grid_ends.reproduced(study, again, other) is None


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


def test_the_curve_is_the_longest_run_of_half_decades():
    lattice = [1e-8, 10**-7.5, 1e-7, 10**-6.5]
    # The default off the run stays out, before or after it.
    assert grid_ends._even_run(np.array([*lattice, 1e-2])) == slice(0, 4)
    assert grid_ends._even_run(np.array([1e-12, *lattice])) == slice(1, 5)
    # Next to the run's end, it is a grid point like the others.
    assert grid_ends._even_run(np.array([*lattice, 1e-6])) == slice(0, 5)
    # Of two runs, the longer one.
    two = np.array([1e-9, 10**-8.5, 1e-6, 10**-5.5, 1e-5])
    assert grid_ends._even_run(two) == slice(2, 5)


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
    # Every grid end of the study is listed, counted from its summary, and
    # each has no penalty within the noise or is trained again beyond it.
    ends = published["summary"]["ends"]
    assert len(ends) == sum(
        flag
        for setup in study["summary"]["setups"]
        for row in setup["scales"]
        for axis in ("width", "depth", "data size")
        if axis in row
        for flag in row[axis]["at_edge"]
    )
    todo = grid_ends.to_extend(
        grid_ends.grid_ends(study["summary"]),
        grid_ends.with_derived_records(study["records"]),
    )
    trained = {Group.of_record(r).key for r in published["records"]}
    assert trained == {g.key for groups, _, _ in todo.values() for g in groups}
    for end in ends:
        checked = end["against_unpenalized"]["unpenalized_within_noise"]
        assert checked or end["extended"]
    # What the study page concludes from it.
    assert published["summary"]["every_end_unpenalized_within_noise"]
    page = (ROOT / "docs" / "pages" / "study.md").read_text()
    assert grid_ends.format_table(published["summary"]) in page


def test_published_equivalent_decay_table_is_on_the_scales_page():
    rows = [
        row
        for row in json.loads((RESULTS / "gradient_ratio.json").read_text())[
            "rows"
        ]
        if row["optimizer"] == "adamw"
    ]
    width_run = json.loads((RESULTS / "adamw_width.json").read_text())
    # The study's best decays the rows were measured beside, every seed.
    for setup in width_run["summary"]["setups"]:
        per_width = [r for r in rows if r["data"] == setup["data"]]
        assert [r["best_adamw_decay"] for r in per_width] == setup[
            "every variable"
        ]["best_factors"]
        assert {len(r["equivalent_decay"]) for r in per_width} == {
            len(FULL.seeds)
        }
    page = (ROOT / "docs" / "pages" / "study.md").read_text()
    table = adam_decay.equivalent_decay_table(rows, width_run["summary"])
    assert table in page


def test_a_repeated_study_group_is_counted_against_the_published_runs(
    monkeypatch,
):
    study = _end_records()
    group = Group(**CNN_CONFIG, seed=1)
    published = [r for r in study if r["seed"] == 1]
    repeats = iter(
        [
            [
                {**r, "test_data_loss": r["test_data_loss"] + 0.25}
                for r in published
            ],
            [
                {
                    **r,
                    "test_data_loss": r["test_data_loss"]
                    + (0.25 if i else 0.5),
                }
                for i, r in enumerate(published)
            ],
        ]
    )
    monkeypatch.setattr(grid_ends, "train_group", lambda g, s: next(repeats))
    got = grid_ends.repeat_study_group(study, group)
    assert got["runs"] == len(published) == 5
    assert got["identical_repeats"] == 4
    assert got["largest_difference_to_study"] == pytest.approx(0.25, rel=1e-12)
