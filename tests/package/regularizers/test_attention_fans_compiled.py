"""Canary: attention projections get their einsum fans inside a compiled step.

A `MultiHeadAttention` given one regularizer shares it between its four
`EinsumDense` projections, so the regularizer holds no fan axes of its own:
`ScaledRegularizer.__call__` finds the kernel whose penalty it computes by
looking up Keras's `Layer._get_regularization_losses` frame
(`_keras_internals.regularized_weight`), and where that finds nothing it
falls back to the Keras fan rule without a word. Here the lookup runs where
training runs it, inside each backend's compiled train step, and the penalty
Keras adds there is compared with a float64 reference.
"""

import keras
import numpy as np
import pytest
from logged import assert_parts_exact
from reference import reference_penalty

from keras_scaled_l2 import PenaltyLogger, ScaledL2, _keras_internals

L2 = 0.3
MODEL_DIM, HEADS, KEY_DIM, TOKENS = 4, 2, 3, 3
TOLERANCE = 1e-5  # relative: float32 kernels, summed in float32

# The fans `ScaledL2` documents for attention: a (hidden, heads, head_dim)
# query, key or value kernel counts hidden in and heads * head_dim out; the
# (heads, head_dim, hidden) output kernel the reverse. As kernel axes, with
# the `EinsumDense` equation each projection has:
PROJECTIONS = {
    "query": ("abc,cde->abde", (0,), (1, 2)),
    "key": ("abc,cde->abde", (0,), (1, 2)),
    "value": ("abc,cde->abde", (0,), (1, 2)),
    "attention_output": ("abcd,cde->abe", (0, 1), (2,)),
}


def _attending_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((TOKENS, MODEL_DIM))
    attention = keras.layers.MultiHeadAttention(
        num_heads=HEADS,
        key_dim=KEY_DIM,
        kernel_regularizer=ScaledL2(L2, scale="balanced"),
        name="attention",
    )
    x = keras.layers.Flatten()(attention(inputs, inputs))
    outputs = keras.layers.Dense(1)(x)
    return keras.Model(inputs, outputs), attention


def _projections(attention):
    """`{name: (equation, numpy kernel)}` of the four projections."""
    layers = {
        layer.name: layer for layer in _keras_internals.sublayers(attention)
    }
    return {
        name: (
            layers[name].equation.replace(" ", ""),
            keras.ops.convert_to_numpy(layers[name].kernel),
        )
        for name in PROJECTIONS
    }


def test_attention_projections_get_their_einsum_fans_in_a_compiled_step():
    model, attention = _attending_model()
    # XLA on TensorFlow, jax.jit on JAX. On PyTorch, jit_compile=True is
    # torch.compile: dynamo alone takes about 30 s of CPU on this one step
    # (some 200 frames of Keras's train step, 20 graph breaks), a cold
    # compile over a minute in all. The PyTorch leg runs the step eagerly,
    # through the same Keras frames.
    compiled = keras.backend.backend() != "torch"
    model.compile(
        keras.optimizers.SGD(0.0), "mse", metrics=["mse"], jit_compile=compiled
    )
    assert model.jit_compile == compiled
    projections = _projections(attention)
    # The reference's fan axes hold for the equations Keras uses.
    assert {name: p[0] for name, p in projections.items()} == {
        name: equation for name, (equation, _, _) in PROJECTIONS.items()
    }
    assert projections["query"][1].shape == (MODEL_DIM, HEADS, KEY_DIM)
    assert projections["attention_output"][1].shape == (
        HEADS,
        KEY_DIM,
        MODEL_DIM,
    )
    wants = {
        name: reference_penalty(
            projections[name][1], l2=L2, input_axes=ins, output_axes=outs
        )
        for name, (_, ins, outs) in PROJECTIONS.items()
    }
    want = sum(wants.values())
    # A lookup that finds nothing for any one projection gives it the Keras
    # rule of its plain shape (the last two axes, times the others): the
    # total then moves by far more than the tolerance. The canary can die.
    for name, (_, kernel) in projections.items():
        fallback = reference_penalty(kernel, l2=L2)
        assert abs(fallback - wants[name]) > 100 * TOLERANCE * want, name

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, TOKENS, MODEL_DIM)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")
    history = model.fit(
        x,
        y,
        epochs=1,
        batch_size=8,
        shuffle=False,
        verbose=0,
        callbacks=[PenaltyLogger()],
    ).history
    assert_parts_exact(history, prefixes=("",))
    # A learning rate of 0: the step saw the kernels the reference used.
    for name, (_, kernel) in _projections(attention).items():
        np.testing.assert_array_equal(kernel, projections[name][1], name)
    # The penalty Keras added inside the compiled step, as PenaltyLogger
    # recorded it there.
    assert history["penalty"][0] == pytest.approx(want, rel=TOLERANCE)
