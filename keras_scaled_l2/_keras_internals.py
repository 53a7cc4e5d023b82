"""The few private Keras names the package relies on, in one place.

Besides the loss split below: `sublayers` walks a layer's direct children
(`Layer._flatten_layers`), and `set_attention_kernel_regularizer` sets the
one kernel regularizer `MultiHeadAttention` keeps for its config
(`_kernel_regularizer`).

Keras has no public hook that hands out the data loss and the penalty of a
train step separately: `Model.compute_loss` adds them up and returns the
sum. `split_compute_loss` below is `keras.Model.compute_loss` (identical
from Keras 3.10 to 3.15) written out term by term, so that it returns the
very total Keras would return and also hands both parts to a recorder.
`tests/test_keras_internals.py` fails loudly if Keras changes any of it.
"""

import re

import keras
from keras import ops

MINIMUM_KERAS = (3, 10)
"""Before Keras 3.10, `fit` under `tf.distribute.MirroredStrategy` logs a
`loss` (and metrics) that differ from one device's for the same weights, so
no penalty logged beside it can be exact; the loss split below follows the
`compute_loss` of 3.10 to 3.15."""


def check_keras_version(version):
    """Raises `ImportError` for a Keras older than `MINIMUM_KERAS`.

    >>> check_keras_version("3.15.1")
    >>> check_keras_version("3.7.0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ImportError: keras-scaled-l2 needs Keras 3.10 or newer; found Keras 3.7.0...
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


def set_attention_kernel_regularizer(layer, regularizer):
    """Sets what `MultiHeadAttention.get_config` saves as its regularizer."""
    layer._kernel_regularizer = regularizer


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
