import keras
import numpy as np
import pytest

from keras_scaled_l2 import (
    SCALES,
    ScaledL1,
    ScaledL2,
    attach_regularizer,
    equivalent_factor,
    equivalent_model_factor,
    keras_factor_from_lambda,
    weight_decay_for_l2,
)

KERNEL = np.random.default_rng(0).normal(size=(3, 3, 16, 32)).astype("float32")


def _penalty(regularizer, kernel=KERNEL):
    return float(keras.ops.convert_to_numpy(regularizer(kernel)))


@pytest.mark.parametrize("from_scale", sorted(SCALES))
@pytest.mark.parametrize("to_scale", sorted(SCALES))
@pytest.mark.parametrize("cls", [ScaledL2, ScaledL1])
def test_equivalent_factor_gives_the_same_penalty(cls, from_scale, to_scale):
    converted = equivalent_factor(0.03, KERNEL.shape, from_scale, to_scale)
    assert _penalty(cls(converted, scale=to_scale)) == pytest.approx(
        _penalty(cls(0.03, scale=from_scale)), rel=1e-5
    )


def test_equivalent_factor_against_keras_l2_with_axes():
    shape = (16, 4, 8)
    kernel = np.random.default_rng(1).normal(size=shape).astype("float32")
    axes = {"input_axes": (0,), "output_axes": (1, 2)}
    factor = equivalent_factor(0.01, shape, "none", "balanced", **axes)
    assert factor == pytest.approx(0.01 * 512 / 48)
    assert _penalty(ScaledL2(factor, **axes), kernel) == pytest.approx(
        _penalty(keras.regularizers.L2(0.01), kernel), rel=1e-5
    )


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(512),
            keras.layers.Dense(64),
            keras.layers.Dense(10),
        ]
    )


# It replaces the penalties already on the kernels, on purpose.
@pytest.mark.filterwarnings("ignore:attach_regularizer replaced")
def test_equivalent_model_factor_keeps_the_total():
    model = _mlp()
    factor = equivalent_model_factor(model, 0.01, "none", "balanced")
    attach_regularizer(model, keras.regularizers.L2(0.01))
    plain = float(keras.ops.sum(model.losses))
    attach_regularizer(model, ScaledL2(factor))
    assert float(keras.ops.sum(model.losses)) == pytest.approx(plain, rel=1e-5)


def test_weight_decay_matches_l2_under_plain_sgd():
    # Coupled L2 in the loss and decoupled weight decay in the optimizer,
    # trained side by side: the same weights after several steps.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = rng.normal(size=(64, 1)).astype("float32")

    def train(regularizer, weight_decay):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(
                    1, use_bias=False, kernel_regularizer=regularizer
                ),
            ]
        )
        model.compile(
            keras.optimizers.SGD(0.1, weight_decay=weight_decay), "mse"
        )
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        return keras.ops.convert_to_numpy(model.layers[0].kernel)

    l2 = 0.05
    coupled = train(keras.regularizers.L2(l2), None)
    decoupled = train(None, weight_decay_for_l2(l2))
    plain = train(None, None)
    np.testing.assert_allclose(decoupled, coupled, rtol=1e-4, atol=1e-6)
    assert np.max(np.abs(plain - coupled)) > 1e-3  # the decay matters here


def test_keras_factor_from_lambda_is_the_textbook_cost():
    lam, m = 2.0, 5000
    factor = keras_factor_from_lambda(lam, m)
    # Exact: scalar IEEE arithmetic, the same on every processor.
    assert factor == lam / (2 * m)
    assert _penalty(keras.regularizers.L2(factor)) == pytest.approx(
        _penalty(ScaledL2(lam, scale="none", num_examples=m)), rel=1e-6
    )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: equivalent_factor(-1, (2, 2)), "Received: factor=-1"),
        (
            lambda: equivalent_factor(0.1, (2, 2), to_scale="mean"),
            "Received: to_scale='mean'",
        ),
        (lambda: weight_decay_for_l2("0.1"), "Received: l2='0.1'"),
        (lambda: keras_factor_from_lambda(1.0, 0), "Received: num_examples=0"),
        (
            lambda: keras_factor_from_lambda(1.0, None),
            "Received: num_examples=None",
        ),
        (lambda: equivalent_factor(0.1, (0, 3)), "has no elements"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()


def test_equivalent_factor_takes_axes_as_lists():
    as_lists = equivalent_factor(
        0.01, [16, 4, 8], "none", "fan_in", [0], [1, 2]
    )
    assert as_lists == equivalent_factor(
        0.01, (16, 4, 8), "none", "fan_in", (0,), (1, 2)
    )
    assert as_lists == pytest.approx(0.01 * 16)
