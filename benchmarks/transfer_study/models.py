"""The networks of a group: one Keras model of independent members.

Every layer of member `i` is named `member{i}_...`, so that its variables
(their paths) and penalties can be told apart (`member_index`).
"""

import keras
import numpy as np
from keras import ops

from keras_scaled_l2 import attach_regularizer
from transfer_study.settings import num_kernels

CLASSES = 10
"""MNIST-1D's digits."""


def member_index(path):
    """`3` for `"member3_dense2/kernel"` or `"member3_block0_attention/..."`.

    Every layer of member `i` is named `member{i}_...`; see `build_group`.
    """
    for part in path.split("/"):
        if part.startswith("member"):
            return int(part[len("member") :].split("_")[0])
    raise ValueError(f"{path!r} belongs to no member")


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
        expected = 0 if regularizer is None else num_kernels(family, depth)
        if count != expected:
            raise RuntimeError(
                f"member {index} has {count} penalised kernels, not the "
                f"{expected} that `num_kernels` (and so the derived rules) "
                "count"
            )
    return model


def _copy_first_member(model, count):
    by_member = [[] for _ in range(count)]
    for variable in model.weights:
        by_member[member_index(variable.path)].append(variable)
    for variables in by_member[1:]:
        for variable, first in zip(variables, by_member[0], strict=True):
            variable.assign(np.array(first.numpy()))
