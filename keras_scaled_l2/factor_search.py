"""`search_factor`: which penalty factor for this model and this data.

Successive halving over a log grid of factors centred on a prior, scored on
the validation *data* loss (Keras's `val_loss` adds the penalty, which
favours small factors), with short fits for many factors and full fits for
few. The schedule itself lives in `_halving` and is shared with the
KerasTuner oracle (`keras_scaled_l2.tuner`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import keras
import numpy as np

from keras_scaled_l2 import _halving
from keras_scaled_l2._validation import (
    invalid_argument,
    is_bool,
    shown,
    validate_factor,
)
from keras_scaled_l2._warnings import warn_at_caller
from keras_scaled_l2.attach import attach_regularizer
from keras_scaled_l2.collapse_monitor import CollapseMonitor, CollapseWarning
from keras_scaled_l2.penalty_logger import PenaltyLogger

__all__ = ["FactorRow", "FactorSearchResult", "search_factor"]

_STATE_FILE = "factor_search.json"
_PROBE_ROWS = 256
_BOOTSTRAP_SAMPLES = 1000


class FactorRow(NamedTuple):
    """One factor of a search: how far it was fitted, and its score.

    `val_data_loss` is that of its longest fit (the mean over the seeds
    fitted that long); `epochs` is how long that was.

    Examples:
        >>> row = FactorRow(0.01, 30, 1, 0.52, False, True)
        >>> row.factor, row.in_plateau
        (0.01, True)
    """

    factor: float
    epochs: int
    seeds: int
    val_data_loss: float
    collapsed: bool
    in_plateau: bool


class FactorSearchResult:
    """What `search_factor` found.

    Attributes:
        factor: The chosen factor: the best mean validation data loss among
            the factors fitted in full.
        plateau: `(low, high)`, the smallest and largest factor fitted in
            full that the validation noise cannot tell from `factor` (a
            paired bootstrap over validation rows, and seeds where there
            are several, of the difference in data loss; 95 %).
        table: A `FactorRow` per factor fitted, smallest factor first.
        epochs_spent: Epochs trained over every fit.
        grid_epochs: Epochs a full grid over the same factors would take:
            one full fit per factor and seed.
        cliff: The smallest factor whose fit collapsed, or `None`.
        records: Every fit: grid index, seed, epochs, score, collapse.
        rungs: The epochs each rung trains to.

    Args:
        factor: See the attribute.
        plateau: See the attribute.
        table: See the attribute.
        epochs_spent: See the attribute.
        grid_epochs: See the attribute.
        cliff: See the attribute.
        records: See the attribute.
        rungs: See the attribute.
        prior: The grid's centre, factor of index 0.
        step: The ratio between neighbouring factors of the grid.

    Examples:
        >>> result = FactorSearchResult(
        ...     factor=0.01, plateau=(0.01, 0.0316),
        ...     table=[FactorRow(0.01, 30, 1, 0.52, False, True)],
        ...     epochs_spent=120, grid_epochs=150, cliff=None, records=[],
        ...     rungs=[15, 30], prior=0.01, step=10**0.5,
        ... )
        >>> result
        FactorSearchResult(factor=0.01, plateau=(0.01, 0.0316), \
epochs_spent=120, grid_epochs=150)
        >>> print(result.format_table())
            factor epochs seeds val_data_loss  note
              0.01     30     1          0.52  chosen
    """

    def __init__(
        self,
        factor: float,
        plateau: tuple[float, float],
        table: list[FactorRow],
        epochs_spent: int,
        grid_epochs: int,
        cliff: float | None,
        records: list[_halving.Record],
        rungs: list[int],
        prior: float,
        step: float,
    ) -> None:
        self.factor = factor
        self.plateau = plateau
        self.table = table
        self.epochs_spent = epochs_spent
        self.grid_epochs = grid_epochs
        self.cliff = cliff
        self.records = records
        self.rungs = rungs
        self._prior = prior
        self._step = step

    def __repr__(self) -> str:
        low, high = self.plateau
        return (
            f"FactorSearchResult(factor={self.factor:.3g}, "
            f"plateau=({low:.3g}, {high:.3g}), "
            f"epochs_spent={self.epochs_spent}, "
            f"grid_epochs={self.grid_epochs})"
        )

    def format_table(self) -> str:
        """The per-factor table as text, one row per factor."""
        lines = [
            f"{'factor':>10} {'epochs':>6} {'seeds':>5} "
            f"{'val_data_loss':>13}  note"
        ]
        for row in self.table:
            notes = []
            if row.factor == self.factor:
                notes.append("chosen")
            elif row.in_plateau:
                notes.append("plateau")
            if row.collapsed:
                notes.append("collapsed")
            lines.append(
                f"{row.factor:>10.3g} {row.epochs:>6d} {row.seeds:>5d} "
                f"{row.val_data_loss:>13.5g}  {', '.join(notes)}"
            )
        return "\n".join(lines)

    def plot(self, ax: Any = None) -> Any:
        """Plots the validation data loss of every fit against the factor.

        One line per rung (fit length), the chosen factor starred, the
        plateau shaded and a collapse marked. Needs matplotlib.

        Args:
            ax: A matplotlib `Axes` to draw on. Defaults to a new figure's.

        Returns:
            The `Axes`.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError(
                "FactorSearchResult.plot needs matplotlib: "
                "pip install matplotlib"
            ) from error
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        for epochs in self.rungs + sorted(
            {r.epochs for r in self.records} - set(self.rungs)
        ):
            points = _mean_scores(self.records, epochs)
            if not points:
                continue
            factors = [self._factor(i) for i in sorted(points)]
            scores = [points[i] for i in sorted(points)]
            ax.plot(factors, scores, "o-", label=f"{epochs} epochs")
        ax.axvspan(
            *self.plateau, color="tab:green", alpha=0.15, label="plateau"
        )
        best = min(
            (row for row in self.table if row.factor == self.factor),
            key=lambda row: row.val_data_loss,
        )
        ax.plot(
            [best.factor],
            [best.val_data_loss],
            "*",
            color="black",
            markersize=14,
            label="chosen",
        )
        if self.cliff is not None:
            ax.axvline(
                self.cliff, color="tab:red", linestyle="--", label="collapse"
            )
        ax.set_xscale("log")
        ax.set_xlabel("factor")
        ax.set_ylabel("validation data loss")
        ax.legend(fontsize="small")
        return ax

    def _factor(self, index):
        return _halving.factor_of(self._prior, self._step, index)


def search_factor(
    build_model: Callable[[float], keras.Model] | keras.Model,
    x: Any,
    y: Any = None,
    *,
    validation_data: tuple[Any, ...] | None = None,
    epochs: int = 30,
    prior: float = 0.01,
    regularizer: Callable[[float], keras.regularizers.Regularizer]
    | None = None,
    budget: int | None = None,
    num_factors: int = 5,
    step: float = math.sqrt(10.0),
    reduction: int = 2,
    num_rungs: int = 2,
    seeds: int = 1,
    batch_size: int | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    directory: str | os.PathLike | None = None,
    verbose: int = 1,
) -> FactorSearchResult:
    """Searches the penalty factor on the validation data loss.

    Every grid factor, `prior * step**i` for `i` around 0, is fitted for
    `epochs / reduction**(num_rungs - 1)` epochs; the best and the next
    larger factors, `ceil(n / reduction)` of them, are continued to the
    next rung, and so on up to `epochs` (successive halving). Short fits
    favour factors that are too small (a penalty pays off once the network
    starts to overfit), so the factors kept reach *up* from a short fit's
    best. The grid widens while the best lies at an edge, and a factor
    whose predictions collapse to a constant (`CollapseMonitor`) marks a
    cliff: nothing at or above it is fitted again or chosen. With
    `seeds > 1`, where the plateau is wider than the best factor (its
    neighbours fitted in full are within the validation noise of it, by a
    paired bootstrap over the rows), those factors are fitted again with up
    to `seeds - 1` other seeds and the best mean wins; a best factor that
    stands out beyond the noise keeps its one seed. Every fit is scored on
    the validation **data** loss (`PenaltyLogger`'s `data_loss` in
    `evaluate`), never on `val_loss`, which adds the penalty.

    By default: five factors for half the epochs, the best three of them
    on to the end, 4 full fits' worth of epochs where a grid of the same
    five factors takes 5 (and the transfer study's grids of nine, 9); the
    budget is that plan plus two full fits, for widening.

    Examples:
        >>> import numpy as np
        >>> from keras_scaled_l2 import ScaledL2
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(256, 8))
        >>> y = x[:, :1] + rng.normal(size=(256, 1))
        >>> def build(factor):
        ...     model = keras.Sequential([
        ...         keras.Input((8,)),
        ...         keras.layers.Dense(16, activation="relu",
        ...                            kernel_regularizer=ScaledL2(factor)),
        ...         keras.layers.Dense(1, kernel_regularizer=ScaledL2(factor)),
        ...     ])
        ...     model.compile("adam", "mse")
        ...     return model
        >>> result = search_factor(
        ...     build, x[:192], y[:192], validation_data=(x[192:], y[192:]),
        ...     epochs=3, num_factors=3, verbose=0,
        ... )
        >>> result.plateau[0] <= result.factor <= result.plateau[1]
        True

    Args:
        build_model: A function that takes a factor and returns a compiled
            model whose penalty uses it; or a compiled model, copied for
            each factor (new weights), with `regularizer(factor)` attached
            by `attach_regularizer`.
        x: Training inputs, as `model.fit` takes them.
        y: Training targets, as `model.fit` takes them. Defaults to `None`.
        validation_data: `(x_val, y_val)` (or with sample weights), as
            `model.evaluate` takes them. Required.
        epochs: The length of a full fit. Defaults to `30`.
        prior: The grid's centre: the best factor of a smaller model, or
            the package's default. Defaults to `0.01`.
        regularizer: With a model as `build_model`: a function from a
            factor to a regularizer, e.g. `ScaledL2`. Defaults to `None`.
        budget: The most epochs the search may train, over every fit.
            Defaults to the halving's plan plus two full fits.
        num_factors: Factors in the grid before widening. Defaults to `5`.
        step: The ratio between neighbouring factors. Defaults to
            `sqrt(10)` (half a decade).
        reduction: From each rung, one factor in `reduction` goes on.
            Defaults to `2`.
        num_rungs: Fit lengths, the last being `epochs`. Defaults to `2`.
        seeds: The most seeds for the best factor and the neighbours the
            noise cannot tell from it. Defaults to `1`.
        batch_size: As in `model.fit`. Defaults to `None`.
        callbacks: More callbacks for every fit. Defaults to none.
        directory: A folder to keep the search's state in: a search
            started again with the same settings resumes where it stopped.
            Defaults to `None` (nothing kept).
        verbose: `1` prints a line per fit, `0` nothing. Defaults to `1`.

    Returns:
        A `FactorSearchResult`.
    """
    if not isinstance(validation_data, (tuple, list)) or len(
        validation_data
    ) not in (2, 3):
        raise invalid_argument(
            "validation_data",
            "(x_val, y_val) or (x_val, y_val, sample_weight): the search "
            "scores each factor on held-out data",
            validation_data,
        )
    builder = _builder(build_model, regularizer)
    plan, prior, step = _plan_and_grid(
        epochs, prior, num_factors, step, reduction, num_rungs, seeds, budget
    )
    if verbose not in (0, 1) or is_bool(verbose):
        raise invalid_argument("verbose", "0 or 1", verbose)
    run = _Search(
        builder,
        plan,
        prior,
        step,
        x,
        y,
        validation_data,
        batch_size,
        list(callbacks),
        directory,
        verbose,
    )
    return run.result()


class _Search:
    """Runs the fits the schedule asks for, one at a time, and keeps them."""

    def __init__(
        self,
        build,
        plan,
        prior,
        step,
        x,
        y,
        validation_data,
        batch_size,
        callbacks,
        directory,
        verbose,
    ):
        self.build, self.plan = build, plan
        self.prior, self.step = prior, step
        self.x, self.y = x, y
        self.validation = tuple(validation_data)
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.directory = directory
        self.verbose = verbose
        self.models = {}
        self.losses = {}
        self.built_penalties = []
        self.records = self._resume()

    def settings(self):
        return {
            "prior": self.prior,
            "step": self.step,
            "plan": {
                name: getattr(self.plan, name)
                for name in (
                    "epochs",
                    "num_factors",
                    "reduction",
                    "num_rungs",
                    "seeds",
                    "widen_steps",
                    "max_widenings",
                    "budget",
                )
            },
        }

    def _path(self, name):
        return os.path.join(self.directory, name)

    def _resume(self):
        if self.directory is None:
            return []
        os.makedirs(self.directory, exist_ok=True)
        path = self._path(_STATE_FILE)
        if not os.path.exists(path):
            return []
        with open(path) as file:
            state = json.load(file)
        if state["settings"] != self.settings():
            raise invalid_argument(
                "directory",
                "a new folder, or one whose search has the same settings "
                f"(it holds a search with {state['settings']})",
                os.fspath(self.directory),
            )
        return [_halving.Record(*record) for record in state["records"]]

    def _save(self):
        if self.directory is None:
            return
        path = self._path(_STATE_FILE)
        with open(path + ".tmp", "w") as file:
            json.dump(
                {
                    "settings": self.settings(),
                    "records": [list(r) for r in self.records],
                },
                file,
            )
        os.replace(path + ".tmp", path)

    def result(self):
        decision = _halving.run_in_turn(
            self.plan,
            self._run,
            self.records,
            lambda _: self._save(),
            tied=self._tied,
        )
        self.models.clear()
        if decision.chosen is None:
            raise RuntimeError(
                "search_factor: every factor fitted collapsed or diverged; "
                "try a smaller `prior`"
            )
        result = self._result(decision)
        if self._at_open_edge(decision.chosen):
            warn_at_caller(
                f"search_factor: the chosen factor {result.factor:.3g} lies "
                "at the edge of the factors fitted in full, and the budget "
                f"({self.plan.total_budget} epochs) or the grid's reach "
                "ran out before the search could look past it: the best "
                "may lie beyond. Search again with `prior="
                f"{result.factor:.3g}` or a larger `budget`."
            )
        return result

    def _at_open_edge(self, chosen):
        """Whether `chosen` is the smallest or largest factor fitted in full
        with its outer neighbour neither fitted in full nor past a cliff."""
        full = {
            r.grid_index for r in self.records if r.epochs == self.plan.epochs
        }
        cliff = min(
            (r.grid_index for r in self.records if r.collapsed),
            default=math.inf,
        )
        if len(full) < 2:
            return False
        return (chosen == min(full)) or (
            chosen == max(full) and chosen + 1 < cliff
        )

    def _run(self, fit):
        factor = _halving.factor_of(self.prior, self.step, fit.grid_index)
        model = self._model(fit, factor)
        monitor = _collapse_monitor(self.validation[0])
        keras.utils.set_random_seed(_halving.fit_seed(fit))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CollapseWarning)
            model.fit(
                self.x,
                self.y,
                epochs=fit.epochs,
                initial_epoch=fit.initial_epoch,
                batch_size=self.batch_size,
                callbacks=[monitor, *self.callbacks],
                verbose=0,
            )
        score = _data_loss(model, self.validation, self.batch_size)
        collapsed = monitor.collapsed_epoch is not None
        self._keep(fit, model)
        losses = _per_row_losses(model, self.validation, self.batch_size)
        if losses is not None and fit.epochs == self.plan.epochs:
            self.losses[(fit.grid_index, fit.seed)] = losses
            if self.directory is not None:
                np.save(self._path(_name(fit, "npy")), losses)
        record = _halving.Record(
            fit.grid_index, fit.seed, fit.epochs, score, collapsed
        )
        if self.verbose:
            spent = _halving.epochs_spent([*self.records, record])
            print(
                f"factor {factor:.3g} seed {fit.seed} epochs "
                f"{fit.initial_epoch}->{fit.epochs}: val_data_loss "
                f"{score:.5g}{' (collapsed)' if collapsed else ''}  "
                f"[{spent}/{self.plan.total_budget} epochs]",
                flush=True,
            )
        return record

    def _model(self, fit, factor):
        key = (fit.grid_index, fit.seed)
        if fit.initial_epoch:
            if key in self.models:
                return self.models.pop(key)
            if self.directory is not None:
                from keras_scaled_l2.saving import load_model

                return load_model(
                    self._path(_name(fit, "keras", fit.initial_epoch))
                )
        # As KerasTuner builds each trial: a clean session, then the seed.
        keras.backend.clear_session()
        keras.utils.set_random_seed(_halving.build_seed(fit.seed))
        model = self.build(factor)
        self._check_built(model, factor)
        return model

    def _check_built(self, model, factor):
        if not isinstance(model, keras.Model) or not model.compiled:
            raise invalid_argument(
                "build_model",
                "a function that returns a compiled keras.Model",
                shown(f"<function returning {_described(model)}>"),
            )
        if len(self.built_penalties) >= 2 or not model.built:
            # An unbuilt model (no `keras.Input`) has no penalty to read yet.
            return
        self.built_penalties.append((factor, _total_penalty(model)))
        if len(self.built_penalties) == 2:
            (f1, p1), (f2, p2) = self.built_penalties
            if p1 == p2:
                raise invalid_argument(
                    "build_model",
                    "a model whose penalty changes with the factor (the "
                    f"models built for {f1:.3g} and {f2:.3g} both have a "
                    f"penalty of {p1:.6g}; pass the factor to the "
                    "regularizer)",
                    shown("<build_model>"),
                )

    def _keep(self, fit, model):
        """Keeps a model whose fit a later rung may continue."""
        if fit.epochs >= self.plan.epochs:
            return
        self.models[(fit.grid_index, fit.seed)] = model
        if self.directory is not None:
            model.save(self._path(_name(fit, "keras")))

    def _row_losses(self, index, seed):
        key = (index, seed)
        if key not in self.losses and self.directory is not None:
            path = self._path(f"fit_{index}_{seed}_{self.plan.epochs}.npy")
            if os.path.exists(path):
                self.losses[key] = np.load(path)
        return self.losses.get(key)

    def _result(self, decision):
        final = self.plan.epochs
        chosen = decision.chosen
        full = sorted({r.grid_index for r in self.records if r.epochs == final})
        cliff_index = min(
            (r.grid_index for r in self.records if r.collapsed), default=None
        )
        if self._row_losses(chosen, 0) is None:
            warn_at_caller(
                "search_factor: no per-row validation loss (several losses, "
                "sample weights, or a loss Keras cannot give per row), so "
                "the plateau holds the chosen factor alone: the noise "
                "around it is not measured. Compare the table's scores "
                "with care."
            )
        seeds = sorted(
            {
                r.seed
                for r in self.records
                if r.grid_index == chosen and r.epochs == final
            }
        )
        plateau = [
            i
            for i in full
            if (cliff_index is None or i < cliff_index)
            and not self._distinguishable(i, chosen, seeds)
        ]
        factor = self._factor_of
        table = []
        for index in sorted({r.grid_index for r in self.records}):
            longest = max(
                r.epochs for r in self.records if r.grid_index == index
            )
            scores = [
                r.score
                for r in self.records
                if r.grid_index == index and r.epochs == longest
            ]
            table.append(
                FactorRow(
                    factor(index),
                    longest,
                    len(scores),
                    float(np.mean(scores)),
                    any(
                        r.collapsed
                        for r in self.records
                        if r.grid_index == index
                    ),
                    index in plateau,
                )
            )
        spent = _halving.epochs_spent(self.records)
        return FactorSearchResult(
            factor=factor(chosen),
            plateau=(factor(min(plateau)), factor(max(plateau))),
            table=table,
            epochs_spent=spent,
            grid_epochs=len(table) * final * self.plan.seeds,
            cliff=None if cliff_index is None else factor(cliff_index),
            records=list(self.records),
            rungs=self.plan.rungs,
            prior=self.prior,
            step=self.step,
        )

    def _factor_of(self, index):
        return _halving.factor_of(self.prior, self.step, index)

    def _tied(self, best, finalists):
        """The finalists that seed 0's validation noise cannot tell from
        `best`: those that more seeds should decide between. Without
        per-row losses the noise is unknown, and every finalist is."""
        if self._row_losses(best, 0) is None:
            return finalists
        return [i for i in finalists if not self._distinguishable(i, best, [0])]

    def _distinguishable(self, index, chosen, seeds):
        """Whether `index` is worse than `chosen` beyond the noise (95 %),
        on the seeds both have; a factor without per-row losses, or with
        losses that are not finite, is told apart."""
        if index == chosen:
            return False
        rows = [
            (self._row_losses(index, s), self._row_losses(chosen, s))
            for s in seeds
        ]
        rows = [(a, b) for a, b in rows if a is not None and b is not None]
        if not rows:
            return True
        differences = np.stack([a - b for a, b in rows])
        if not np.all(np.isfinite(differences)):
            return True
        return bool(_paired_lower_bound(differences) > 0)


def _paired_lower_bound(
    differences: np.ndarray, samples: int = _BOOTSTRAP_SAMPLES
) -> float:
    """The 2.5 % point of a bootstrap of a mean paired difference.

    `differences[seed, row]`: resampled over the rows and, with several
    seeds, over the seeds too (the same draw for the whole array).
    """
    differences = np.asarray(differences, dtype=np.float64)
    rng = np.random.default_rng(0)
    num_seeds, num_rows = differences.shape
    means = np.empty(samples)
    for sample in range(samples):
        seeds = (
            rng.integers(num_seeds, size=num_seeds)
            if num_seeds > 1
            else np.zeros(1, dtype=int)
        )
        rows = rng.integers(num_rows, size=num_rows)
        means[sample] = differences[np.ix_(seeds, rows)].mean()
    return float(np.percentile(means, 2.5))


def _total_penalty(model):
    # Through numpy: a PyTorch penalty carries a gradient.
    return float(
        sum(
            np.sum(keras.ops.convert_to_numpy(penalty))
            for penalty in model.losses
        )
    )


def _described(model):
    if isinstance(model, keras.Model):
        return f"an uncompiled {type(model).__name__}"
    return f"a {type(model).__name__}"


def _mean_scores(records, epochs):
    by_index = {}
    for record in records:
        if record.epochs == epochs and record.seed == 0:
            by_index[record.grid_index] = record.score
    return by_index


def _name(fit, extension, epochs=None):
    """The file of a fit's model or losses after `epochs` (its own)."""
    epochs = fit.epochs if epochs is None else epochs
    return f"fit_{fit.grid_index}_{fit.seed}_{epochs}.{extension}"


def _collapse_monitor(x_val):
    """The `CollapseMonitor` of one fit: its probe, the first validation
    rows (both drivers use it)."""
    return CollapseMonitor(
        keras.tree.map_structure(lambda leaf: leaf[:_PROBE_ROWS], x_val)
    )


def _data_loss(model, validation, batch_size):
    x_val, y_val, *weights = validation
    logs = model.evaluate(
        x_val,
        y_val,
        sample_weight=weights[0] if weights else None,
        batch_size=batch_size,
        callbacks=[PenaltyLogger()],
        return_dict=True,
        verbose=0,
    )
    score = float(logs["data_loss"])
    return score if math.isfinite(score) else math.inf


def _per_row_losses(model, validation, batch_size):
    """The compiled loss per validation row, for the plateau's bootstrap.

    `None` for what a per-row loss cannot stand for: several losses,
    sample weights, or a loss whose per-row mean is not its value.
    """
    x_val, y_val, *weights = validation
    if weights or isinstance(model.loss, (list, tuple, dict)):
        return None
    loss = keras.losses.get(model.loss)
    if loss is None:
        return None
    predictions = model.predict(x_val, batch_size=batch_size, verbose=0)
    y_true = keras.ops.convert_to_tensor(np.asarray(y_val))
    values = (
        loss.call(y_true, predictions)
        if isinstance(loss, keras.losses.Loss)
        else loss(y_true, predictions)
    )
    values = np.asarray(keras.ops.convert_to_numpy(values), dtype=np.float64)
    values = values.reshape(len(values), -1).mean(axis=1)
    return values


def _builder(build_model, regularizer):
    if isinstance(build_model, keras.Model):
        if regularizer is None or not callable(regularizer):
            raise invalid_argument(
                "regularizer",
                "a function from a factor to a regularizer (e.g. ScaledL2) "
                "when `build_model` is a model",
                regularizer,
            )
        if not build_model.compiled:
            raise invalid_argument(
                "build_model",
                "a compiled keras.Model, or a function returning one",
                shown(f"<uncompiled {type(build_model).__name__}>"),
            )
        return _attaching(build_model, regularizer)
    if not callable(build_model):
        raise invalid_argument(
            "build_model",
            "a function from a factor to a compiled keras.Model, or a "
            "compiled keras.Model",
            build_model,
        )
    if regularizer is not None:
        raise invalid_argument(
            "regularizer",
            "None when `build_model` is a function (it sets the penalty)",
            regularizer,
        )
    return build_model


def _attaching(model, regularizer):
    compile_config = model.get_compile_config()

    def build(factor):
        copy = keras.models.clone_model(model)
        copy.compile_from_config(compile_config)
        attach_regularizer(copy, regularizer(factor))
        return copy

    return build


def _plan_and_grid(
    epochs, prior, num_factors, step, reduction, num_rungs, seeds, budget
):
    """The checked `Plan`, prior and step of a search (both drivers')."""
    prior = validate_factor(prior, "prior")
    if prior == 0:
        raise invalid_argument("prior", "a positive factor", prior)
    step = validate_factor(step, "step")
    if not step > 1:
        raise invalid_argument("step", "a float greater than 1", step)
    plan = _halving.Plan(
        epochs=_positive_int(epochs, "epochs"),
        num_factors=_positive_int(num_factors, "num_factors"),
        reduction=_positive_int(reduction, "reduction", minimum=2),
        num_rungs=_positive_int(num_rungs, "num_rungs"),
        seeds=_positive_int(seeds, "seeds"),
        budget=None if budget is None else _positive_int(budget, "budget"),
    )
    _halving.check_plan(plan)
    return plan, prior, step


def _positive_int(value, name, minimum=1):
    if (
        is_bool(value)
        or not isinstance(value, (int, np.integer))
        or (value < minimum)
    ):
        raise invalid_argument(name, f"an integer of at least {minimum}", value)
    return int(value)
