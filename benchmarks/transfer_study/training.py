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

from keras_scaled_l2 import ScaledL2, attach_regularizer
from keras_scaled_l2.datasets import rank_correlation
from keras_scaled_l2.demo import COLLAPSE_RATIO
from transfer_study.data import load_data
from transfer_study.grid import factor_grid
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
    the Adam step, as `keras.optimizers.AdamW` does with its one rate.
    """

    def __init__(self, learning_rate, decays):
        super().__init__(learning_rate)
        self.decays = list(decays)

    def _apply_weight_decay(self, variables):
        for variable in variables:
            decay = self.decays[member_index(variable.path)]
            if decay:
                lr = ops.cast(self.learning_rate, variable.dtype)
                rate = ops.cast(decay, variable.dtype)
                variable.assign(variable - variable * rate * lr)


def member_index(path):
    """`3` for `"member3_dense2/kernel"` or `"member3_block0_attention/..."`.

    Every layer of member `i` is named `member{i}_...`; see `build_group`.
    """
    for part in path.split("/"):
        if part.startswith("member"):
            return int(part[len("member") :].split("_")[0])
    raise ValueError(f"{path!r} belongs to no member")


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


def build_group(members, num_features, width, depth, seed):
    """One Keras model of independent MLPs, one per regularizer in `members`.

    Every member gets the same initial weights (Glorot uniform seeded by
    `seed` and the layer's position). Output shape: `(batch, members)`.
    """
    return build_mlp_group(members, num_features, width, depth, seed, 1)


def build_mlp_group(members, num_features, width, depth, seed, outputs):
    """`build_group` with `outputs` units per member (more than 1: logits).

    Output shape: `(batch, members)` for one unit, else `(batch, members,
    outputs)`.
    """
    inputs = keras.Input((num_features,))
    results = []
    for index, regularizer in enumerate(members):
        hidden = inputs
        for position in range(depth + 1):
            last = position == depth
            hidden = keras.layers.Dense(
                outputs if last else width,
                activation=None if last else "relu",
                kernel_initializer=keras.initializers.GlorotUniform(
                    seed=1000 * seed + position
                ),
                kernel_regularizer=regularizer,
                name=f"member{index}_dense{position}",
            )(hidden)
        results.append(hidden)
    return keras.Model(inputs, _stacked(results, outputs))


def _stacked(results, outputs):
    if outputs == 1:
        return keras.layers.Concatenate()(results)
    expanded = [keras.layers.Reshape((1, outputs))(r) for r in results]
    return keras.layers.Concatenate(axis=1)(expanded)


CNN_STRIDED_LAYERS = 3
"""The first three convolutions halve the length (40, 20, 10, 5)."""


def build_cnn_member(inputs, index, width, depth, outputs):
    """`depth` ReLU `Conv1D` of `width` channels, then a dense output.

    The first convolution has a kernel of 5, the others 3, all with "same"
    padding; the first `CNN_STRIDED_LAYERS` have stride 2, as in MNIST-1D's
    own CNN (three convolutions of 25 channels, about 94 %).
    """
    name = f"member{index}"
    hidden = keras.layers.Reshape((inputs.shape[1], 1), name=f"{name}_seq")(
        inputs
    )
    for position in range(depth):
        hidden = keras.layers.Conv1D(
            width,
            5 if position == 0 else 3,
            strides=2 if position < CNN_STRIDED_LAYERS else 1,
            padding="same",
            activation="relu",
            name=f"{name}_conv{position}",
        )(hidden)
    hidden = keras.layers.Flatten(name=f"{name}_flat")(hidden)
    return keras.layers.Dense(outputs, name=f"{name}_out")(hidden)


TRANSFORMER_PATCH = 5
"""Each token is a patch of 5 consecutive values: 8 tokens of 40."""
TRANSFORMER_HEADS = 4


class SinusoidalPositions(keras.layers.Layer):
    """Adds the fixed sinusoidal position encoding (no weights)."""

    def call(self, tokens):
        length, width = tokens.shape[1], tokens.shape[2]
        position = np.arange(length)[:, None]
        rate = 1.0 / 10000 ** (2 * (np.arange(width)[None, :] // 2) / width)
        angle = position * rate
        table = np.where(
            np.arange(width) % 2 == 0, np.sin(angle), np.cos(angle)
        )
        return tokens + ops.cast(table[None], tokens.dtype)


def build_transformer_member(inputs, index, width, depth, outputs):
    """A pre-norm transformer encoder over patches, then a dense output.

    Patch embedding (`Dense` of `width` on each 5-value patch), fixed
    sinusoidal positions, `depth` blocks of 4-head `MultiHeadAttention` and
    a ReLU feed-forward of `2 * width` (each behind a `LayerNormalization`,
    with a residual), a final normalization, mean over the tokens.
    """
    name = f"member{index}"
    tokens = keras.layers.Reshape(
        (inputs.shape[1] // TRANSFORMER_PATCH, TRANSFORMER_PATCH),
        name=f"{name}_patches",
    )(inputs)
    hidden = keras.layers.Dense(width, name=f"{name}_embed")(tokens)
    hidden = SinusoidalPositions(name=f"{name}_positions")(hidden)
    for block in range(depth):
        prefix = f"{name}_block{block}"
        normed = keras.layers.LayerNormalization(name=f"{prefix}_norm1")(hidden)
        attended = keras.layers.MultiHeadAttention(
            TRANSFORMER_HEADS,
            width // TRANSFORMER_HEADS,
            name=f"{prefix}_attention",
        )(normed, normed)
        hidden = keras.layers.Add(name=f"{prefix}_add1")([hidden, attended])
        normed = keras.layers.LayerNormalization(name=f"{prefix}_norm2")(hidden)
        fed = keras.layers.Dense(
            2 * width, activation="relu", name=f"{prefix}_ffn1"
        )(normed)
        fed = keras.layers.Dense(width, name=f"{prefix}_ffn2")(fed)
        hidden = keras.layers.Add(name=f"{prefix}_add2")([hidden, fed])
    hidden = keras.layers.LayerNormalization(name=f"{name}_norm")(hidden)
    hidden = keras.layers.GlobalAveragePooling1D(name=f"{name}_pool")(hidden)
    return keras.layers.Dense(outputs, name=f"{name}_out")(hidden)


MEMBER_BUILDERS = {
    "cnn": build_cnn_member,
    "transformer": build_transformer_member,
}


def build_family_group(family, members, num_features, width, depth, seed):
    """One model of independent 10-class networks of `family`.

    MLPs are built as `build_mlp_group` builds them. For the CNN and the
    transformer, member 0 is initialized by Keras's defaults (seeded by
    `seed`) and every other member gets a copy of its initial weights.
    Every penalty is attached by `attach_regularizer`, as a user would
    attach it: `MultiHeadAttention` projections get the fans of their
    einsum equations. Output: logits, `(batch, members, 10)`.
    """
    if family == "mlp":
        model = build_mlp_group(
            [None] * len(members), num_features, width, depth, seed, CLASSES
        )
    else:
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((num_features,))
        results = [
            MEMBER_BUILDERS[family](inputs, index, width, depth, CLASSES)
            for index in range(len(members))
        ]
        model = keras.Model(inputs, _stacked(results, CLASSES))
        _copy_first_member(model, len(members))

    def factory(layer, weight):
        return members[member_index(weight.path)]

    attached = attach_regularizer(model, factory)
    for index, regularizer in enumerate(members):
        count = sum(member_index(path) == index for path in attached)
        expected = num_kernels(family, depth) if regularizer else 0
        if count != expected:
            raise AssertionError(
                f"member {index} has {count} penalised kernels, not {expected}"
            )
    return model


def _copy_first_member(model, count):
    by_member = [[] for _ in range(count)]
    for variable in model.weights:
        by_member[member_index(variable.path)].append(variable)
    for variables in by_member[1:]:
        for variable, first in zip(variables, by_member[0], strict=True):
            variable.assign(np.array(first.numpy()))


def make_optimizer(name, decays=None, learning_rate=None):
    """The optimizer of a group; `decays` per member for `"adamw"`.

    `learning_rate` defaults to the tabular setups' rate of `name`.
    """
    if learning_rate is None:
        learning_rate = TABULAR_LEARNING_RATES[name]
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return MemberAdamW(learning_rate, decays)
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


CLASSES = 10


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


def _softmax(logits):
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def data_losses(y, predictions):
    """Per member, the float64 mean squared error or cross-entropy."""
    if predictions.ndim == 3:
        probabilities = _softmax(predictions)
        picked = np.take_along_axis(
            probabilities, y.astype(int)[:, None, None], axis=-1
        )[..., 0]
        return -np.mean(np.log(picked), axis=0)
    y = y.astype(np.float64)[:, None]
    return np.mean((predictions.astype(np.float64) - y) ** 2, axis=0)


def group_members(group, settings):
    """`(variant, factor)` per member; `(None, 0.0)`: unpenalized."""
    members = [
        (variant, factor)
        for variant in trained_variants(group, settings)
        for factor in factor_grid(variant, group.setup, settings)
    ]
    if trains_derived(group.data):
        members.append((None, 0.0))
    return members


def train_group(group, settings):
    """Trains one `Group`; returns one record per member."""
    (x, y), (x_test, y_test) = load_data(group.data, group.num_train, settings)
    members = group_members(group, settings)
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
        optimizer=make_optimizer(group.optimizer, decays, learning_rate),
        loss=loss,
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
