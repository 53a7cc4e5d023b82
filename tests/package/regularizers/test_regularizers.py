import keras
import numpy as np
import pytest
from reference import reference_penalty

from keras_scaled_l2 import SCALES, ScaledL1, ScaledL1L2, ScaledL2

FACTORS = {
    ScaledL2: {"l2": 0.03},
    ScaledL1: {"l1": 0.02},
    ScaledL1L2: {"l1": 0.02, "l2": 0.03},
}


def _einsum_dense(**kwargs):
    return keras.layers.EinsumDense(
        "abc,cde->abde", output_shape=(None, 4, 8), **kwargs
    )


# (layer factory, regularizer argument, weight attribute, input shape, axes)
KERNEL_KINDS = {
    "dense": (
        lambda **kw: keras.layers.Dense(7, **kw),
        "kernel_regularizer",
        "kernel",
        (5,),
        {},
    ),
    "dense_bias": (
        lambda **kw: keras.layers.Dense(7, bias_initializer="ones", **kw),
        "bias_regularizer",
        "bias",
        (5,),
        {},
    ),
    "conv1d": (
        lambda **kw: keras.layers.Conv1D(4, 3, **kw),
        "kernel_regularizer",
        "kernel",
        (10, 3),
        {},
    ),
    "conv2d": (
        lambda **kw: keras.layers.Conv2D(4, (3, 2), **kw),
        "kernel_regularizer",
        "kernel",
        (8, 8, 3),
        {},
    ),
    "conv3d": (
        lambda **kw: keras.layers.Conv3D(2, 2, **kw),
        "kernel_regularizer",
        "kernel",
        (4, 4, 4, 3),
        {},
    ),
    "conv2d_transpose": (
        lambda **kw: keras.layers.Conv2DTranspose(4, 3, **kw),
        "kernel_regularizer",
        "kernel",
        (6, 6, 5),
        {},
    ),
    "depthwise_conv2d": (
        lambda **kw: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, **kw),
        "depthwise_regularizer",
        "kernel",
        (6, 6, 5),
        {},
    ),
    "separable_depthwise": (
        lambda **kw: keras.layers.SeparableConv2D(4, 3, **kw),
        "depthwise_regularizer",
        "depthwise_kernel",
        (6, 6, 5),
        {},
    ),
    "separable_pointwise": (
        lambda **kw: keras.layers.SeparableConv2D(4, 3, **kw),
        "pointwise_regularizer",
        "pointwise_kernel",
        (6, 6, 5),
        {},
    ),
    "embedding": (
        lambda **kw: keras.layers.Embedding(50, 6, **kw),
        "embeddings_regularizer",
        "embeddings",
        (3,),
        {},
    ),
    "einsum_dense": (
        _einsum_dense,
        "kernel_regularizer",
        "kernel",
        (3, 16),
        {"input_axes": (0,), "output_axes": (1, 2)},
    ),
    "lstm_kernel": (
        lambda **kw: keras.layers.LSTM(5, **kw),
        "kernel_regularizer",
        "kernel",
        (4, 3),
        {},
    ),
    "lstm_recurrent_kernel": (
        lambda **kw: keras.layers.LSTM(5, **kw),
        "recurrent_regularizer",
        "recurrent_kernel",
        (4, 3),
        {},
    ),
}


def _build(kind, regularizer):
    make_layer, argument, attribute, input_shape, _ = KERNEL_KINDS[kind]
    layer = make_layer(**{argument: regularizer})
    layer.build((2, *input_shape))
    owner = layer.cell if isinstance(layer, keras.layers.RNN) else layer
    weight = keras.ops.convert_to_numpy(getattr(owner, attribute))
    return layer, weight


@pytest.mark.parametrize("kind", sorted(KERNEL_KINDS))
@pytest.mark.parametrize("scale", sorted(SCALES))
@pytest.mark.parametrize("cls", list(FACTORS), ids=lambda c: c.__name__)
def test_layer_penalty_matches_numpy_reference(kind, scale, cls):
    axes = KERNEL_KINDS[kind][4]
    regularizer = cls(**FACTORS[cls], scale=scale, **axes)
    layer, weight = _build(kind, regularizer)
    assert len(layer.losses) == 1
    got = float(layer.losses[0])
    want = reference_penalty(weight, **FACTORS[cls], scale=scale, **axes)
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("scale", sorted(SCALES))
@pytest.mark.parametrize("cls", list(FACTORS), ids=lambda c: c.__name__)
def test_num_kernels_divides_the_penalty(cls, scale):
    weight = np.random.default_rng(3).normal(size=(12, 5)).astype("float32")
    regularizer = cls(**FACTORS[cls], scale=scale, num_kernels=6)
    got = float(regularizer(weight))
    want = reference_penalty(weight, **FACTORS[cls], scale=scale) / 6
    assert got == pytest.approx(want, rel=1e-5)


def test_einsum_dense_axes_differ_from_the_conv_rule():
    # The reason for `input_axes` / `output_axes`: with the conv rule this
    # (16, 4, 8) kernel would count fans of 64 and 128, not 16 and 32.
    with_axes = ScaledL2(1.0, input_axes=(0,), output_axes=(1, 2))
    conv_rule = ScaledL2(1.0)
    # Exact: integer fans and one division, exact in binary floating point.
    assert with_axes.multiplier((16, 4, 8)) == (16 + 32) / 512
    assert conv_rule.multiplier((16, 4, 8)) == (64 + 128) / 512


KERAS_TWINS = [
    (ScaledL2, keras.regularizers.L2, {"l2": 0.37}),
    (ScaledL1, keras.regularizers.L1, {"l1": 0.37}),
    (ScaledL1L2, keras.regularizers.L1L2, {"l1": 0.21, "l2": 0.37}),
    (ScaledL1L2, keras.regularizers.L1L2, {"l2": 0.37}),
    (ScaledL1L2, keras.regularizers.L1L2, {}),
]


@pytest.mark.parametrize("ours, theirs, factors", KERAS_TWINS)
@pytest.mark.parametrize(
    "shape", [(), (9,), (31, 17), (3, 3, 8, 16), (1024, 64)]
)
def test_scale_none_equals_keras(ours, theirs, factors, shape):
    rng = np.random.default_rng(0)
    kernel = keras.Variable(rng.normal(size=shape).astype("float32"))
    got = keras.ops.convert_to_numpy(ours(**factors, scale="none")(kernel))
    want = keras.ops.convert_to_numpy(theirs(**factors)(kernel))
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_kernels_accumulate_in_float32(dtype):
    kernel = keras.Variable(np.ones((1024, 1024)), dtype=dtype)
    ours = keras.ops.convert_to_numpy(ScaledL2(0.01, scale="none")(kernel))
    assert ours.dtype == np.float32
    assert float(ours) == pytest.approx(10485.76, rel=1e-6)


def test_keras_l2_overflows_where_ours_does_not():
    kernel = keras.Variable(np.ones((1024, 1024)), dtype="float16")
    keras_penalty = keras.regularizers.L2(0.01)(kernel)
    assert np.isinf(keras.ops.convert_to_numpy(keras_penalty))


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_low_precision_matches_float32_reference(scale):
    rng = np.random.default_rng(3)
    weights = rng.normal(scale=0.05, size=(300, 200)).astype("float16")
    got = float(ScaledL1L2(0.01, 0.02, scale=scale)(keras.Variable(weights)))
    want = reference_penalty(weights, l1=0.01, l2=0.02, scale=scale)
    assert got == pytest.approx(want, rel=1e-5)


def test_penalty_is_traced_once_per_shape_as_a_constant():
    # Inside a compiled function the multiplier is a Python float: the
    # penalty graph is Keras's L2 graph with another constant.
    regularizer = ScaledL2(0.01)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, kernel_regularizer=regularizer),
            keras.layers.Dense(1, kernel_regularizer=regularizer),
        ]
    )
    model.compile("sgd", "mse", jit_compile=False)
    x = np.ones((4, 8), "float32")
    logs = model.train_on_batch(x, np.zeros((4, 1)), return_dict=True)
    assert np.isfinite(logs["loss"])
    kernels = [layer.kernel for layer in model.layers]
    want = sum(
        reference_penalty(keras.ops.convert_to_numpy(k), l2=0.01)
        for k in kernels
    )
    assert float(keras.ops.sum(model.losses)) == pytest.approx(want, rel=1e-5)
