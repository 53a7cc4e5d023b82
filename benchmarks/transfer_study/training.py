"""One group of networks, trained as independent members of one model.

Runs sharing a data set, optimizer, architecture, training-set size and
seed (which sets the initial weights and the batch order) are trained
together: the loss is the sum of the members' losses, so each member gets
exactly its own gradient and (Adam and SGD being elementwise) its own
update, as if trained alone; under AdamW each member's variables decay at
the member's own rate (`MemberAdamW`). `tests/study/test_lambda_transfer.py`
checks both against plain Keras models.
All members of a group start from the same initial weights, so factors are
compared on equal terms.
"""

import math
import time

import keras
import numpy as np
from keras import ops

from keras_scaled_l2 import ScaledL2
from keras_scaled_l2.datasets import rank_correlation
from keras_scaled_l2.demo import COLLAPSE_RATIO
from transfer_study.data import load_data
from transfer_study.grid import factor_grid
from transfer_study.models import (
    build_family_group,
    build_group,
    member_index,
)
from transfer_study.settings import (
    TABULAR,
    TABULAR_LEARNING_RATES,
    num_kernels,
    trained_variants,
    trains_derived,
)

SGD_MOMENTUM = 0.9


class MemberAdamW(keras.optimizers.Adam):
    """Keras's AdamW, with one `weight_decay` per member of a group.

    `decays[i]` is member `i`'s decay: each variable of a layer named
    `member{i}_...` is multiplied by `1 - learning_rate * decays[i]` before
    the Adam step, as `keras.optimizers.AdamW` does with its one rate. With
    `decay_biases=False` only kernels decay, as after Keras's
    `exclude_from_weight_decay(var_names=["bias"])`.
    """

    def __init__(self, learning_rate, decays, decay_biases=True):
        super().__init__(learning_rate)
        self.decays = list(decays)
        self.decay_biases = decay_biases

    def _apply_weight_decay(self, variables):
        for variable in variables:
            if not self.decay_biases and variable.path.endswith("bias"):
                continue
            decay = self.decays[member_index(variable.path)]
            if decay:
                lr = ops.cast(self.learning_rate, variable.dtype)
                rate = ops.cast(decay, variable.dtype)
                variable.assign(variable - variable * rate * lr)


def group_mse(y_true, y_pred):
    """Per example, the sum over members of the squared error."""
    y = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1, 1))
    return ops.sum(ops.square(y_pred - y), axis=-1)


def group_cross_entropy(y_true, y_pred):
    """Per example, the sum over members of the softmax cross-entropy.

    `y_pred` holds logits of shape `(batch, members, classes)`.
    """
    labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    one_hot = ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
    log_probabilities = ops.log_softmax(y_pred, axis=-1)
    return -ops.sum(log_probabilities * one_hot[:, None, :], axis=(1, 2))


def make_optimizer(name, decays=None, learning_rate=None, decay_biases=True):
    """The optimizer of a group; `decays` per member for `"adamw"`.

    `learning_rate` defaults to the tabular setups' rate of `name`;
    `decay_biases` is `MemberAdamW`'s.
    """
    if learning_rate is None:
        learning_rate = TABULAR_LEARNING_RATES[name]
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return MemberAdamW(learning_rate, decays, decay_biases)
    return keras.optimizers.SGD(learning_rate, momentum=SGD_MOMENTUM)


def member_regularizer(variant, factor, group):
    """The kernel penalty of one member (`None`: no penalty, or decay)."""
    if variant is None or variant.decoupled:
        return None
    return ScaledL2(
        factor,
        variant.scale,
        num_examples=group.num_train if variant.num_examples else None,
        num_kernels=num_kernels(group.family, group.depth)
        if variant.normalize_depth
        else None,
    )


def member_decay(variant, factor, group):
    """The AdamW `weight_decay` of one member (0 for the penalties)."""
    if variant is None or not variant.decoupled:
        return 0.0
    if variant.normalize_depth:
        return factor / num_kernels(group.family, group.depth)
    return factor


def member_penalties(model, count):
    """The penalty of each member's kernels, as Keras computes it."""
    penalties = np.zeros(count)
    for layer in model.layers:
        if layer.name.startswith("member"):
            penalties[member_index(layer.name)] += sum(
                float(ops.convert_to_numpy(loss)) for loss in layer.losses
            )
    return penalties


def member_metrics(y, predictions):
    """Per member: rank correlation (regression) or accuracy (classes)."""
    if predictions.ndim == 3:
        return list(np.mean(predictions.argmax(axis=-1) == y[:, None], axis=0))
    return [
        rank_correlation(y, predictions[:, i])
        for i in range(predictions.shape[1])
    ]


def prediction_spread(y, predictions):
    """Per member, the spread of the predictions over the examples.

    Regression: their std relative to y's. Classes: the std of the
    predicted probabilities, averaged over the classes, relative to that of
    the one-hot labels.
    """
    if predictions.ndim == 3:
        probabilities = _softmax(predictions)
        one_hot = np.eye(predictions.shape[-1])[y]
        spread = probabilities.std(axis=0).mean(axis=-1)
        return spread / float(one_hot.std(axis=0).mean())
    spread = predictions.astype(np.float64).std(axis=0)
    return spread / float(np.std(y.astype(np.float64)))


def _log_softmax(logits):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _softmax(logits):
    return np.exp(_log_softmax(logits))


def data_losses(y, predictions):
    """Per member, the float64 mean squared error or cross-entropy."""
    if predictions.ndim == 3:
        picked = np.take_along_axis(
            _log_softmax(predictions), y.astype(int)[:, None, None], axis=-1
        )[..., 0]
        return -np.mean(picked, axis=0)
    y = y.astype(np.float64)[:, None]
    return np.mean((predictions.astype(np.float64) - y) ** 2, axis=0)


def group_members(group, settings, variants=None):
    """`(variant, factor)` per member; `(None, 0.0)`: unpenalized.

    `variants`: the names of the variants to train, of those the study
    trains in this group (default: all of them).
    """
    trained = trained_variants(group, settings)
    unknown = set(variants or ()) - {variant.name for variant in trained}
    if unknown:
        raise ValueError(
            f"{group.key} trains no variant named {sorted(unknown)}; it "
            f"trains {[variant.name for variant in trained]}"
        )
    members = [
        (variant, factor)
        for variant in trained
        if variants is None or variant.name in variants
        for factor in factor_grid(variant, group.setup, settings)
    ]
    if trains_derived(group.data):
        members.append((None, 0.0))
    return members


def train_group(
    group, settings, variants=None, decay_biases=True, callbacks=()
):
    """Trains one `Group`; returns one record per member.

    `variants`: only these (by name; see `group_members`). `decay_biases`:
    whether AdamW decays the biases too, as Keras's does (see
    `MemberAdamW`). `callbacks`: passed to `fit` (they see the group's
    members in the model's outputs, in `group_members` order).
    """
    (x, y), (x_test, y_test) = load_data(group.data, group.num_train, settings)
    members = group_members(group, settings, variants)
    regularizers = [member_regularizer(v, f, group) for v, f in members]
    decays = [member_decay(v, f, group) for v, f in members]
    keras.utils.clear_session()
    keras.utils.set_random_seed(group.seed)
    if group.data in TABULAR:
        model = build_group(
            regularizers, x.shape[1], group.width, group.depth, group.seed
        )
        loss = group_mse
    else:
        model = build_family_group(
            group.family,
            regularizers,
            x.shape[1],
            group.width,
            group.depth,
            group.seed,
        )
        loss = group_cross_entropy
    learning_rate = settings.learning_rates[group.data][group.optimizer]
    model.compile(
        optimizer=make_optimizer(
            group.optimizer, decays, learning_rate, decay_biases
        ),
        loss=loss,
    )
    start = time.perf_counter()
    model.fit(
        x,
        y,
        epochs=settings.epochs[group.data],
        batch_size=settings.batch_size[group.data],
        callbacks=list(callbacks),
        verbose=0,
    )
    seconds = time.perf_counter() - start
    train_predictions = model.predict(x, batch_size=4096, verbose=0)
    test_predictions = model.predict(x_test, batch_size=4096, verbose=0)
    penalties = member_penalties(model, len(members))
    train_loss = data_losses(y, train_predictions)
    test_loss = data_losses(y_test, test_predictions)
    metric = member_metrics(y_test, test_predictions)
    spread = prediction_spread(y_test, test_predictions)
    extra = (
        {"num_kernels": num_kernels(group.family, group.depth)}
        if trains_derived(group.data)
        else {}
    )
    return [
        {
            **group._asdict(),
            "variant": "unpenalized" if variant is None else variant.name,
            "factor": factor,
            "test_metric": _number(metric[i]),
            "test_data_loss": float(test_loss[i]),
            "data_loss": float(train_loss[i]),
            "penalty": float(penalties[i]),
            "collapsed": bool(spread[i] < COLLAPSE_RATIO),
            "group_seconds": round(seconds, 3),
            "group_size": len(members),
            **extra,
        }
        for i, (variant, factor) in enumerate(members)
    ]


def _number(value):
    value = float(value)
    return None if math.isnan(value) else value
