"""`search_factor` and its schedule: the schedule against hand-traced
searches, the plateau's bootstrap against the normal approximation, and
real fits for the rest (scores, resuming, bad input, collapse)."""

import inspect
import json
import math
import os

import keras
import numpy as np
import pytest

from keras_scaled_l2 import ScaledL2, search_factor
from keras_scaled_l2._halving import (
    Fit,
    Plan,
    Record,
    check_plan,
    epochs_spent,
    next_fits,
    run_in_turn,
)
from keras_scaled_l2.factor_search import _paired_lower_bound, _per_row_losses
from keras_scaled_l2.tuner import FactorSearchOracle

TRACED = {"num_factors": 7, "reduction": 3}
"""The plan the hand traces below follow (not the default)."""


def replay(plan, score, collapsed=lambda index, epochs: False, tied=None):
    """Runs the schedule to its end on a score function; returns the fits
    in the order asked for, the final decision and the records."""
    asked, records = [], []

    def run(fit):
        asked.append(fit)
        return Record(
            fit.grid_index,
            fit.seed,
            fit.epochs,
            score(fit.grid_index, fit.seed, fit.epochs),
            collapsed(fit.grid_index, fit.epochs),
        )

    decision = run_in_turn(plan, run, records, tied=tied)
    return asked, decision, records


def drifting(index, seed, epochs):
    """Short fits favour small factors: the best index is -2 after 10
    epochs and 1 after 30."""
    optimum = {10: -2, 30: 1}[epochs]
    return (index - optimum) ** 2 + 0.01 * seed


def test_rungs_and_cost_by_hand():
    plan = Plan(epochs=30, **TRACED)
    assert plan.rungs == [10, 30]
    assert plan.initial_indices == [-3, -2, -1, 0, 1, 2, 3]
    assert plan.halving_cost() == 7 * 10 + 3 * 20
    assert plan.total_budget == 130 + 2 * 30
    plan = Plan(epochs=27, num_factors=9, reduction=3, num_rungs=3)
    assert plan.rungs == [3, 9, 27]
    assert plan.halving_cost() == 9 * 3 + 3 * 6 + 1 * 18


def test_the_defaults_by_hand():
    # Five factors for half the epochs, the best three of them to the end.
    plan = Plan(epochs=30)
    assert plan.rungs == [15, 30]
    assert plan.initial_indices == [-2, -1, 0, 1, 2]
    assert plan.halving_cost() == 5 * 15 + 3 * 15
    assert plan.total_budget == 120 + 2 * 30
    defaults = inspect.signature(search_factor).parameters
    oracle = inspect.signature(FactorSearchOracle).parameters
    for field in ("num_factors", "reduction", "num_rungs", "seeds"):
        assert defaults[field].default == getattr(plan, field)
        assert oracle[field].default == getattr(plan, field)


def test_a_search_traced_by_hand():
    asked, decision, records = replay(Plan(epochs=30, **TRACED), drifting)
    short = [Fit(i, 0, 10, 0) for i in range(-3, 4)]
    # Rung 0's best is -2; the window reaches up from it: -2, -1, 0. The
    # full fits' best is then 0, at the top edge: 1 is continued, then 2.
    continued = [Fit(i, 0, 30, 10) for i in (-2, -1, 0, 1, 2)]
    assert asked == short + continued
    assert decision.chosen == 1
    assert decision.finalists == [0, 1, 2]
    assert epochs_spent(records) == 7 * 10 + 5 * 20


def test_the_grid_widens_at_rung_zero_and_stops_at_its_reach():
    asked, decision, _ = replay(
        Plan(epochs=30, **TRACED, budget=10_000), lambda i, s, e: float(i)
    )
    rung0 = sorted(f.grid_index for f in asked if f.epochs == 10)
    # Two widenings of two factors below -3, then no further.
    assert rung0 == list(range(-7, 4))
    assert decision.chosen == -7
    full = sorted(f.grid_index for f in asked if f.epochs == 30)
    assert full == [-7, -6, -5, -4]  # the window, then no reach below -7


def test_nothing_is_fitted_or_chosen_past_a_collapse():
    asked, decision, _ = replay(
        Plan(epochs=30, **TRACED),
        lambda i, s, e: -float(i),  # larger is better...
        collapsed=lambda i, e: i >= 2,  # ...up to the cliff
    )
    assert decision.chosen == 1
    full = {f.grid_index for f in asked if f.epochs == 30}
    assert max(full) == 1
    assert not [f for f in asked if f.grid_index > 3]


def test_the_budget_stops_the_widening_of_full_fits():
    asked, decision, records = replay(
        Plan(epochs=30, **TRACED, budget=150), drifting
    )
    assert [f.grid_index for f in asked if f.epochs == 30] == [-2, -1, 0, 1]
    assert decision.chosen == 1
    assert epochs_spent(records) == 150


def test_the_default_budget_holds_while_the_grid_widens():
    plan = Plan(epochs=30)
    for score in (lambda i, s, e: float(i), lambda i, s, e: -float(i)):
        asked, decision, records = replay(plan, score)
        assert epochs_spent(records) <= plan.total_budget
        assert decision.chosen is not None
    # Widened once below (two factors), not twice: a second widening
    # would leave too few epochs to halve the grid.
    asked, _, _ = replay(plan, lambda i, s, e: float(i))
    assert min(f.grid_index for f in asked) == -4


def test_failed_and_collapsed_fits_are_neither_promoted_nor_chosen():
    failing = {1, 2}
    asked, decision, _ = replay(
        Plan(epochs=30),
        lambda i, s, e: math.inf if i in failing else -float(i),
    )
    assert decision.chosen == 0
    assert not [f for f in asked if f.grid_index in failing and f.epochs == 30]
    # Everything collapses: the search ends without a choice, within its
    # budget, instead of failing.
    plan = Plan(epochs=30)
    asked, decision, records = replay(
        plan, lambda i, s, e: 1.0, collapsed=lambda i, e: True
    )
    assert decision.done and decision.chosen is None
    assert epochs_spent(records) <= plan.total_budget


def test_more_seeds_for_the_best_and_its_neighbours():
    asked, decision, _ = replay(
        Plan(epochs=30, **TRACED, seeds=3, budget=10_000), drifting
    )
    again = [f for f in asked if f.seed > 0]
    assert again == [Fit(i, s, 30, 0) for s in (1, 2) for i in (0, 1, 2)]
    assert decision.chosen == 1


def test_more_seeds_only_where_the_noise_cannot_decide():
    plan = Plan(epochs=30, **TRACED, seeds=3, budget=10_000)
    asked_about = []

    def best_and_the_larger_tie(best, finalists):
        asked_about.append((best, finalists))
        return [best, best + 1]

    asked, decision, _ = replay(plan, drifting, tied=best_and_the_larger_tie)
    assert asked_about[0] == (1, [0, 1, 2])
    again = [f for f in asked if f.seed > 0]
    assert again == [Fit(i, s, 30, 0) for s in (1, 2) for i in (1, 2)]
    assert decision.chosen == 1 and decision.finalists == [1, 2]
    # A best factor that stands out beyond the noise keeps its one seed.
    asked, decision, _ = replay(
        plan, drifting, tied=lambda best, finalists: [best]
    )
    assert [f for f in asked if f.seed > 0] == []
    assert decision.chosen == 1


def test_running_fits_are_not_handed_out_twice():
    plan = Plan(epochs=30, **TRACED)
    first = next_fits(plan, [], running=[Fit(-3, 0, 10, 0)])
    assert Fit(-3, 0, 10, 0) not in first.fits and len(first.fits) == 6
    all_running = next_fits(plan, [], running=[*first.fits, Fit(-3, 0, 10, 0)])
    assert all_running.fits == [] and not all_running.done


@pytest.mark.parametrize(
    ("plan", "argument"),
    [
        (Plan(epochs=30, **TRACED, budget=69), "budget"),
        (Plan(epochs=30, budget=74), "budget"),
        (Plan(epochs=2, num_rungs=3), "num_rungs"),
    ],
)
def test_a_plan_that_cannot_run_is_refused(plan, argument):
    with pytest.raises(ValueError, match=f"argument `{argument}`"):
        check_plan(plan)


def test_the_bootstrap_lower_bound_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    differences = rng.normal(0.05, 1.0, size=(1, 4000))
    standard_error = differences.std(ddof=1) / math.sqrt(4000)
    normal = differences.mean() - 1.959964 * standard_error
    # 1000 bootstrap samples: the 2.5 % point is within 0.15 standard
    # errors of the normal approximation's (a loose, stated tolerance).
    assert _paired_lower_bound(differences) == pytest.approx(
        normal, abs=0.15 * standard_error
    )
    assert _paired_lower_bound(np.full((3, 50), 0.2)) == pytest.approx(0.2)


# Real fits from here on.


def noisy_regression(rows=320, features=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype("float32")
    y = x[:, :2].sum(axis=1, keepdims=True) + 2.0 * rng.normal(size=(rows, 1))
    return (x[:192], y[:192]), (x[192:], y[192:].astype("float32"))


def mlp(factor, depth=2, width=32, learning_rate=1e-2):
    layers = [keras.Input((16,))]
    for _ in range(depth):
        layers.append(
            keras.layers.Dense(
                width, activation="relu", kernel_regularizer=ScaledL2(factor)
            )
        )
    layers.append(keras.layers.Dense(1, kernel_regularizer=ScaledL2(factor)))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.Adam(learning_rate), "mse")
    return model


SMALL = {"epochs": 3, "num_factors": 3, "batch_size": 64, "verbose": 0}


def test_scores_are_the_validation_data_loss_not_val_loss(tmp_path):
    (x, y), (x_val, y_val) = noisy_regression()
    result = search_factor(
        mlp,
        x,
        y,
        validation_data=(x_val, y_val),
        directory=tmp_path,
        **SMALL,
    )
    short = [r for r in result.records if r.epochs == 2]
    assert len(short) >= 3
    for record in short:
        # Each short fit's model is kept for the next rung: reloaded, its
        # mean squared error on the validation rows, in float64 numpy, is
        # the score; `evaluate`'s loss adds the penalty and is larger.
        model = keras.models.load_model(
            tmp_path / f"fit_{record.grid_index}_0_{record.epochs}.keras"
        )
        predictions = np.asarray(model.predict(x_val, verbose=0), "float64")
        mse = np.mean((predictions - y_val) ** 2)
        assert record.score == pytest.approx(mse, rel=1e-5)
        val_loss = model.evaluate(x_val, y_val, verbose=0)
        assert val_loss > record.score * (1 + 1e-4)
        # The plateau's per-row losses average to the same score.
        rows = _per_row_losses(model, (x_val, y_val), None)
        assert rows.shape == (len(x_val),)
        assert rows.mean() == pytest.approx(mse, rel=1e-5)
    assert result.plateau[0] <= result.factor <= result.plateau[1]
    assert result.epochs_spent == epochs_spent(result.records)
    assert [row.factor for row in result.table] == sorted(
        row.factor for row in result.table
    )


# Which finalists get more seeds is the schedule's rule (tested above on
# every backend) fed by the plateau's bootstrap; one backend leg shows the
# search wires the two together.
@pytest.mark.run_once
def test_more_seeds_go_to_the_factors_the_noise_cannot_tell_apart(tmp_path):
    (x, y), validation = noisy_regression()
    result = search_factor(
        mlp,
        x,
        y,
        validation_data=validation,
        directory=tmp_path,
        budget=100,  # pays for a second seed of every finalist
        **{**SMALL, "seeds": 2},
    )
    final = SMALL["epochs"]
    first = {
        r.grid_index: r.score
        for r in result.records
        if r.epochs == final and r.seed == 0
    }
    best = min(first, key=first.get)
    finalists = [i for i in (best - 1, best, best + 1) if i in first]

    def rows(index):
        return np.load(tmp_path / f"fit_{index}_0_{final}.npy")

    # Seed 0's paired bootstrap over the validation rows decides.
    tied = {
        i
        for i in finalists
        if i == best or _paired_lower_bound((rows(i) - rows(best))[None]) <= 0
    }
    again = {r.grid_index for r in result.records if r.seed == 1}
    assert again == (tied if len(tied) > 1 else set())
    chosen = round(math.log(result.factor / 0.01, math.sqrt(10)))
    assert chosen in tied


class Interrupt(keras.callbacks.Callback):
    def __init__(self, at_fit):
        super().__init__()
        self.fits, self.at_fit = 0, at_fit

    def on_train_begin(self, logs=None):
        self.fits += 1
        if self.fits == self.at_fit:
            raise KeyboardInterrupt


def test_an_interrupted_search_resumes_where_it_stopped(tmp_path):
    (x, y), validation = noisy_regression()
    with pytest.raises(KeyboardInterrupt):
        search_factor(
            mlp,
            x,
            y,
            validation_data=validation,
            directory=tmp_path,
            callbacks=[Interrupt(at_fit=4)],
            **SMALL,
        )
    saved = json.loads((tmp_path / "factor_search.json").read_text())
    assert len(saved["records"]) == 3
    counter = Interrupt(at_fit=-1)
    resumed = search_factor(
        mlp,
        x,
        y,
        validation_data=validation,
        directory=tmp_path,
        callbacks=[counter],
        **SMALL,
    )
    assert [list(r) for r in resumed.records[:3]] == saved["records"]
    assert counter.fits == len(resumed.records) - 3
    again = Interrupt(at_fit=-1)
    repeated = search_factor(
        mlp,
        x,
        y,
        validation_data=validation,
        directory=tmp_path,
        callbacks=[again],
        **SMALL,
    )
    assert again.fits == 0 and repeated.factor == resumed.factor
    with pytest.raises(ValueError, match="argument `directory`"):
        search_factor(
            mlp,
            x,
            y,
            validation_data=validation,
            directory=tmp_path,
            **{**SMALL, "epochs": 6},
        )


def test_a_model_and_a_regularizer_to_attach():
    (x, y), validation = noisy_regression()
    model = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    result = search_factor(
        model,
        x,
        y,
        validation_data=validation,
        regularizer=ScaledL2,
        **SMALL,
    )
    assert len({row.val_data_loss for row in result.table}) == len(result.table)
    assert model.losses == []  # the model given is left alone


def collapsing(factor):
    # Plain Keras L2 on a deep net over noise: large factors drive every
    # weight to zero.
    model = keras.Sequential(
        [keras.Input((16,))]
        + [
            keras.layers.Dense(
                64,
                activation="relu",
                kernel_regularizer=keras.regularizers.L2(factor),
            )
            for _ in range(4)
        ]
        + [
            keras.layers.Dense(
                1, kernel_regularizer=keras.regularizers.L2(factor)
            )
        ]
    )
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    return model


# The cliff's rule is the schedule's (tested above on every backend);
# one backend leg shows a real collapse stops it.
@pytest.mark.run_once
@pytest.mark.filterwarnings("ignore:search_factor. the chosen factor")
def test_no_factor_past_a_collapse_is_chosen():
    (x, y), validation = noisy_regression()
    result = search_factor(
        collapsing,
        x,
        y,
        validation_data=validation,
        prior=1.0,
        epochs=6,
        num_factors=5,
        batch_size=16,
        verbose=0,
    )
    assert result.cliff is not None
    assert result.factor < result.cliff
    assert all(
        row.factor >= result.cliff for row in result.table if row.collapsed
    )


def uncompiled(factor):
    return keras.Sequential([keras.Input((16,)), keras.layers.Dense(1)])


def ignores_the_factor(factor):
    return mlp(0.01)


@pytest.mark.parametrize(
    ("build", "arguments", "argument", "received"),
    [
        (mlp, {"validation_data": None}, "validation_data", "None"),
        (mlp, {"validation_data": "val"}, "validation_data", "'val'"),
        (mlp, {"budget": 2}, "budget", "2"),
        (uncompiled, {}, "build_model", "uncompiled Sequential"),
        (ignores_the_factor, {}, "build_model", "<build_model>"),
        (mlp, {"regularizer": ScaledL2}, "regularizer", "ScaledL2"),
        (mlp, {"prior": -1.0}, "prior", "-1.0"),
        (mlp, {"step": 1.0}, "step", "1.0"),
        (mlp, {"epochs": 0}, "epochs", "0"),
    ],
)
# The checks run before any fit: the same on every backend.
@pytest.mark.run_once
def test_bad_input_is_refused_naming_the_argument(
    build, arguments, argument, received
):
    (x, y), validation = noisy_regression()
    settings = {**SMALL, "validation_data": validation, **arguments}
    with pytest.raises(ValueError, match=f"argument `{argument}`") as caught:
        search_factor(build, x, y, **settings)
    assert received in str(caught.value)


# The plot is matplotlib's: one backend leg draws it.
@pytest.mark.run_once
def test_the_plot_shows_every_rung(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    (x, y), validation = noisy_regression()
    result = search_factor(mlp, x, y, validation_data=validation, **SMALL)
    ax = result.plot()
    labels = [line.get_label() for line in ax.get_lines()]
    assert "2 epochs" in labels and "3 epochs" in labels
    path = os.path.join(tmp_path, "search.png")
    ax.figure.savefig(path)
    assert os.path.getsize(path) > 5000


def test_fits_handed_out_one_at_a_time_are_those_handed_out_together():
    # As KerasTuner's workers take them: one fit per request, the others
    # running meanwhile; the schedule must ask for the same fits.
    plan = Plan(epochs=30, **TRACED, seeds=2, budget=10_000)
    for score in (drifting, lambda i, s, e: float(i), lambda i, s, e: -i):
        together, decision, _ = replay(plan, score)
        records, running, one_by_one = [], [], []
        while True:
            ask = next_fits(plan, records, running)
            if ask.fits:
                running.append(ask.fits[0])
                one_by_one.append(ask.fits[0])
                continue
            if ask.done:
                break
            fit = running.pop(0)
            records.append(
                Record(
                    fit.grid_index,
                    fit.seed,
                    fit.epochs,
                    score(fit.grid_index, fit.seed, fit.epochs),
                    False,
                )
            )
        assert sorted(one_by_one) == sorted(together)
        assert ask.chosen == decision.chosen
