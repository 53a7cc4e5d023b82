"""One group of networks, trained as independent members of one model.

Runs sharing a data set, optimizer, architecture, training-set size and
seed (which sets the initial weights and the batch order) are trained
together: the loss is the sum of the members' losses, so each member gets
exactly its own gradient and (Adam and SGD being elementwise) its own
update, as if trained alone; under AdamW each member's variables decay at
the member's own rate (`MemberAdamW`). `tests/test_lambda_transfer.py`
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
from transfer_study.settings import num_kernels, variants_of

LEARNING_RATES = {"adam": 1e-3, "adamw": 1e-3, "sgd": 1e-2}
SGD_MOMENTUM = 0.9


class MemberAdamW(keras.optimizers.Adam):
    """Keras's AdamW, with one `weight_decay` per member of a group.

    `decays[i]` is member `i`'s decay: each variable of a layer named
    `member{i}_...` is multiplied by `1 - learning_rate * decays[i]` before
    the Adam step, as `keras.optimizers.AdamW` does with its one rate.
    """

    def __init__(self, learning_rate, decays):
        super().__init__(learning_rate)
        self.decays = list(decays)

    def _apply_weight_decay(self, variables):
        for variable in variables:
            decay = self.decays[member_index(variable.path.split("/")[-2])]
            if decay:
                lr = ops.cast(self.learning_rate, variable.dtype)
                rate = ops.cast(decay, variable.dtype)
                variable.assign(variable - variable * rate * lr)


def member_index(layer_name):
    """`3` for `"member3_dense2"`; see `build_group`."""
    return int(layer_name[len("member") :].split("_")[0])


def group_mse(y_true, y_pred):
    """Per example, the sum over members of the squared error."""
    y = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1, 1))
    return ops.sum(ops.square(y_pred - y), axis=-1)


def build_group(members, num_features, width, depth, seed):
    """One Keras model of independent MLPs, one per regularizer in `members`.

    Every member gets the same initial weights (Glorot uniform seeded by
    `seed` and the layer's position). Output shape: `(batch, members)`.
    """
    inputs = keras.Input((num_features,))
    outputs = []
    for index, regularizer in enumerate(members):
        hidden = inputs
        for position in range(depth + 1):
            last = position == depth
            hidden = keras.layers.Dense(
                1 if last else width,
                activation=None if last else "relu",
                kernel_initializer=keras.initializers.GlorotUniform(
                    seed=1000 * seed + position
                ),
                kernel_regularizer=regularizer,
                name=f"member{index}_dense{position}",
            )(hidden)
        outputs.append(hidden)
    return keras.Model(inputs, keras.layers.Concatenate()(outputs))


def make_optimizer(name, decays=None):
    """The optimizer of a group; `decays` per member for `"adamw"`."""
    if name == "adam":
        return keras.optimizers.Adam(LEARNING_RATES["adam"])
    if name == "adamw":
        return MemberAdamW(LEARNING_RATES["adamw"], decays)
    return keras.optimizers.SGD(LEARNING_RATES["sgd"], momentum=SGD_MOMENTUM)


def member_regularizer(variant, factor, group):
    """The kernel penalty of one member (`None` for the decay variants)."""
    if variant.decoupled:
        return None
    return ScaledL2(
        factor,
        variant.scale,
        num_examples=group.num_train if variant.num_examples else None,
        num_kernels=num_kernels(group.depth)
        if variant.normalize_depth
        else None,
    )


def member_decay(variant, factor, group):
    """The AdamW `weight_decay` of one member (0 for the penalties)."""
    if not variant.decoupled:
        return 0.0
    if variant.normalize_depth:
        return factor / num_kernels(group.depth)
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


def data_losses(y, predictions):
    """Per member, the float64 mean squared error of `predictions`."""
    y = y.astype(np.float64)[:, None]
    return np.mean((predictions.astype(np.float64) - y) ** 2, axis=0)


def member_metrics(y, predictions):
    """Per member, the rank correlation of predictions and targets."""
    return [
        rank_correlation(y, predictions[:, i])
        for i in range(predictions.shape[1])
    ]


def prediction_spread(y, predictions):
    """Per member, the prediction std over examples relative to y's."""
    spread = predictions.astype(np.float64).std(axis=0)
    return spread / float(np.std(y.astype(np.float64)))


def train_group(group, settings):
    """Trains one `Group`; returns one record per member."""
    (x, y), (x_test, y_test) = load_data(group.data, group.num_train, settings)
    members = [
        (variant, factor)
        for variant in variants_of(group, settings)
        for factor in factor_grid(variant, group.data, settings)
    ]
    regularizers = [member_regularizer(v, f, group) for v, f in members]
    decays = [member_decay(v, f, group) for v, f in members]
    keras.utils.clear_session()
    keras.utils.set_random_seed(group.seed)
    model = build_group(
        regularizers,
        x.shape[1],
        group.width,
        group.depth,
        group.seed,
    )
    model.compile(
        optimizer=make_optimizer(group.optimizer, decays),
        loss=group_mse,
    )
    start = time.perf_counter()
    model.fit(
        x,
        y,
        epochs=settings.epochs[group.data],
        batch_size=settings.batch_size[group.data],
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
