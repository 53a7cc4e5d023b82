"""Property tests: one invariant, swept over random shapes and factors."""

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_penalty

from keras_scaled_l2 import SCALES, ScaledL1, ScaledL1L2, ScaledL2

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
shapes = st.lists(st.integers(1, 7), min_size=0, max_size=5).map(tuple)
factors = st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False)
scales = st.sampled_from(sorted(SCALES))
num_examples = st.one_of(st.none(), st.integers(1, 10**6))


def _kernel(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype("float32")


def _value(penalty):
    return float(keras.ops.convert_to_numpy(penalty))


@SETTINGS
@given(shapes, factors, factors, scales, num_examples, st.integers(0, 99))
def test_every_scale_matches_the_numpy_formula(shape, l1, l2, scale, m, seed):
    kernel = _kernel(shape, seed)
    got = _value(ScaledL1L2(l1, l2, scale=scale, num_examples=m)(kernel))
    want = reference_penalty(kernel, l1=l1, l2=l2, scale=scale, num_examples=m)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-30)


@SETTINGS
@given(shapes, factors, factors, st.integers(0, 99))
def test_scale_none_matches_keras(shape, l1, l2, seed):
    kernel = _kernel(shape, seed)
    pairs = [
        (ScaledL2(l2, scale="none"), keras.regularizers.L2(l2)),
        (ScaledL1(l1, scale="none"), keras.regularizers.L1(l1)),
        (
            ScaledL1L2(l1, l2, scale="none"),
            keras.regularizers.L1L2(l1, l2),
        ),
    ]
    for ours, theirs in pairs:
        assert _value(ours(kernel)) == pytest.approx(
            _value(theirs(kernel)), rel=1e-6, abs=1e-30
        )


@SETTINGS
@given(shapes, factors, factors, scales, st.integers(0, 99))
def test_l1l2_is_l1_plus_l2(shape, l1, l2, scale, seed):
    kernel = _kernel(shape, seed)
    both = _value(ScaledL1L2(l1, l2, scale=scale)(kernel))
    apart = _value(ScaledL1(l1, scale=scale)(kernel)) + _value(
        ScaledL2(l2, scale=scale)(kernel)
    )
    assert both == pytest.approx(apart, rel=1e-5, abs=1e-30)


large_shapes = st.lists(st.integers(4, 64), min_size=2, max_size=4).filter(
    lambda shape: 4096 <= np.prod(shape) <= 300_000
)


# Run once: a property of the balanced formula at Keras's Glorot draw; the
# backends' arithmetic is checked against numpy by the tests above (on JAX,
# each new shape costs a compilation, about 20 s for the sweep).
@pytest.mark.run_once
@SETTINGS
@given(large_shapes.map(tuple), st.floats(1e-4, 1.0), st.integers(0, 99))
def test_balanced_is_twice_the_factor_at_glorot_init(shape, l2, seed):
    kernel = keras.initializers.GlorotUniform(seed=seed)(shape)
    assert _value(ScaledL2(l2)(kernel)) == pytest.approx(2 * l2, rel=0.1)
