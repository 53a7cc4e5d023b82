"""One group of networks, trained as independent members of one model.

Runs sharing a data set, optimizer, architecture, training-set size and
seed (which sets the initial weights and the batch order) are trained
together: the loss is the sum of the members' losses, so each member gets
exactly its own gradient and (Adam and SGD being elementwise) its own
update, as if trained alone; `tests/test_lambda_transfer.py` checks this.
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
from transfer_study.settings import variants_of

LEARNING_RATES = {"adam": 1e-3, "sgd": 1e-2}
SGD_MOMENTUM = 0.9


def group_mse(y_true, y_pred):
    """Per example, the sum over members of the squared error."""
    y = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1, 1))
    return ops.sum(ops.square(y_pred - y), axis=-1)


def group_crossentropy(y_true, y_pred):
    """Per example, the sum over members of the softmax cross-entropy."""
    log_probabilities = ops.log_softmax(y_pred, axis=-1)
    y = ops.expand_dims(ops.cast(y_true, y_pred.dtype), 1)
    return -ops.sum(y * log_probabilities, axis=(1, 2))


def build_group(members, num_features, num_outputs, width, depth, seed):
    """One Keras model of independent MLPs, one per regularizer in `members`.

    Every member gets the same initial weights (Glorot uniform seeded by
    `seed` and the layer's position). Output shape: `(batch, members)`
    for one output, else `(batch, members, num_outputs)`.
    """
    inputs = keras.Input((num_features,))
    outputs = []
    for index, regularizer in enumerate(members):
        hidden = inputs
        for position in range(depth + 1):
            last = position == depth
            hidden = keras.layers.Dense(
                num_outputs if last else width,
                activation=None if last else "relu",
                kernel_initializer=keras.initializers.GlorotUniform(
                    seed=1000 * seed + position
                ),
                kernel_regularizer=regularizer,
                name=f"member{index}_dense{position}",
            )(hidden)
        outputs.append(hidden)
    if num_outputs == 1:
        output = keras.layers.Concatenate()(outputs)
    else:
        output = keras.layers.Concatenate(axis=1)(
            [keras.layers.Reshape((1, num_outputs))(o) for o in outputs]
        )
    return keras.Model(inputs, output)


def make_optimizer(name):
    if name == "adam":
        return keras.optimizers.Adam(LEARNING_RATES["adam"])
    return keras.optimizers.SGD(LEARNING_RATES["sgd"], momentum=SGD_MOMENTUM)


def member_penalties(model, count):
    """The penalty of each member's kernels, as Keras computes it."""
    penalties = np.zeros(count)
    for layer in model.layers:
        if layer.name.startswith("member"):
            index = int(layer.name[len("member") :].split("_")[0])
            penalties[index] += sum(
                float(ops.convert_to_numpy(loss)) for loss in layer.losses
            )
    return penalties


def data_losses(y, predictions):
    """Per member, the float64 mean data loss of `predictions`."""
    predictions = predictions.astype(np.float64)
    if predictions.ndim == 2:
        return np.mean((predictions - y[:, None]) ** 2, axis=0)
    shifted = predictions - predictions.max(axis=-1, keepdims=True)
    log_probabilities = shifted - np.log(
        np.exp(shifted).sum(axis=-1, keepdims=True)
    )
    return -np.mean(np.sum(y[:, None, :] * log_probabilities, axis=-1), axis=0)


def member_metrics(y, predictions):
    """Per member, rank correlation (one output) or accuracy."""
    if predictions.ndim == 2:
        return [
            rank_correlation(y, predictions[:, i])
            for i in range(predictions.shape[1])
        ]
    hits = predictions.argmax(axis=-1) == y.argmax(axis=-1)[:, None]
    return list(hits.mean(axis=0))


def prediction_spread(y, predictions):
    """Per member, the prediction std over examples relative to y's."""
    spread = predictions.astype(np.float64).std(axis=0)
    if spread.ndim == 2:
        spread = spread.mean(axis=-1)
    return spread / float(np.std(y.astype(np.float64), axis=0).mean())


def train_group(group, settings):
    """Trains one `Group`; returns one record per member."""
    (x, y), (x_test, y_test) = load_data(group.data, group.num_train, settings)
    members = [
        (variant, factor)
        for variant in variants_of(group, settings)
        for factor in factor_grid(variant, group.data, settings)
    ]
    regularizers = [
        ScaledL2(
            factor,
            variant.scale,
            num_examples=group.num_train if variant.num_examples else None,
        )
        for variant, factor in members
    ]
    keras.utils.clear_session()
    keras.utils.set_random_seed(group.seed)
    num_outputs = 1 if y.ndim == 1 else y.shape[1]
    model = build_group(
        regularizers,
        x.shape[1],
        num_outputs,
        group.width,
        group.depth,
        group.seed,
    )
    model.compile(
        optimizer=make_optimizer(group.optimizer),
        loss=group_mse if num_outputs == 1 else group_crossentropy,
    )
    start = time.perf_counter()
    model.fit(
        x,
        y,
        epochs=settings.epochs[group.data],
        batch_size=settings.batch_size,
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
    return [
        {
            **group._asdict(),
            "variant": variant.name,
            "factor": factor,
            "test_metric": _number(metric[i]),
            "test_data_loss": float(test_loss[i]),
            "data_loss": float(train_loss[i]),
            "penalty": float(penalties[i]),
            "collapsed": bool(spread[i] < COLLAPSE_RATIO),
            "group_seconds": round(seconds, 3),
            "group_size": len(members),
        }
        for i, (variant, factor) in enumerate(members)
    ]


def _number(value):
    value = float(value)
    return None if math.isnan(value) else value
