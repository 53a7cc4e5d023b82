"""A functional model using every regularizer class, for save/load tests."""

import keras

from keras_scaled_l2 import ScaledL1, ScaledL1L2, ScaledL2

INPUT_SHAPE = (4, 16)
REGULARIZER_CLASSES = [
    "keras_scaled_l2.regularizers.ScaledL1L2",
    "keras_scaled_l2.regularizers.ScaledL1",
    "keras_scaled_l2.regularizers.ScaledL2",
    "keras.src.regularizers.regularizers.L2",
    "keras_scaled_l2.regularizers.ScaledL2",
]
"""The class of each weight's regularizer, in `trainable_weights` order."""


def regularized_model():
    """EinsumDense with fan axes, Conv1D, Dense; ours and Keras's L2."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 16))
    x = keras.layers.EinsumDense(
        "abc,cde->abde",
        output_shape=(None, 2, 8),
        kernel_regularizer=ScaledL1L2(
            0.01, 0.02, input_axes=(0,), output_axes=(1, 2)
        ),
    )(inputs)
    x = keras.layers.Reshape((4, 16))(x)
    x = keras.layers.Conv1D(
        8,
        3,
        activation="relu",
        kernel_regularizer=ScaledL1(0.01, scale="fan_in", num_examples=100),
        bias_regularizer=ScaledL2(0.1, scale="none"),
    )(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(
        8, kernel_regularizer=keras.regularizers.L2(0.01), activation="tanh"
    )(x)
    outputs = keras.layers.Dense(
        1, kernel_regularizer=ScaledL2(0.05, scale="size")
    )(x)
    return keras.Model(inputs, outputs)
