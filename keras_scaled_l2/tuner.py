"""The factor search as a KerasTuner oracle, for KerasTuner's workers.

`FactorSearchOracle` runs the schedule of `search_factor` (the same
`_halving.next_fits`) inside KerasTuner: any number of workers, on one
machine or many (KerasTuner's distributed mode: a chief that holds the
oracle and workers that ask it for fits over gRPC, configured by
`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`),
share one search. `FactorTuner` runs each fit: it continues a promoted fit
from the weights its last rung ended with, and scores it on the last
epoch's validation **data** loss (`PenaltyLogger`).

Needs KerasTuner: `pip install "keras-scaled-l2[tuner]"`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Any

import keras

try:
    import keras_tuner
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "keras_scaled_l2.tuner needs KerasTuner: "
        'pip install "keras-scaled-l2[tuner]" (or: pip install keras-tuner)'
    ) from error

from keras_scaled_l2 import _halving
from keras_scaled_l2._validation import (
    invalid_argument,
    shown,
    validate_factor,
)
from keras_scaled_l2.collapse_monitor import CollapseWarning
from keras_scaled_l2.factor_search import _collapse_monitor, _plan_and_grid
from keras_scaled_l2.penalty_logger import PenaltyLogger
from keras_scaled_l2.saving import load_model

__all__ = ["FactorSearchOracle", "FactorTuner"]

OBJECTIVE = "val_data_loss"
"""What every fit is scored on: the last epoch's validation data loss."""

_INDEX, _SEED = "factor_search/index", "factor_search/seed"
_MODEL = "factor_search.keras"


class FactorSearchOracle(keras_tuner.Oracle):
    """Successive halving over the penalty factor, as a KerasTuner oracle.

    The schedule of `keras_scaled_l2.search_factor`, one fit per trial: a
    trial's hyperparameters hold `factor` (the model's penalty factor),
    `tuner/epochs` and `tuner/initial_epoch` (where the fit starts and
    stops), and for a continued fit `tuner/trial_id` (the trial whose
    weights it continues). Run it with `FactorTuner`, whose build function
    reads `hp.get("factor")`. `get_best_hyperparameters()` gives the chosen
    factor first, the best of the full fits (not a short fit's score).

    Examples:
        >>> oracle = FactorSearchOracle(epochs=9, num_factors=5)
        >>> oracle.objective.name
        'val_data_loss'

    Args:
        epochs: The length of a full fit.
        prior: The grid's centre. Defaults to `0.01`.
        num_factors: Factors in the grid before widening. Defaults to `5`.
        step: The ratio between neighbouring factors. Defaults to
            `sqrt(10)`.
        reduction: From each rung, one factor in `reduction` goes on.
            Defaults to `2`.
        num_rungs: Fit lengths, the last being `epochs`. Defaults to `2`.
        seeds: Seeds for the best factor and its neighbours fitted in
            full. Defaults to `1`. The workers report one score a fit, not
            per-row losses, so unlike `search_factor` the oracle cannot
            measure the validation noise: it fits every finalist with
            every seed.
        budget: The most epochs the search may train, over every fit.
            Defaults to the halving's plan plus two full fits.
        **kwargs: Passed to `keras_tuner.Oracle` (e.g. `seed`); not
            `objective`, `hyperparameters` or `max_trials`, which the
            search sets.
    """

    def __init__(
        self,
        epochs: int,
        prior: float = 0.01,
        num_factors: int = 5,
        step: float = math.sqrt(10.0),
        reduction: int = 2,
        num_rungs: int = 2,
        seeds: int = 1,
        budget: int | None = None,
        **kwargs: Any,
    ) -> None:
        for name in ("objective", "hyperparameters", "max_trials"):
            if name in kwargs:
                raise invalid_argument(
                    name, "not given: the factor search sets it", kwargs[name]
                )
        self.plan, self.prior, self.step = _plan_and_grid(
            epochs,
            prior,
            num_factors,
            step,
            reduction,
            num_rungs,
            seeds,
            budget,
        )
        hyperparameters = keras_tuner.HyperParameters()
        reach = self.plan.widen_steps * self.plan.max_widenings
        indices = self.plan.initial_indices
        hyperparameters.Float(
            "factor",
            self._factor(indices[0] - reach - 1),
            self._factor(indices[-1] + reach + 1),
            sampling="log",
        )
        super().__init__(
            objective=keras_tuner.Objective(OBJECTIVE, "min"),
            hyperparameters=hyperparameters,
            **kwargs,
        )

    def _factor(self, index):
        return float(_halving.factor_of(self.prior, self.step, index))

    def _state(self):
        """The schedule's records and running fits, read off the trials."""
        records, running = [], []
        for trial in self.trials.values():
            values = trial.hyperparameters.values
            if _INDEX not in values:
                continue
            index, seed = int(values[_INDEX]), int(values[_SEED])
            epochs = int(values["tuner/epochs"])
            status = trial.status
            if status == keras_tuner.engine.trial.TrialStatus.COMPLETED:
                collapsed = trial.metrics.exists("collapsed") and bool(
                    trial.metrics.get_last_value("collapsed")
                )
                records.append(
                    _halving.Record(index, seed, epochs, trial.score, collapsed)
                )
            elif status == keras_tuner.engine.trial.TrialStatus.FAILED:
                records.append(
                    _halving.Record(index, seed, epochs, math.inf, False)
                )
            elif trial.trial_id in {
                t.trial_id for t in self.ongoing_trials.values()
            }:
                running.append(
                    _halving.Fit(
                        index,
                        seed,
                        epochs,
                        int(values["tuner/initial_epoch"]),
                    )
                )
        return records, running

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        records, running = self._state()
        decision = _halving.next_fits(self.plan, records, running)
        if decision.done:
            return {"status": keras_tuner.engine.trial.TrialStatus.STOPPED}
        if not decision.fits:
            return {"status": keras_tuner.engine.trial.TrialStatus.IDLE}
        fit = decision.fits[0]
        values: dict[str, Any] = {
            "factor": self._factor(fit.grid_index),
            _INDEX: int(fit.grid_index),
            _SEED: int(fit.seed),
            "tuner/epochs": int(fit.epochs),
            "tuner/initial_epoch": int(fit.initial_epoch),
        }
        if fit.initial_epoch:
            values["tuner/trial_id"] = self._trial_id(
                fit.grid_index, fit.seed, fit.initial_epoch
            )
        return {
            "status": keras_tuner.engine.trial.TrialStatus.RUNNING,
            "values": values,
        }

    def _trial_id(self, index, seed, epochs):
        for trial in self.trials.values():
            values = trial.hyperparameters.values
            if (
                trial.status == keras_tuner.engine.trial.TrialStatus.COMPLETED
                and values.get(_INDEX) == index
                and values.get(_SEED) == seed
                and values.get("tuner/epochs") == epochs
            ):
                return trial.trial_id
        raise KeyError((index, seed, epochs))

    def score_trial(self, trial: keras_tuner.engine.trial.Trial) -> None:
        trial.score = trial.metrics.get_last_value(OBJECTIVE)
        trial.best_step = trial.metrics.get_best_step(OBJECTIVE)

    @keras_tuner.synchronized
    def get_best_trials(
        self, num_trials: int = 1
    ) -> list[keras_tuner.engine.trial.Trial]:
        """The chosen factor's full fit first, then the other full fits.

        Before the search is done: KerasTuner's ranking by score.
        """
        records, running = self._state()
        decision = _halving.next_fits(self.plan, records, running)
        if not decision.done or decision.chosen is None:
            return super().get_best_trials(num_trials)
        full = [
            trial
            for trial in self.trials.values()
            if trial.hyperparameters.values.get("tuner/epochs")
            == self.plan.epochs
            and trial.hyperparameters.values.get(_SEED) == 0
            and trial.score is not None
        ]
        full.sort(
            key=lambda trial: (
                trial.hyperparameters.values[_INDEX] != decision.chosen,
                trial.score,
            )
        )
        return full[:num_trials]

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["factor_search"] = self._settings()
        return state

    def _settings(self):
        return {
            "prior": self.prior,
            "step": self.step,
            "plan": dataclasses.asdict(self.plan),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        saved = state.get("factor_search")
        if saved is not None and saved != self._settings():
            raise invalid_argument(
                "directory",
                "a project of a search with these settings "
                f"({self._settings()}), or `overwrite=True`; it holds "
                f"{saved}",
                shown("<the tuner's project>"),
            )


class FactorTuner(keras_tuner.Tuner):
    """Runs the fits a `FactorSearchOracle` asks for.

    Each trial builds the model for `hp.get("factor")` (after
    `keras.utils.set_random_seed`, so every factor of a seed starts from
    the same weights), or reloads the model of the trial it continues,
    optimizer state included (`keras_scaled_l2.load_model`: custom layers
    must be registered); fits from `tuner/initial_epoch` to `tuner/epochs`
    with `PenaltyLogger` and `CollapseMonitor` added to the callbacks;
    saves the model for a later rung; and reports the last epoch's
    `val_data_loss` and whether the predictions collapsed.

    Examples:
        >>> import tempfile
        >>> tuner = FactorTuner(
        ...     FactorSearchOracle(epochs=9),
        ...     hypermodel=lambda hp: None,
        ...     directory=tempfile.mkdtemp(),
        ... )
        >>> tuner.oracle.objective.name
        'val_data_loss'

    Args:
        oracle: A `FactorSearchOracle`.
        hypermodel: A function of `hp` (or a `keras_tuner.HyperModel`)
            that returns a compiled model whose penalty uses
            `hp.get("factor")`.
        **kwargs: Passed to `keras_tuner.Tuner` (`directory`,
            `project_name`, `overwrite`, ...).
    """

    def __init__(
        self,
        oracle: FactorSearchOracle,
        hypermodel: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(oracle, FactorSearchOracle):
            raise invalid_argument(
                "oracle", "a FactorSearchOracle", type(oracle).__name__
            )
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

    def load_model(self, trial: keras_tuner.engine.trial.Trial) -> keras.Model:
        """The model a trial's fit ended with (for `get_best_models`)."""
        return load_model(
            os.path.join(self.get_trial_dir(trial.trial_id), _MODEL)
        )

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        """`keras_tuner.Tuner.search`, refusing to start without
        `validation_data` (every fit is scored on it)."""
        if fit_kwargs.get("validation_data") is None:
            raise invalid_argument(
                "validation_data",
                "(x_val, y_val): each fit is scored on held-out data",
                None,
            )
        super().search(*fit_args, **fit_kwargs)

    def run_trial(
        self, trial: keras_tuner.engine.trial.Trial, *args: Any, **kwargs: Any
    ) -> dict[str, float]:
        values = trial.hyperparameters.values
        validation = kwargs["validation_data"]
        keras.backend.clear_session()
        if "tuner/trial_id" in values:
            # The whole model, optimizer state included: the fit goes on
            # as if it had never stopped.
            model = load_model(
                os.path.join(
                    self.get_trial_dir(values["tuner/trial_id"]), _MODEL
                )
            )
        else:
            keras.utils.set_random_seed(_halving.build_seed(int(values[_SEED])))
            model = self.hypermodel.build(trial.hyperparameters)
        if not isinstance(model, keras.Model) or not model.compiled:
            # A fatal error: KerasTuner would otherwise retry the trial.
            raise keras_tuner.errors.FatalValueError(
                str(
                    invalid_argument(
                        "hypermodel",
                        "a function of `hp` that returns a compiled "
                        "keras.Model",
                        type(model).__name__,
                    )
                )
            )
        validate_factor(values["factor"], "factor")
        monitor = _collapse_monitor(validation[0])
        kwargs["callbacks"] = [
            *kwargs.get("callbacks", []),
            PenaltyLogger(),
            monitor,
        ]
        kwargs["epochs"] = int(values["tuner/epochs"])
        kwargs["initial_epoch"] = int(values["tuner/initial_epoch"])
        keras.utils.set_random_seed(
            _halving.fit_seed(
                _halving.Fit(
                    int(values[_INDEX]),
                    int(values[_SEED]),
                    kwargs["epochs"],
                    kwargs["initial_epoch"],
                )
            )
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CollapseWarning)
            history = self.hypermodel.fit(
                trial.hyperparameters, model, *args, **kwargs
            )
        os.makedirs(self.get_trial_dir(trial.trial_id), exist_ok=True)
        # Every fit's model: a later rung continues it, and `load_model`
        # (`get_best_models`) returns it.
        model.save(os.path.join(self.get_trial_dir(trial.trial_id), _MODEL))
        score = float(history.history[OBJECTIVE][-1])
        return {
            OBJECTIVE: score if math.isfinite(score) else math.inf,
            "collapsed": float(monitor.collapsed_epoch is not None),
        }
