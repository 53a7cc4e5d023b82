"""Every reliance on Keras internals or unpublished behaviour, in one place.

- the loss split below (`split_compute_loss`), and `has_default_compute_loss`;
- `replace_compute_loss` / `restore_compute_loss`: an instance attribute
  `compute_loss` shadows the class's, and Keras's train and test steps
  call `self.compute_loss`;
- `step_functions`, `set_step_functions`, `make_step_functions`,
  `drop_step_functions`: `fit` and `evaluate` use `model.train_function` /
  `model.test_function` as they find them, trace new ones when they are
  `None`, and look the train function up at every step;
- `compile_token`: `compile` makes a new loss tracker;
- `attach_metric` / `detach_metric`: the list behind `Model.metrics`;
- `sublayers`: a layer's direct children (`Layer._flatten_layers`);
- `own_trainable_weights`: the trainable weights a layer creates itself,
  not those of its sub-layers (`Layer._trainable_variables`);
- `set_attention_kernel_regularizer` / `attention_kernel_regularizer`:
  the one kernel regularizer `MultiHeadAttention` keeps for its config
  (`_kernel_regularizer`);
- `graph_configs`: the `get_config` of functional and `Sequential`
  models, the only models whose configs hold their layers' configs;
- `unregistered_class`: the text of Keras's error for an unknown class;
- `refused_by_safe_mode`: the text of Keras's error for a file that safe
  mode refuses (a `Lambda` layer holding Python code);
- `regularized_weight`: a layer computes each weight's penalty by calling
  `weight.regularizer(value)` from `Layer._get_regularization_losses`,
  whose locals name the layer (`self`) and the weight (`variable`);
- `KerasSaveable` / `SAVEABLE_KIND`: what Keras's `.keras` saving
  walks into (any attribute of a layer that is one), calling its
  `save_own_variables(store)` / `save_assets(folder)` and, on loading,
  `load_own_variables(store)` on the object the same attribute holds;
  its `_obj_type()` must be one of Keras's kinds, and a `"Loss"` has no
  state Keras would look for; a model's private attributes come after its
  layers;
- `saving_h5`: Keras's `.h5` saving writes the model's config under a
  global `use_legacy_config` option;
- `weights_path` / `WEIGHTS_FILE`: `.keras` saving writes each object's
  variables into `model.weights.h5` at the group `<path>/vars`, through
  an `H5IOStore` entry that knows `<path>` (an `H5Entry`'s `path` up to
  Keras 3.10, the store's `_h5_entry_path` after);
- `laid_out_like`: a JAX variable's `keras.distribution` layout is its
  `_layout`, which `keras.Variable(..., layout=)` takes; a TensorFlow
  variable made under `tf.distribute` holds its strategy;
- `guard_get_config` / `unguard_get_config`: an instance attribute
  `get_config` shadows the class's wherever Keras asks a layer for its
  config, and Keras fills in a subclass's arguments only for a
  `get_config` marked `_is_default`;
- `untracked_attribute`: an entry in a layer's `__dict__` escapes Keras's
  attribute tracking.

`tests/package/keras_internals/` tests each, so that a Keras release that
changes one fails loudly.

About the loss split: Keras has no public hook that hands out the data
loss and the penalty of a train step separately: `Model.compute_loss` adds
them up and returns the sum. `split_compute_loss` below is
`keras.Model.compute_loss` (identical from Keras 3.10 to 3.15) written out
term by term, so that it returns the very total Keras would return and also
hands both parts to a recorder.
"""

import contextlib
import functools
import re
import sys
import types

import keras
from keras import ops
from keras.src.saving.keras_saveable import KerasSaveable  # noqa: F401

MINIMUM_KERAS = (3, 10)
"""Before Keras 3.10, `fit` under `tf.distribute.MirroredStrategy` logs a
`loss` (and metrics) that differ from one device's for the same weights, so
no penalty logged beside it can be exact; the loss split below follows the
`compute_loss` of 3.10 to 3.15."""


def check_keras_version(version):
    """Raises `ImportError` for a Keras older than `MINIMUM_KERAS`.

    Examples:
        >>> check_keras_version("3.15.1")
        >>> check_keras_version("3.7.0")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ImportError: keras-scaled-l2 needs Keras 3.10 or newer; ...
    """
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if found < MINIMUM_KERAS:
        raise ImportError(
            "keras-scaled-l2 needs Keras 3.10 or newer; found Keras "
            f"{version}. Older Keras logs a different loss under "
            "tf.distribute than on one device. Upgrade with: "
            'pip install -U "keras>=3.10"'
        )


check_keras_version(keras.__version__)


def has_default_compute_loss(model):
    """Whether `model` computes its loss with Keras's own `compute_loss`."""
    return type(model).compute_loss is keras.Model.compute_loss


def split_compute_loss(
    model, record, x=None, y=None, y_pred=None, sample_weight=None
):
    """Returns Keras's total loss and calls `record(data_loss, penalties)`.

    `data_loss` is the compiled loss (or `None` without one); `penalties` is
    the list of `model.losses` terms, each aggregated as Keras aggregates it
    (scaled for `tf.distribute` replicas, cast to float), in the order of
    `model.losses`: `add_loss` and activity terms first, then one term per
    regularized trainable weight, in `model.trainable_weights` order.
    """
    losses = []
    data_loss = None
    if model._compile_loss is not None:
        data_loss = model._compile_loss(y, y_pred, sample_weight)
        if data_loss is not None:
            losses.append(data_loss)
    penalties = [
        model._aggregate_additional_loss(loss) for loss in model.losses
    ]
    losses.extend(penalties)
    if keras.backend.backend() != "jax" and not losses:
        raise ValueError(
            "No loss to compute. Provide a `loss` argument in `compile()`."
        )
    record(data_loss, penalties)
    if len(losses) == 1:
        return losses[0]
    if not losses:
        return ops.zeros(())
    return ops.sum(losses)


def compile_token(model):
    """An object that `model.compile` replaces: a new one means a recompile.

    Every `compile` creates a new loss tracker (and drops the traced step
    functions with it).
    """
    return model._loss_tracker


def attach_metric(model, metric):
    """Makes `metric` one of `model.metrics` until `detach_metric`.

    Assigning a metric to a model attribute would track it too, but Keras
    never untracks it again; the list behind `Model.metrics` can be undone.
    """
    if metric not in model._metrics:
        model._metrics.append(metric)


def detach_metric(model, metric):
    """Removes a metric added by `attach_metric`."""
    model._metrics[:] = [m for m in model._metrics if m is not metric]


def sublayers(layer):
    """The direct sublayers of `layer`, each once, in tracking order."""
    return layer._flatten_layers(include_self=False, recursive=False)


def own_trainable_weights(layer):
    """The trainable weights `layer` holds itself, not through sub-layers."""
    return list(layer._trainable_variables)


def set_attention_kernel_regularizer(layer, regularizer):
    """Sets what `MultiHeadAttention.get_config` saves as its regularizer."""
    layer._kernel_regularizer = regularizer


def attention_kernel_regularizer(layer):
    """What `MultiHeadAttention.get_config` saves as its regularizer."""
    return layer._kernel_regularizer


def graph_configs():
    """The `get_config` methods that save every layer's config."""
    from keras.src.models.functional import Functional

    return Functional.get_config, keras.Sequential.get_config


def untracked_attribute(model, name, factory):
    """`model.<name>`, created by `factory()` on first use, never tracked.

    Keras tracks what is assigned to a layer's attributes (and TensorFlow
    wraps dicts and lists for its checkpoints); an entry made directly in
    the instance's `__dict__` is neither tracked nor saved, and goes with
    the model when it is collected.
    """
    attributes = vars(model)
    if name not in attributes:
        attributes[name] = factory()
    return attributes[name]


def guard_get_config(model, check):
    """Makes `model.get_config()` call `check(model)` first.

    An instance attribute `get_config` shadows the class's, and every
    saving path asks a layer for its config through the instance
    (`serialize_keras_object`, `.h5`'s `model_metadata`). Set once.
    """
    if "get_config" in vars(model):
        return
    get_config = type(model).get_config

    # `functools.wraps` keeps `_is_default`, the mark of Keras's own
    # `get_config`: Keras then still fills in a subclass's constructor
    # arguments itself (`Operation.get_config`).
    @functools.wraps(get_config)
    def guarded(self):
        check(self)
        return get_config(self)

    guarded._keras_scaled_l2_guard = True  # type: ignore[attr-defined]
    model.get_config = types.MethodType(guarded, model)


def unguard_get_config(model):
    """Undoes `guard_get_config` (and nothing another library set)."""
    method = vars(model).get("get_config")
    if getattr(
        getattr(method, "__func__", None), "_keras_scaled_l2_guard", False
    ):
        del model.get_config


def replace_compute_loss(model, compute_loss):
    """Makes `model`'s train and test steps call `compute_loss` instead."""
    model.compute_loss = compute_loss


def restore_compute_loss(model):
    """Undoes `replace_compute_loss`: the class's `compute_loss` again."""
    if "compute_loss" in vars(model):
        del model.compute_loss


STEP_FUNCTIONS = ("train_function", "test_function")
"""The model attributes that `fit` and `evaluate` call at every step."""


def step_functions(model):
    """The model's traced `(train_function, test_function)`, or `None`s."""
    return tuple(getattr(model, name) for name in STEP_FUNCTIONS)


def set_step_functions(model, functions):
    """Makes `fit` / `evaluate` use `functions` from `step_functions`."""
    for name, function in zip(STEP_FUNCTIONS, functions, strict=True):
        setattr(model, name, function)


STEP_FUNCTION_MAKERS = ("make_train_function", "make_test_function")
"""What `fit`, `evaluate`, `train_on_batch` and `test_on_batch` call first."""


def guard_step_functions(model, check):
    """Makes the model's `make_train_function` / `make_test_function` call
    `check()` first.

    Every `fit`, `evaluate`, `train_on_batch` and `test_on_batch` calls
    one of them at its start, before it reads its step function (and, on
    JAX, before it gathers the variables' state). The guards are instance
    attributes, shadowing the class's methods, kept out of Keras's
    tracking; `unguard_step_functions` removes them.
    """
    for name in STEP_FUNCTION_MAKERS:
        method = getattr(type(model), name)

        @functools.wraps(method)
        def guarded(self, force=False, _method=method):
            check()
            return _method(self, force)

        vars(model)[name] = types.MethodType(guarded, model)


def unguard_step_functions(model):
    """Undoes `guard_step_functions`."""
    for name in STEP_FUNCTION_MAKERS:
        vars(model).pop(name, None)


def runs_with_callback(model, accept):
    """Whether a `fit` or `evaluate` of `model` on the call stack runs with
    a callback for which `accept(callback)` is true.

    Each backend's trainer keeps the `CallbackList` of a `fit` or
    `evaluate` in its local `callbacks` (the validation inside `fit` runs
    `evaluate` with the same list).
    """
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        if (
            frame.f_code.co_name in ("fit", "evaluate")
            and frame.f_locals.get("self") is model
        ):
            callbacks = frame.f_locals.get("callbacks")
            if any(map(accept, getattr(callbacks, "callbacks", ()))):
                return True
        frame = frame.f_back
    return False


def make_step_functions(model):
    """Traces new step functions that see the model as it is now.

    `fit` looks its train function up at every step, so this is safe
    inside `on_train_begin`.
    """
    model.make_train_function(force=True)
    model.make_test_function(force=True)


def drop_step_functions(model):
    """Makes the next `fit` / `evaluate` trace new step functions."""
    for name in STEP_FUNCTIONS:
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


def unregistered_class(error):
    """The class a failed `load_model` could not find, or `None`.

    Keras raises `TypeError("Could not locate class 'NAME'. ...")` for a
    class that is neither built in nor registered.
    """
    found = re.search(r"Could not locate class '([^']+)'", str(error))
    return found.group(1) if found else None


def refused_by_safe_mode(error):
    """Whether `error` is Keras refusing to load code under `safe_mode`."""
    return isinstance(error, ValueError) and "safe_mode=False" in str(error)


_CALLER_DEPTH = 8  # frames searched: a subclass's `__call__` adds some


def regularized_weight(regularizer):
    """The `(layer, weight)` whose penalty `regularizer` computes, or `None`.

    Called from the regularizer's `__call__`: when Keras's
    `Layer._get_regularization_losses` is computing the penalty of a weight
    whose regularizer is `regularizer`, the layer computing its losses (a
    model computes those of every weight below it) and that weight; any
    other caller (a user, the penalty report) gives `None`.
    """
    frame: types.FrameType | None = sys._getframe(1)
    for _ in range(_CALLER_DEPTH):
        frame = frame.f_back if frame is not None else None
        if frame is None:
            return None
        if frame.f_code.co_name == "_get_regularization_losses":
            break
    else:
        return None
    names = frame.f_locals
    layer, weight = names.get("self"), names.get("variable")
    if (
        not isinstance(layer, keras.layers.Layer)
        or getattr(weight, "regularizer", None) is not regularizer
    ):
        return None
    return layer, weight


SAVEABLE_KIND = "Loss"
"""The `_obj_type()` of a saveable that writes only its own state."""


def saving_h5():
    """Whether a config is being written for (or read from) a `.h5` file."""
    from keras.src.backend.common import global_state

    return bool(global_state.get_global_attribute("use_legacy_config", False))


WEIGHTS_FILE = "model.weights.h5"
"""The weights file inside a `.keras` archive (or folder, `zipped=False`)."""


def weights_path(store):
    """The group of `WEIGHTS_FILE` that `store` writes into, or `None`.

    `store` is what Keras's `.keras` saving hands to `save_own_variables`;
    `None` where it is not an entry of that `.h5` weights file (a `.npz`
    weights format).
    """
    from keras.src.saving import saving_lib

    if type(store) is saving_lib.H5IOStore:  # Keras 3.11 and later
        path = store._h5_entry_path
    elif type(store).__name__ == "H5Entry":  # Keras 3.10
        path = store.path
    else:
        return None
    return path if isinstance(path, str) else None


def saved_variable(h5_file, path, key):
    """The array `weights_path`'s group `path` holds under `key`."""
    return h5_file[f"{path}/vars/{key}" if path else f"vars/{key}"][()]


@contextlib.contextmanager
def laid_out_like(variable):
    """Yields the `keras.Variable` arguments that place a new variable as
    `variable`: its layout under a `keras.distribution` (JAX), and inside
    its `tf.distribute` strategy's scope (TensorFlow)."""
    arguments = {}
    layout = getattr(variable, "_layout", None)
    if layout is not None:
        arguments["layout"] = layout
    scope = contextlib.nullcontext()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        strategy = getattr(variable.value, "_distribute_strategy", None)
        current = tf.distribute.get_strategy()
        if strategy is not None and strategy is not current:
            scope = strategy.scope()
    with scope:
        yield arguments
