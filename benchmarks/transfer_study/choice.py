"""Ways of choosing the factor, measured by what they cost in test loss.

Each group of the study is trained again with its validation and test
losses, penalty and prediction spread recorded after every epoch, for every
member (one factor of one rule): a learning curve per factor. The study's
test set is split in two fixed halves, one to choose on (validation) and
one to pay on (test); the training rows are the study's.

The ways of choosing are then *replayed* on those curves, as the tabular
benchmarks of hyperparameter search do: a fit of factor `f` stopped at
epoch `e` and continued to `E` scores what the curve of `f` says at `e`
and then at `E` (a continued fit is the same training run). The replays
run the package's own schedule (`keras_scaled_l2._halving.next_fits`) and
KerasTuner's own `HyperbandOracle`, so what is measured is what those
decide. What a replay cannot show: a continued KerasTuner fit restarts its
optimizer state; the search's grid is the study's grid (a factor the
search asks for beyond it scores as a failed fit).

For a configuration (setup, shape, rows), rule and seed, a method's regret
is `test(chosen, E) / min_f test(f, E) - 1`, the oracle being the grid's
best on test. The methods:

- `reuse`: the reference model's factor chosen on validation (full grid),
  used on another configuration of its axis under the same rule, and the
  other configuration's factor used on the reference (both directions);
- `grid`: the full grid, chosen on the last epoch's validation data loss;
- `grid_val_loss`: the same on `val_loss` (data loss plus penalty), as a
  tuner on Keras's `val_loss` ranks them;
- `search`: `search_factor`'s schedule, with its defaults, with the
  reference model's factor as its prior (on the reference itself, the
  middle of the rule's grid);
- `hyperband` / `hyperband_val_loss`: KerasTuner's Hyperband over the
  grid's range (log-uniform; curves between grid factors interpolated) on
  `val_data_loss` / `val_loss`, stopped at the search's budget, its best
  trial's factor then fitted in full.
"""

import math
import tempfile

import numpy as np

from keras_scaled_l2 import _halving
from transfer_study.curves import entry_rng, mean_interval

METHODS = (
    "reuse",
    "grid",
    "grid_val_loss",
    "search",
    "hyperband",
    "hyperband_val_loss",
)
THRESHOLDS = (0.02, 0.05, 0.10)


class Curves:
    """One configuration, rule and seed: per factor and epoch, the losses.

    `val[f, e]`, `test[f, e]`, `penalty[f, e]` and `collapsed[f, e]` for
    the grid's factors (sorted) after epoch `e + 1`.
    """

    def __init__(self, records):
        records = sorted(records, key=lambda r: r["factor"])
        self.factors = np.array([r["factor"] for r in records])
        self.val = _array(records, "val_curve")
        self.test = _array(records, "test_curve")
        self.penalty = _array(records, "penalty_curve")
        self.collapsed = np.array(
            [r["collapsed_curve"] for r in records], dtype=bool
        )
        self.epochs = self.val.shape[1]

    def oracle(self):
        return float(np.min(self.test[:, -1]))

    def regret(self, position):
        return float(self.test[position, -1] / self.oracle() - 1)

    def at(self, factor):
        """`(val, test, penalty)` curves at any factor in the grid's range:
        linear in log10(factor) between the two grid factors around it."""
        weights = np.interp(
            np.log10(factor),
            np.log10(self.factors),
            np.arange(len(self.factors)),
        )
        low = int(np.floor(weights))
        high = min(low + 1, len(self.factors) - 1)
        share = weights - low
        return tuple(
            (1 - share) * curve[low] + share * curve[high]
            for curve in (self.val, self.test, self.penalty)
        )

    def regret_at(self, factor):
        return float(self.at(factor)[1][-1] / self.oracle() - 1)

    def position(self, factor):
        """The grid position of `factor` (relative tolerance 1e-6)."""
        matches = np.flatnonzero(
            np.isclose(self.factors, factor, rtol=1e-6, atol=0)
        )
        return int(matches[0]) if len(matches) else None


def _array(records, key):
    values = np.array([r[key] for r in records], dtype=np.float64)
    return np.where(np.isfinite(values), values, np.inf)


def grid_choice(curves, on_val_loss=False):
    """Full grid: the position with the best last-epoch validation score."""
    score = curves.val[:, -1] + (curves.penalty[:, -1] if on_val_loss else 0)
    return int(np.argmin(score)), len(curves.factors) * curves.epochs


def search_choice(curves, prior):
    """`search_factor`'s schedule replayed: `(position, epochs spent)`."""
    plan = _halving.Plan(epochs=curves.epochs)
    step = math.sqrt(10.0)
    records = []

    def score(fit):
        position = curves.position(
            _halving.factor_of(prior, step, fit.grid_index)
        )
        if position is None:
            return _halving.Record(
                fit.grid_index, 0, fit.epochs, math.inf, False
            )
        return _halving.Record(
            fit.grid_index,
            0,
            fit.epochs,
            float(curves.val[position, fit.epochs - 1]),
            bool(curves.collapsed[position, fit.epochs - 1]),
        )

    decision = _halving.run_in_turn(plan, score, records)
    spent = _halving.epochs_spent(records)
    if decision.chosen is None:
        return None, spent
    chosen = curves.position(_halving.factor_of(prior, step, decision.chosen))
    return chosen, spent


def hyperband_choice(curves, budget, seed, on_val_loss=False):
    """KerasTuner's `HyperbandOracle` replayed on the curves until its next
    trial would take it past `budget` epochs; `(factor, epochs spent)`.

    The factor is a log-uniform `Float` over the grid's range, as a user
    declares it (over the grid's nine values as a `Choice`, Hyperband
    stops once each has had one short fit: its sampler refuses repeats),
    and a trial's curves are the grid's, interpolated in log10(factor)
    (`Curves.at`). A trial scores what KerasTuner's tuner reports: the
    best epoch of the objective over the epochs that trial trained.
    """
    import keras_tuner

    hyperparameters = keras_tuner.HyperParameters()
    hyperparameters.Float(
        "factor",
        float(curves.factors[0]),
        float(curves.factors[-1]),
        sampling="log",
    )
    oracle = _in_memory(keras_tuner.oracles.HyperbandOracle)(
        objective=keras_tuner.Objective("score", "min"),
        hyperparameters=hyperparameters,
        max_epochs=curves.epochs,
        factor=3,
        hyperband_iterations=1000,
        # KerasTuner draws a random seed for a falsy one: 0 must not be.
        seed=seed + 1,
    )
    oracle._display.verbose = 0  # no progress tables per replayed trial
    spent = 0
    with tempfile.TemporaryDirectory() as directory:
        oracle._set_project_dir(directory, "replay")
        while spent < budget:
            trial = oracle.create_trial("replay")
            if trial.status != "RUNNING":
                break
            values = trial.hyperparameters.values
            val, _, penalty = curves.at(values["factor"])
            score_curve = val + penalty if on_val_loss else val
            start, stop = values["tuner/initial_epoch"], values["tuner/epochs"]
            if spent + stop - start > budget:
                break  # never past the budget
            spent += stop - start
            segment = score_curve[start:stop]
            best_epoch = int(np.argmin(segment))
            oracle.update_trial(
                trial.trial_id,
                {"score": float(min(segment[best_epoch], 1e30))},
                step=best_epoch,
            )
            trial.status = "COMPLETED"
            oracle.end_trial(trial)
        best = oracle.get_best_trials(1)
    if not best:
        return None, spent
    return float(best[0].hyperparameters.values["factor"]), spent


def _in_memory(oracle_class):
    """The oracle without its files: a replay writes thousands of trials,
    and KerasTuner writes each one's JSON at every update. Its decisions
    read the trials in memory only."""

    class InMemory(oracle_class):
        def _save_trial(self, trial):
            pass

        def save(self):
            pass

    return InMemory


def statistics(cells, baseline=None):
    """`summary.regret` of one method over its cells.

    `cells`: `{key: [regret per seed]}`. With `baseline` (the same for the
    full grid), a cell is within the seed noise when the 95 % bootstrap
    interval of the paired per-seed difference reaches zero.
    """
    means = {key: float(np.mean(values)) for key, values in cells.items()}
    entry = {
        "cells": len(means),
        "worst": max(means.values()) if means else None,
        "median": float(np.median(list(means.values()))) if means else None,
    }
    for threshold in THRESHOLDS:
        entry[f"over_{round(threshold * 100)}_percent"] = sum(
            value > threshold for value in means.values()
        )
    if baseline is not None:
        within = 0
        for key, values in cells.items():
            difference = np.subtract(values, baseline[key])
            low, _ = mean_interval(difference, entry_rng(key))
            within += low <= 0
        entry["within_seed_noise_of_grid"] = within
        # Not only whether, but how far: the largest mean excess over the
        # full grid (a near tie on most seeds can hide a large one).
        entry["worst_mean_excess_over_grid"] = max(
            (
                float(np.mean(np.subtract(v, baseline[k])))
                for k, v in cells.items()
            ),
            default=None,
        )
    return entry


def cell_intervals(cells):
    """Per cell: the mean regret over the seeds and its 95 % interval."""
    return {
        key: {
            "mean": float(np.mean(values)),
            "interval": mean_interval(values, entry_rng(key))
            if len(values) > 1
            else None,
            "seeds": len(values),
        }
        for key, values in cells.items()
    }
