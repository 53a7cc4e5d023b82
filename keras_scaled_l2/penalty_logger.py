"""`PenaltyLogger`: the data loss and the penalty, logged apart, exactly."""

import warnings
from typing import Any

import keras
from keras import ops

from keras_scaled_l2 import _keras_internals
from keras_scaled_l2._layer_names import layer_namer
from keras_scaled_l2._validation import validate_flag

Logs = dict[str, Any]
"""What Keras passes to a callback hook: metric names to values."""

OTHER_LOSSES = "(other)"
"""Per-layer key suffix for `add_loss` and activity-regularizer terms."""


class PenaltyLogger(keras.callbacks.Callback):
    """Logs `data_loss` and `penalty`, the two parts of Keras's `loss`.

    Keras's `loss` (and `val_loss`) is the compiled loss plus every penalty:
    weight regularizers, activity regularizers and `add_loss` terms. Passed
    to `fit`, this callback adds, per epoch:

    - `penalty`: the mean of the penalty Keras added into `loss`, weighted
      over the steps exactly as Keras weights `loss` (by batch size);
    - `data_loss`: `loss` without the penalty, i.e. the compiled loss alone;
    - `val_penalty`, `val_data_loss`: the same on validation data;
    - with `per_layer=True`, `penalty/<layer>` for each layer that owns
      regularized weights (nested layers by their path, a shared weight
      counted once), plus `penalty/(other)` for `add_loss` and activity
      terms; these sum to `penalty`.

    `data_loss + penalty == loss`. The values are recorded inside each train
    and test step from the very terms Keras sums, not recomputed, so they
    hold with partial batches, `steps_per_execution`, `tf.distribute` and
    `keras.distribution`. They are model metrics while `fit` runs, so
    `History`, `CSVLogger`, `TensorBoard` and the progress bar show them
    wherever the logger stands in the callbacks list. When `fit` ends the
    model is left as it was (nothing of the logger is saved with it).

    Keras does not call `on_train_end` when a fit ends with an exception or
    a `KeyboardInterrupt`; the next `fit`, `evaluate`, `train_on_batch` or
    `test_on_batch` that runs without a logger then first puts the model
    back as it was found, and logs no `data_loss`.

    Requires Keras's own `Model.compute_loss` (a custom `train_step` that
    calls it is fine); with an overridden `compute_loss` the logger warns
    and logs nothing.

    Examples:
        >>> import numpy as np
        >>> from keras_scaled_l2 import ScaledL2
        >>> model = keras.Sequential([
        ...     keras.Input((4,)),
        ...     keras.layers.Dense(1, kernel_regularizer=ScaledL2(0.1)),
        ... ])
        >>> model.compile("sgd", "mse")
        >>> history = model.fit(
        ...     np.ones((8, 4)),
        ...     np.zeros(8),
        ...     callbacks=[PenaltyLogger()],
        ...     verbose=0,
        ... )
        >>> sorted(history.history)
        ['data_loss', 'loss', 'penalty']

    Args:
        per_layer: Whether to log `penalty/<layer>` keys too. Defaults to
            `False`.
    """

    def __init__(self, per_layer: bool = False) -> None:
        super().__init__()
        self.per_layer = validate_flag(per_layer, "per_layer")
        self._session = None
        self._in_fit = False
        self._warned = False

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        # A new `fit`, `evaluate` or `predict` (the validation inside `fit`
        # reuses its callbacks): a `fit` that raised never ended.
        self._in_fit = False
        self._attach(model)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._in_fit = True
        self._attach(self.model)

    def on_test_begin(self, logs: Logs | None = None) -> None:
        self._attach(self.model)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._check_recorded(logs)

    def on_train_end(self, logs: Logs | None = None) -> None:
        self._in_fit = False
        self._detach()

    def on_test_end(self, logs: Logs | None = None) -> None:
        if not self._in_fit:
            self._check_recorded(logs)
            self._detach()

    def on_predict_end(self, logs: Logs | None = None) -> None:
        if not self._in_fit:
            self._detach()

    def _attach(self, model):
        session = self._session
        if session is not None and session.attached:
            if session.model is model:
                return
            session.detach()
        if not getattr(model, "compiled", False):
            return  # `fit` and `evaluate` compile-check themselves.
        if not _keras_internals.has_default_compute_loss(model):
            warnings.warn(
                f"PenaltyLogger logs nothing for {type(model).__name__}: it "
                "overrides `compute_loss`, so the penalty cannot be told "
                "apart from the data loss.",
                UserWarning,
                stacklevel=2,
            )
            return
        session = _Session.for_model(model, self.per_layer)
        self._session = session
        if not session.attached:  # else another logger in this fit did
            session.attach()

    def _detach(self):
        if self._session is not None and self._session.attached:
            self._session.detach()

    def _check_recorded(self, logs):
        """Drops the keys (and warns once) when no step recorded anything."""
        session = self._session
        if session is None or not session.attached:
            return
        if float(ops.convert_to_numpy(session.metric.count)) > 0:
            return
        for key in list(logs or {}):
            if key.removeprefix("val_") in session.metric.keys:
                del logs[key]
        if not self._warned:
            self._warned = True
            warnings.warn(
                "PenaltyLogger recorded nothing: the model's train or test "
                "step never called `compute_loss`, so `data_loss` and "
                "`penalty` are not logged.",
                UserWarning,
                stacklevel=2,
            )


class _Session:
    """The logger's metric and step functions on one compiled model.

    Attaching adds the metric to the model and replaces its `compute_loss`
    and step functions; detaching undoes all three. The step functions
    traced while attached are kept and put back at the next attach, as long
    as the model was not compiled since (a `compile` replaces them), so
    that repeated `fit` calls do not retrace.

    Keras skips `on_train_end` when a fit raises, so attaching also guards
    the model's `make_train_function` and `make_test_function`, which
    every `fit`, `evaluate`, `train_on_batch` and `test_on_batch` calls at
    its start (before it reads a step function or, on JAX, the variables'
    state): a call that runs with no logger of this session, not even in a
    `fit` further up the stack, detaches the session first. Detaching
    removes the guards.

    Sessions belong to the model, not to one logger: every `PenaltyLogger`
    with the same `per_layer` on the same compiled model shares one, so
    that a fresh logger per `fit` (walk-forward retraining, one `fit` per
    era) reuses the traced step functions too.
    """

    @classmethod
    def for_model(cls, model, per_layer):
        """The model's current session for `per_layer`, made if needed."""
        # Kept on the model, so that it goes with the model: a registry
        # beside it would be kept alive by the traced functions' references.
        sessions = _sessions(model)
        session = sessions.get(per_layer)
        if session is None or not session.is_current(model):
            session = sessions[per_layer] = cls(model, per_layer)
        return session

    def __init__(self, model, per_layer):
        self.model = model
        if per_layer and not model.weights:
            warnings.warn(
                "PenaltyLogger(per_layer=True) logs only `data_loss` and "
                f"`penalty` for {type(model).__name__}: the model has no "
                "weights yet, so its layers' penalties cannot be named. Call "
                "the model on a batch before `fit`.",
                UserWarning,
                stacklevel=4,
            )
            per_layer = False
        weights = [w for w in model.trainable_weights if w.regularizer]
        with _variable_scope(model):
            self.metric = _PenaltyParts(model, weights, per_layer=per_layer)
        self.compile_token = _keras_internals.compile_token(model)
        self.attached = False
        self.plain_functions = None
        self.logged_functions = None

    def is_current(self, model):
        """Whether `model` is this session's and was not compiled since."""
        return (
            model is self.model
            and _keras_internals.compile_token(model) is self.compile_token
        )

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        del training  # Keras's own compute_loss ignores it too.

        def record(data_loss, penalties):
            self.metric.record(x, y_pred, data_loss, penalties)

        return _keras_internals.split_compute_loss(
            self.model, record, x, y, y_pred, sample_weight
        )

    def attach(self):
        model = self.model
        for other in _sessions(model).values():
            if other is not self and other.attached:
                other.detach()  # left attached by a fit that raised
        self.plain_functions = _keras_internals.step_functions(model)
        _keras_internals.attach_metric(model, self.metric)
        _keras_internals.replace_compute_loss(model, self.compute_loss)
        if self.logged_functions is None:
            _keras_internals.make_step_functions(model)
            self.logged_functions = _keras_internals.step_functions(model)
        _keras_internals.set_step_functions(model, self.logged_functions)
        _keras_internals.guard_step_functions(model, self._detach_if_stale)
        self.attached = True

    def detach(self):
        model = self.model
        _keras_internals.detach_metric(model, self.metric)
        _keras_internals.restore_compute_loss(model)
        _keras_internals.set_step_functions(model, self.plain_functions)
        _keras_internals.unguard_step_functions(model)
        self.attached = False

    def _detach_if_stale(self):
        """Detaches unless a `fit` or `evaluate` with one of this session's
        loggers runs: the one that attached it ended without its `on_*_end`
        hooks (it raised)."""
        if self.attached and not _keras_internals.runs_with_callback(
            self.model,
            lambda callback: (
                isinstance(callback, PenaltyLogger)
                and callback._session is self
            ),
        ):
            self.detach()


def _sessions(model):
    """The model's sessions by `per_layer`."""
    # Kept on the model, so that they go with the model: a registry beside
    # it would be kept alive by the traced functions' references.
    return _keras_internals.untracked_attribute(
        model, "_penalty_logger_sessions", dict
    )


class _PenaltyParts(keras.metrics.Metric):
    """Running, batch-size-weighted means of the data loss and the penalty.

    Updated from inside `compute_loss`; its `result()` is a dict, which
    Keras spreads into the logs key by key.
    """

    def __init__(self, model, regularized_weights, per_layer):
        super().__init__(name="penalty_logger")
        self.num_regularized = len(regularized_weights)
        self.layer_names, self.layer_index = _layer_groups(
            model, regularized_weights
        )
        self.per_layer = per_layer
        self.keys = ["data_loss", "penalty"]
        if per_layer:
            self.keys += [
                f"penalty/{name}" for name in [*self.layer_names, OTHER_LOSSES]
            ]
        # One vector, [count, *weighted sums in the order of `keys`], so that
        # a step adds to a single variable.
        self.totals = self.add_variable(
            (1 + len(self.keys),),
            initializer="zeros",
            dtype="float32",
            name="totals",
        )

    @property
    def count(self):
        return self.totals[0]

    def record(self, x, y_pred, data_loss, penalties):
        """Adds one step's parts, weighted by its batch size."""
        # A handful of ops per step: on PyTorch, which runs steps eagerly,
        # each one costs dispatch time.
        unscale = _replicas_in_sync()
        penalties = [_float32(p, unscale) for p in penalties]
        data = ops.zeros(()) if data_loss is None else data_loss
        # A sum of scalars, not `ops.sum(ops.stack(...))`: stacking converts
        # each term again, which costs more than the additions.
        penalty = sum(penalties[1:], penalties[0]) if penalties else 0.0
        parts = [
            ops.ones(()),
            _float32(data, unscale),
            ops.convert_to_tensor(penalty, "float32"),
        ]
        step = ops.stack(parts)
        if self.per_layer:
            step = ops.concatenate([step, self._per_layer(penalties)])
        self.totals.assign_add(step * _batch_size(x, y_pred))

    def _per_layer(self, penalties):
        num_other = len(penalties) - self.num_regularized
        if num_other < 0:
            raise RuntimeError(
                "PenaltyLogger expected one `model.losses` term per "
                f"regularized weight ({self.num_regularized}) but got "
                f"{len(penalties)}; per-layer penalties are unavailable."
            )
        buckets: list[list[Any]] = [
            [] for _ in range(len(self.layer_names) + 1)
        ]
        buckets[-1] = penalties[:num_other]
        for index, term in zip(
            self.layer_index, penalties[num_other:], strict=True
        ):
            buckets[index].append(term)
        return ops.stack(
            [
                sum(terms[1:], terms[0]) if terms else ops.zeros(())
                for terms in buckets
            ]
        )

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(
            "Updated by PenaltyLogger from inside `compute_loss`."
        )

    def reset_state(self):
        self.totals.assign(ops.zeros(self.totals.shape, "float32"))

    def result(self):
        totals = self.totals.value  # the backend tensor: indexed natively
        means = totals[1:] / totals[0]
        return {key: means[i] for i, key in enumerate(self.keys)}


def _layer_groups(model, weights):
    """Returns layer names and, per weight, the index of its layer's name."""
    name_of = layer_namer(model)
    names, index = [], []
    for weight in weights:
        layer = name_of(weight)
        if layer not in names:
            names.append(layer)
        index.append(names.index(layer))
    return names, index


def _batch_size(x, y_pred):
    # Keras weighs each step's loss by the leading dimension of the first
    # input (of the prediction when a custom step passes no input).
    if hasattr(x, "shape"):  # one input tensor: no structure to flatten
        first = x
    else:
        flat = [t for t in keras.tree.flatten(x) if t is not None]
        first = (flat or keras.tree.flatten(y_pred))[0]
    size = ops.shape(first)[0]
    if isinstance(size, int):  # known when traced, or run eagerly
        return float(size)
    return ops.cast(size, "float32")


def _float32(value, unscale):
    """`value` in float32, times `unscale` (skipping the ops not needed)."""
    if keras.backend.standardize_dtype(value.dtype) != "float32":
        value = ops.cast(value, "float32")
    return value if unscale == 1.0 else value * unscale


def _replicas_in_sync():
    # Under tf.distribute Keras divides each replica's loss terms by the
    # number of replicas and multiplies the logged loss back; so do we.
    if keras.backend.backend() != "tensorflow":
        return 1.0
    import tensorflow as tf

    return float(tf.distribute.get_strategy().num_replicas_in_sync)


def _variable_scope(model):
    """Where the metric's variables must be created: the model's strategy."""
    if keras.backend.backend() == "tensorflow":
        return model.distribute_strategy.scope()
    import contextlib

    return contextlib.nullcontext()
