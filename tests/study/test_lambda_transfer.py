"""The lambda-transfer study: its shortcut is exact, its script runs.

The study trains many networks as members of one Keras model. That is only
sound if each member ends exactly where it would have ended alone, which
`test_members_train_as_if_alone` checks against plain Keras models.
"""

import dataclasses
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from nested_close import assert_nested_close
from project_paths import ROOT
from reference import reference_penalty
from transfer_study import (
    adam_decay,
    comparisons,
    curves,
    derived,
    grid,
    models,
    report,
    settings,
    summary,
    training,
)

from keras_scaled_l2 import ScaledL2

# The summary's floats are means, logs and parabola vertices that numpy
# recomputes with processor-dependent kernels: they agree across machines of
# one kind to about 1e-15, so 1e-9 still catches any change of the numbers.
SUMMARY_RTOL = 1e-9
SCRIPT = ROOT / "benchmarks" / "lambda_transfer.py"
RESULTS = ROOT / "benchmarks" / "results" / "lambda_transfer.json"


def _alone(regularizer, weights, optimizer):
    """A plain Keras MLP holding one member's initial weights."""
    model = keras.Sequential(
        [keras.Input((weights[0].shape[0],))]
        + [
            keras.layers.Dense(
                kernel.shape[1],
                activation="relu" if i < len(weights) // 2 - 1 else None,
                kernel_regularizer=regularizer,
            )
            for i, kernel in enumerate(weights[::2])
        ]
    )
    model.set_weights(weights)
    model.compile(optimizer=optimizer, loss=keras.losses.MeanSquaredError())
    return model


def _weights(layers):
    return [w for layer in layers for w in layer.get_weights()]


def _keras_optimizer(name, decay):
    """What a user would train one member with: Keras's own classes."""
    rate = settings.TABULAR_LEARNING_RATES[name]
    if name == "adam":
        return keras.optimizers.Adam(rate)
    if name == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=decay)
    return keras.optimizers.SGD(rate, momentum=training.SGD_MOMENTUM)


on_the_study_backend = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="the study's training is tested on JAX, the backend it runs on",
)


@on_the_study_backend
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adamw"])
def test_members_train_as_if_alone(optimizer):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 5)).astype("float32")
    y = rng.normal(size=(96,)).astype("float32")
    if optimizer == "adamw":
        members, decays = [None, None, None], [5.0, 50.0, 0.0]
    else:
        members = [
            ScaledL2(0.3, "none"),
            ScaledL2(3.0, "fan_in", num_kernels=3),
            None,
        ]
        decays = [0.0, 0.0, 0.0]
    group = models.build_group(members, 5, 8, 2, seed=1)
    group.compile(
        optimizer=training.make_optimizer(optimizer, decays),
        loss=training.group_mse,
    )
    layers = [
        [group.get_layer(f"member{m}_dense{p}") for p in range(3)]
        for m in range(len(members))
    ]
    initial = [_weights(member_layers) for member_layers in layers]
    # Same seed, same initial weights, whatever the penalty (bit-identical:
    # one generator state, no arithmetic).
    np.testing.assert_array_equal(initial[0][0], initial[1][0])
    alone = [
        _alone(regularizer, weights, _keras_optimizer(optimizer, decay))
        for regularizer, weights, decay in zip(
            members, initial, decays, strict=True
        )
    ]

    group.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    for model in alone:
        model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)

    for member_layers, model in zip(layers, alone, strict=True):
        trained = _weights(member_layers)
        for got, want in zip(trained, model.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # The members did move apart: the penalties (or decays) matter.
    for member in layers[:2]:
        assert not np.allclose(
            member[0].get_weights()[0],
            layers[2][0].get_weights()[0],
            rtol=1e-3,
            atol=1e-5,
        )


@on_the_study_backend
def test_kernel_only_decay_trains_as_keras_adamw_excluding_biases():
    # adamw_width.py's decay on the kernels only, against Keras's AdamW
    # told to leave the biases alone.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 5)).astype("float32")
    y = rng.normal(size=(96,)).astype("float32")
    decays = [5.0, 50.0]
    group = models.build_group([None, None], 5, 8, 2, seed=2)
    group.compile(
        optimizer=training.make_optimizer("adamw", decays, decay_biases=False),
        loss=training.group_mse,
    )
    layers = [
        [group.get_layer(f"member{m}_dense{p}") for p in range(3)]
        for m in range(2)
    ]
    alone = []
    for member_layers, decay in zip(layers, decays, strict=True):
        optimizer = _keras_optimizer("adamw", decay)
        optimizer.exclude_from_weight_decay(var_names=["bias"])
        alone.append(_alone(None, _weights(member_layers), optimizer))
    everything = _alone(
        None, _weights(layers[1]), _keras_optimizer("adamw", 50.0)
    )

    group.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    for model in [*alone, everything]:
        model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)

    for member_layers, model in zip(layers, alone, strict=True):
        trained = _weights(member_layers)
        for got, want in zip(trained, model.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # Decaying the biases too would have ended elsewhere.
    assert not np.allclose(
        layers[1][0].get_weights()[1],
        everything.layers[0].get_weights()[1],
        rtol=1e-3,
        atol=1e-5,
    )


def _member_variables(model, index):
    return [v for v in model.weights if models.member_index(v.path) == index]


# The study trains on JAX (its results file names the backend): its
# MNIST-1D training is tested there, and not again in every backend leg.
@on_the_study_backend
@pytest.mark.parametrize(
    ("family", "optimizer"),
    [("cnn", "adamw"), ("transformer", "adamw"), ("mlp", "sgd")],
)
def test_family_members_train_as_if_alone(family, optimizer):
    """Each member of a CNN, transformer or MLP group trains as alone.

    The reference is a group of one member, built by the same code, given
    the member's initial weights and the same batches.
    """
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 40)).astype("float32")
    y = rng.integers(0, 10, size=64).astype("int32")
    if optimizer == "adamw":
        members, decays = [None, None], [0.5, 0.0]
    else:
        members, decays = [ScaledL2(0.05, "balanced"), None], [0.0, 0.0]
    group = models.build_family_group(family, members, 40, 8, 1, seed=3)
    initial = [
        [np.array(v.numpy()) for v in _member_variables(group, m)]
        for m in range(2)
    ]
    # Same initial weights for both members (bit-identical: copies).
    for first, second in zip(*initial, strict=True):
        np.testing.assert_array_equal(first, second)
    group.compile(
        optimizer=training.make_optimizer(optimizer, decays, 1e-2),
        loss=training.group_cross_entropy,
    )
    group.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for index, regularizer in enumerate(members):
        alone = models.build_family_group(
            family, [regularizer], 40, 8, 1, seed=9
        )
        for variable, value in zip(alone.weights, initial[index], strict=True):
            variable.assign(value)
        alone.compile(
            optimizer=training.make_optimizer(
                optimizer, decays[index : index + 1], 1e-2
            ),
            loss=training.group_cross_entropy,
        )
        alone.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        trained = _member_variables(group, index)
        for got, want in zip(trained, alone.weights, strict=True):
            np.testing.assert_allclose(
                got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5
            )
    # The penalty (or decay) made a difference.
    assert not np.allclose(
        _member_variables(group, 0)[0].numpy(),
        _member_variables(group, 1)[0].numpy(),
        rtol=1e-3,
        atol=1e-5,
    )


KERNEL_COUNTS = {
    ("mlp", 1): 2,  # a hidden layer and the output
    ("mlp", 3): 4,
    ("cnn", 1): 2,  # a convolution and the output
    ("cnn", 3): 4,
    ("transformer", 1): 8,  # embedding, 4 projections, 2 feed-forward, out
    ("transformer", 3): 20,
}


@pytest.mark.parametrize(("family", "depth"), list(KERNEL_COUNTS))
def test_family_kernel_counts_and_penalties_match_a_numpy_reference(
    family, depth
):
    """Every family penalises its kernels, each with its fans.

    The transformer's attention projections take the fans of their einsum
    equations: query, key and value `(width, heads, key_dim)` have fan-in
    `width`, the output `(heads, key_dim, width)` `heads * key_dim`.
    """
    width = 8
    group = models.build_family_group(
        family, [ScaledL2(0.5, "fan_in"), None], 40, width, depth, seed=0
    )
    got = training.member_penalties(group, 2)
    regularized = [
        v for v in _member_variables(group, 0) if v.regularizer is not None
    ]
    assert len(regularized) == KERNEL_COUNTS[family, depth]
    assert settings.num_kernels(family, depth) == KERNEL_COUNTS[family, depth]
    assert not any(
        v.regularizer is not None for v in _member_variables(group, 1)
    )
    want = 0.0
    for variable in regularized:
        kernel = np.array(variable.numpy(), dtype=np.float64)
        if "attention" in variable.path and kernel.ndim == 3:
            fan_in = width  # query/key/value: width -> heads x key_dim
            if variable.path.split("/")[-2] == "attention_output":
                fan_in = kernel.shape[0] * kernel.shape[1]
        else:
            fan_in = int(np.prod(kernel.shape[:-1]))
        want += 0.5 * np.sum(kernel**2) / fan_in
    np.testing.assert_allclose(got[0], want, rtol=1e-5)
    assert got[1] == 0.0


@on_the_study_backend
def test_derived_rules_train_exactly_as_plain_l2_at_the_rescaled_factor():
    """What `derived.py` relies on, checked by training: `none/kernels` at
    `f * K` and `none+num_examples` at `f * 2 m` end where `none` at `f`
    does."""
    rng = np.random.default_rng(5)
    rows, factor, depth = 64, 0.05, 2
    x = rng.normal(size=(rows, 40)).astype("float32")
    y = rng.integers(0, 10, size=rows).astype("int32")
    kernels = settings.num_kernels("mlp", depth)
    members = [
        ScaledL2(factor, "none"),
        ScaledL2(factor * kernels, "none", num_kernels=kernels),
        ScaledL2(factor * 2 * rows, "none", num_examples=rows),
        None,
    ]
    group = models.build_family_group("mlp", members, 40, 16, depth, seed=1)
    group.compile(
        optimizer=training.make_optimizer("sgd", learning_rate=0.1),
        loss=training.group_cross_entropy,
    )
    group.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    plain = _member_variables(group, 0)
    for index in (1, 2):
        for got, want in zip(
            _member_variables(group, index), plain, strict=True
        ):
            np.testing.assert_allclose(
                got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6
            )
    # ... and the penalty made them differ from the unpenalized member.
    assert not np.allclose(
        plain[0].numpy(), _member_variables(group, 3)[0].numpy(), atol=1e-4
    )


def test_member_penalties_match_a_numpy_reference():
    members = [ScaledL2(0.5, "balanced"), ScaledL2(2.0, "size"), None]
    group = models.build_group(members, 4, 6, 2, seed=0)
    got = training.member_penalties(group, len(members))
    for index, regularizer in enumerate(members):
        kernels = [
            keras.ops.convert_to_numpy(
                group.get_layer(f"member{index}_dense{p}").kernel
            )
            for p in range(3)
        ]
        want = (
            0.0
            if regularizer is None
            else sum(
                reference_penalty(k, l2=regularizer.l2, scale=regularizer.scale)
                for k in kernels
            )
        )
        np.testing.assert_allclose(got[index], want, rtol=1e-5)


def test_data_losses_match_keras_losses():
    rng = np.random.default_rng(1)
    target = rng.normal(size=50).astype("float32")
    predictions = rng.normal(size=(50, 2)).astype("float32")
    mse = keras.losses.MeanSquaredError()
    want = [float(mse(target, predictions[:, m])) for m in range(2)]
    np.testing.assert_allclose(
        training.data_losses(target, predictions), want, rtol=1e-5
    )


def test_best_factor_finds_the_vertex_between_grid_points():
    factors = 10.0 ** np.arange(-4, 1, 0.5)
    vertex = -2.3
    losses = (np.log10(factors) - vertex) ** 2 + 1.0
    best, at_edge = curves.best_factor(factors, losses)
    assert not at_edge
    np.testing.assert_allclose(np.log10(best), vertex, atol=1e-9)
    best, at_edge = curves.best_factor(factors, np.arange(len(factors)))
    # Exact: at an edge the grid value itself is returned, not computed.
    assert at_edge and best == factors[0]


def test_best_factor_leans_towards_the_lower_neighbour():
    factors = 10.0 ** np.arange(-4, 1, 0.5)
    # A cliff right of the minimum (a collapse) must not pull the vertex
    # left: the right neighbour is almost as low, so the best lies near
    # the middle between the two.
    losses = np.array([5, 4, 3, 2, 1.0, 1.01, 9, 9, 9, 9])
    best, at_edge = curves.best_factor(factors, losses)
    assert not at_edge
    assert 0.45 < np.log10(best / factors[4]) / 0.5 < 0.5
    # A diverged neighbour: the grid point itself.
    losses[5] = np.inf
    assert curves.best_factor(factors, losses) == (factors[4], False)


@pytest.mark.run_once
def test_every_grid_has_nine_points_around_its_center_and_the_default():
    trained = 0
    for setup in settings.SETUPS:
        for variant in settings.summarized_variants(setup):
            if settings.trains_derived(setup.data) and variant.uniform:
                continue  # derived from `none` or `adamw`: no grid
            trained += 1
            factors = grid.factor_grid(variant, setup, settings.FULL)
            assert len(factors) >= 9
            assert np.all(np.diff(np.log10(factors)) > 0)
            default = (
                settings.KERAS_ADAMW_DEFAULT
                if variant.decoupled
                else settings.DEFAULT_FACTOR
            )
            assert (default in factors) != variant.num_examples
            # The points the best factor is located on (the lattice; an
            # off-lattice default only serves the collapse check) follow in
            # half-decade steps, an on-lattice default included: the
            # parabola through a minimum's neighbours assumes them.
            steps = 2 * np.log10(np.asarray(factors))
            lattice_steps = steps[np.abs(steps - np.round(steps)) < 1e-6]
            np.testing.assert_allclose(np.diff(lattice_steps), 1.0, atol=1e-6)
            # The center's penalty on the reference's hidden kernels is
            # the same for every variant of one kind, to the half step.
            lattice = (
                factors
                if len(factors) == 9
                else [f for f in factors if f != default]
            )
            width, depth = settings.FULL.shapes_of(setup).reference
            centers = np.sqrt(lattice[0] * lattice[-1]) * grid.multiplier(
                variant,
                setup.family,
                width,
                depth,
                settings.FULL.num_train[setup.data][0],
            )
            kind = "decay" if variant.decoupled else "l2"
            want = settings.FULL.center[kind][setup.architecture]
            assert abs(np.log10(centers / want)) <= 0.25 + 0.01
    # Every scale the package ships is trained somewhere.
    scales = {
        v.scale
        for setup in settings.SETUPS
        for v in settings.summarized_variants(setup)
    }
    assert scales >= {"none", "balanced", "size", "fan_in", "fan_out"}
    # Tabular: 4 variants under Adam and SGD, 2 under AdamW, on 2 data sets;
    # MNIST-1D: `none` and `balanced` under Adam and SGD, `adamw`, for 3
    # families, and the 3 other scales on the CNN under Adam.
    assert trained == 2 * (2 * 4 + 2) + 3 * (2 * 2 + 1) + 3


def test_cross_entropy_and_accuracy_match_keras():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 10, size=40).astype("int32")
    logits = rng.normal(size=(40, 3, 10)).astype("float32") * 3
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    want = [float(cross_entropy(labels, logits[:, m])) for m in range(3)]
    np.testing.assert_allclose(
        training.data_losses(labels, logits), want, rtol=1e-5
    )
    # The group loss is the members' sum, per example (Keras then means).
    group = keras.ops.convert_to_numpy(
        training.group_cross_entropy(labels, logits)
    )
    np.testing.assert_allclose(np.mean(group), sum(want), rtol=1e-5)
    accuracy = [
        float(np.mean(np.argmax(logits[:, m], axis=-1) == labels))
        for m in range(3)
    ]
    assert training.member_metrics(labels, logits) == accuracy
    # A member predicting one distribution for every input is collapsed.
    constant = np.repeat(logits[:1], 40, axis=0)
    constant[:, 1] = logits[:, 1]
    spread = training.prediction_spread(labels, constant)
    # (the std of equal floats is 0 up to the rounding of their mean)
    assert spread[0] < 1e-12 and spread[2] < 1e-12 and spread[1] > 0.1


def test_derived_records_are_the_source_runs_rescaled():
    record = {
        "family": "cnn",
        "data": "mnist1d",
        "variant": "none",
        "factor": 1e-3,
        "width": 32,
        "depth": 3,  # 3 convolutions and the output: 4 kernels
        "num_train": 4000,
        "test_data_loss": 0.25,
    }
    tabular = {**record, "family": "mlp", "data": "synthetic"}
    decay = {**record, "variant": "adamw", "factor": 0.1}
    got = derived.with_derived_records([record, tabular, decay])
    assert got[:3] == [record, tabular, decay]
    mnist1d = {r["variant"]: r for r in got[3:] if r["data"] == "mnist1d"}
    assert sorted(mnist1d) == [
        "adamw/kernels",
        "none+num_examples",
        "none+sqrt(num_examples)",
        "none/kernels",
        "none/kernels^2",
        "none/sqrt(kernels)",
    ]
    # The tabular setups train the uniform variants: only the candidates
    # are derived there (an MLP of depth 3 has 4 kernels too).
    on_tabular = {r["variant"]: r for r in got[3:] if r["data"] != "mnist1d"}
    assert sorted(on_tabular) == sorted(derived.CANDIDATES)
    # `none/kernels` at 4e-3 puts 4e-3 / 4 on each kernel: `none` at 1e-3.
    want = {
        "none/kernels": 4e-3,
        "none+num_examples": 1e-3 * 2 * 4000,
        "adamw/kernels": 0.4,
        "none/kernels^2": 16e-3,
        "none/sqrt(kernels)": 2e-3,
        "none+sqrt(num_examples)": 1e-3 * np.sqrt(4000),
    }
    for name, factor in want.items():
        np.testing.assert_allclose(mnist1d[name]["factor"], factor, rtol=1e-12)
        assert mnist1d[name]["test_data_loss"] == 0.25
        assert mnist1d[name]["source_factor"] == (
            0.1 if "adamw" in name else 1e-3
        )
    for name in derived.CANDIDATES:
        np.testing.assert_allclose(
            on_tabular[name]["factor"], want[name], rtol=1e-12
        )
    # And a `ScaledL2` of a derived variant at its factor is the same
    # penalty as the source's (float64 numpy reference).
    kernel = np.random.default_rng(0).normal(size=(3, 8, 8))
    np.testing.assert_allclose(
        reference_penalty(kernel, l2=4e-3, scale="none", num_kernels=4),
        reference_penalty(kernel, l2=1e-3, scale="none"),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        reference_penalty(kernel, l2=8.0, scale="none", num_examples=4000),
        reference_penalty(kernel, l2=1e-3, scale="none"),
        rtol=1e-12,
    )


def _entry(drift, upper, edge=False):
    return {"drift": drift, "drift_interval": [1.0, upper], "at_edge": [edge]}


def test_candidate_summary_takes_each_rule_where_it_applies():
    def setup(optimizer, kernels, squared):
        rows = {
            "none/kernels": kernels,
            "none/kernels^2": squared,
            "none/sqrt(kernels)": 1.1,
            "none+sqrt(num_examples)": 1.2,
        }
        return {
            "optimizer": optimizer,
            "scales": [
                {"variant": "none/kernels", "depth": _entry(kernels, 9.0)}
            ],
            "candidates": [
                {"variant": name, "depth": _entry(value, value + 1)}
                for name, value in rows.items()
                if name != "none/kernels"
            ],
        }

    setups = [setup("adam", 1.5, 4.0), setup("sgd", 3.0, 1.3)]
    setups.append({"optimizer": "adamw", "scales": [], "candidates": []})
    found = {e["rule"]: e for e in comparisons.candidate_summary(setups)}
    # Adam's `none/kernels` (1.5x) and SGD's `none/kernels^2` (1.3x).
    assert found["by optimizer"]["worst_drift"] == 1.5
    assert found["by optimizer"]["worst_drift_upper"] == 9.0
    assert found["by optimizer"]["within_target"]
    assert found["none/kernels^2"]["worst_drift"] == 4.0
    assert found["none/kernels^2"]["within_2x"] == 1
    assert found["none/kernels^2"]["comparisons"] == 2
    assert not found["none/kernels^2"]["within_target"]


def test_reuse_between_grid_points_interpolates_in_log_factor():
    factors = np.array([1e-3, 1e-2, 1e-1])
    losses = np.array([3.0, 1.0, 2.0])
    # On the grid: the value itself (exact).
    assert curves.value_at(factors, losses, 1e-2) == 1.0
    np.testing.assert_allclose(
        curves.value_at(factors, losses, 10**-1.5), 1.5, rtol=1e-12
    )


def _curve(factors, losses):
    losses = np.atleast_2d(np.asarray(losses, dtype=float))
    return (np.asarray(factors), losses, -losses, np.zeros_like(losses))


def test_plateau_holds_the_factors_the_seeds_cannot_tell_from_the_best():
    factors = np.array([1e-3, 1e-2, 1e-1, 1.0, 10.0])
    # Seeds agree that 1e-1 is best and 1.0 and 10.0 worse; 1e-2 is better
    # than the best for one seed, worse for the others: indistinguishable.
    # 1e-3 diverged for one seed: out, however good the others.
    losses = np.array(
        [
            [np.inf, 0.90, 1.00, 1.50, 3.0],
            [0.50, 1.30, 1.00, 1.40, 3.0],
            [0.50, 1.20, 1.00, 1.60, 3.0],
            [0.50, 0.95, 1.00, 1.45, 3.0],
        ]
    )
    rng = np.random.default_rng(0)
    assert curves.plateau(factors, losses, rng) == [1e-2, 1e-1]
    # Every paired difference positive: the best alone.
    clear = np.array([[2.0, 1.0, 3.0], [2.5, 1.0, 3.5]])
    assert curves.plateau(factors[:3], clear, rng) == [1e-2, 1e-2]
    # One seed: nothing to resample, the best alone.
    assert curves.plateau(factors[:3], clear[:1], rng) == [1e-2, 1e-2]
    # Gaps: overlapping plateaus carry one factor (1.0); apart, the
    # smallest ratio of one factor chosen in each.
    assert curves.plateau_gap([[1e-3, 1e-1], [1e-2, 1.0]]) == 1.0
    assert curves.plateau_gap([[1e-3, 1e-2], [1e-1, 1.0]]) == pytest.approx(10)
    assert curves.plateau_gap(
        [[1e-3, 1e-2], [10**-1.5, 1.0], [1e-2, 1e-2]]
    ) == pytest.approx(10**0.5)


def test_axis_entry_says_what_it_cannot_know():
    small = _curve([1e-3, 1e-2, 1e-1], [3.0, 1.0, 2.0])
    # The large model's grid is shifted (a derived variant on a deeper
    # model): the small model's best, 1e-2, lies between two of its points.
    shifted = _curve([10**-2.5, 10**-1.5, 10**-0.5], [2.0, 1.0, 3.0])
    entry = curves.axis_entry([small, shifted], "test/shifted")
    assert entry["drift_interval"] is None  # one seed: nothing to resample
    assert not entry["reused_on_grid"]
    np.testing.assert_allclose(entry["reused_loss_increase"], 0.5, rtol=1e-12)
    # Beyond the large model's grid: unknown, not the end's value.
    beyond = _curve([1e-1, 1.0, 10.0], [2.0, 1.0, 3.0])
    entry = curves.axis_entry([small, beyond], "test/beyond")
    assert entry["reused_loss_increase"] is None
    assert entry["reused_metric_change"] is None
    # With seeds, an interval that holds the drift, the same for one key.
    two = [
        _curve([1e-3, 1e-2, 1e-1], [[3.0, 1.0, 2.0], [3.0, 1.2, 1.0]]),
        _curve([1e-3, 1e-2, 1e-1], [[1.0, 2.0, 3.0], [2.0, 1.0, 3.0]]),
    ]
    first = curves.axis_entry(two, "test/seeds")
    low, high = first["drift_interval"]
    assert 1.0 <= low <= high
    assert curves.axis_entry(two, "test/seeds") == first


def test_gain_over_unpenalized_compares_means_over_the_seeds():
    def record(variant, factor, seed, loss):
        return {
            "family": "cnn",
            "data": "mnist1d",
            "width": 8,
            "variant": variant,
            "factor": factor,
            "seed": seed,
            "test_data_loss": loss,
            "test_metric": 0.5,
            "collapsed": False,
        }

    records = [
        record("none", 1e-3, 0, 0.8),
        record("none", 1e-3, 1, 0.6),  # mean 0.7: the best
        record("none", 1e-2, 0, 0.9),
        record("none", 1e-2, 1, 0.9),
        record("unpenalized", 0.0, 0, 1.0),
        record("unpenalized", 0.0, 1, 0.8),  # mean 0.9
    ]
    config = {"width": 8, "depth": 2, "num_train": 4000}
    records = [{**r, "depth": 2, "num_train": 4000} for r in records]
    got = comparisons.gain_over_unpenalized(
        records, {"width": [config]}, ["none"]
    )
    assert got["configurations"] == ["w8/d2/n4000"]
    np.testing.assert_allclose(got["change"]["none"], [0.7 / 0.9 - 1])


def test_complete_seeds_are_those_of_every_configuration():
    def record(depth, seed):
        return {"data": "mnist1d", "depth": depth, "seed": seed}

    records = [record(1, 0), record(1, 1), record(2, 0)]
    configs = {"depth": [{"depth": 1}, {"depth": 2}]}
    assert curves.complete_seeds(records, configs) == [0]
    assert curves.complete_seeds(records[:2], configs) == []
    assert curves.complete_seeds(records, {"depth": []}) == []


def _run(output, *extra):
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--output",
            str(output),
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def _trained(output):
    """The progress lines, one per group trained."""
    return [line for line in output.splitlines() if line.startswith("[")]


def test_quick_run_resumes_and_summarizes(tmp_path):
    if keras.backend.backend() != "jax":
        pytest.skip("the quick study runs in the jax leg, its fastest")
    first = _run(tmp_path, "--only", "diabetes")
    trained_first = _trained(first)
    second = _run(tmp_path)
    trained_second = _trained(second)
    assert not any("diabetes" in line for line in trained_second)
    expected = len(settings.groups(settings.QUICK))
    assert len(trained_first) + len(trained_second) == expected

    saved = json.loads((tmp_path / "lambda_transfer.json").read_text())
    for family in settings.FAMILIES:
        plot = tmp_path / f"lambda_transfer_{family}.png"
        assert plot.stat().st_size > 10_000
    keys = {settings.Group.of_record(r).key for r in saved["records"]}
    assert len(keys) == expected
    for record in saved["records"]:
        assert record["penalty"] >= 0 and record["test_data_loss"] > 0
    assert_nested_close(
        summary.summarize(saved["records"], settings.QUICK),
        saved["summary"],
        rel=SUMMARY_RTOL,
    )
    table = report.format_tables(saved["summary"])
    assert table in second
    for setup in saved["summary"]["setups"]:
        for row in setup["scales"]:
            for axis in ("width", "depth", "data size"):
                if axis in row:
                    entry = row[axis]
                    assert entry["drift"] >= 1.0
                    # One seed in the quick run: nothing to resample.
                    assert entry["drift_interval"] is None


@pytest.mark.run_once
def test_published_tables_are_the_published_summary():
    published = json.loads(RESULTS.read_text())
    assert published["mode"] == "full"
    assert published["settings"] == json.loads(
        json.dumps(dataclasses.asdict(settings.FULL))
    )
    # The study page shows every table rendered from the published summary,
    # and the README its headline table, character for character (text,
    # not recomputed floats).
    page = (ROOT / "docs" / "pages" / "study.md").read_text()
    readme = (ROOT / "README.md").read_text()
    tables = report.format_tables(published["summary"]).split("\n\n")
    # The candidates add two tables (per axis, and their worst cases).
    # Candidates and baselines add two tables each (the candidates per axis
    # and their worst cases; the baselines and the gain over no penalty).
    optional = ("candidates", "baselines", "across_families")
    present = [bool(published["summary"][key]) for key in optional]
    assert len(tables) == 9 + present[0] + present[1] + sum(present)
    for table in tables:
        assert table in page
    assert report.headline_table(published["summary"]) in readme
    # The published summary is what its records give, up to the last bits.
    assert_nested_close(
        summary.summarize(published["records"], settings.FULL),
        published["summary"],
        rel=SUMMARY_RTOL,
    )
    # Every record is of a group of the study; every tabular group is done,
    # and every setup summarized has all its groups for the seeds it names.
    study = {g.key: g for g in settings.groups(settings.FULL)}
    keys = {settings.Group.of_record(r).key for r in published["records"]}
    assert keys <= set(study)
    assert {k for k, g in study.items() if g.data != "mnist1d"} <= keys
    for setup in published["summary"]["setups"]:
        assert setup["seeds"]
        for key, group in study.items():
            if (
                group.setup._asdict()
                == {f: setup[f] for f in settings.Setup._fields}
                and group.seed in setup["seeds"]
            ):
                assert key in keys


def _cell(drift, gap, at_edge=False):
    return {
        "drift": drift,
        "drift_interval": [drift / 2, drift * 2],
        "at_edge": [False, at_edge],
        "plateau_gap": gap,
    }


@pytest.mark.run_once
def test_miss_table_lists_the_cells_over_2x_and_what_accounts_for_them():
    def setup(optimizer, name, width, depth, size, complete=True):
        return {
            "family": "mlp",
            "data": "synthetic",
            "optimizer": optimizer,
            "seeds": [0, 1],
            "complete": complete,
            "scales": [
                {
                    "variant": "none",
                    **dict.fromkeys(settings.AXES, _cell(9, 9)),
                },
                {
                    "variant": name,
                    "width": width,
                    "depth": depth,
                    "data size": size,
                },
            ],
        }

    fake = {
        "recommended": {"variant": "none/kernels"},
        "setups": [
            setup(
                "adam",
                "none/kernels",
                _cell(1.5, 1.0),  # within 2x: left out
                _cell(3.0, 1.0),  # over 2x, plateaus overlap
                _cell(1.2, 3.16, at_edge=True),  # at an edge: a bound
            ),
            setup(
                "adamw",
                "adamw",
                _cell(4.0, 3.16),
                _cell(3.0, 3.16),  # AdamW across depth: not measured
                _cell(1.1, 1.0),
            ),
            # Incomplete: left out whatever it drifts.
            setup("sgd", "none/kernels", *[_cell(50.0, 10.0)] * 3, False),
        ],
    }
    rows = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in report.miss_table(fake).splitlines()[2:]
    ]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("mlp on synthetic, adam: depth", "`none/kernels`", report.FLAT),
        (
            "mlp on synthetic, adam: data size",
            "`none/kernels`",
            report.MECHANISMS[("data size", False)],
        ),
        (
            "mlp on synthetic, adamw: width",
            "`adamw`",
            report.MECHANISMS[("width", True)],
        ),
        ("mlp on synthetic, adamw: depth", "`adamw`", "not measured"),
    ]
    assert rows[1][3] == "1.20x+ (0.60-2.40)"


@pytest.mark.run_once
def test_train_missing_trains_what_is_missing_and_resumes(tmp_path):
    import lambda_transfer

    todo = [
        settings.Group("mlp", "synthetic", "adam", 64, 2, 500, seed)
        for seed in range(3)
    ]

    def record(group):
        return {**group._asdict(), "group_seconds": 1.0}

    trained = []

    def train(group):
        trained.append(group)
        return [record(group)]

    path = tmp_path / "run.json"
    base = {"backend": "test"}
    records = lambda_transfer.train_missing(
        todo, train, path, base, [record(todo[1])]
    )
    assert trained == [todo[0], todo[2]]
    assert [r["seed"] for r in records] == [1, 0, 2]
    saved = json.loads(path.read_text())
    assert saved == {**base, "records": records, "summary": None}
    with pytest.raises(RuntimeError, match="no records"):
        lambda_transfer.train_missing(
            todo[:1], lambda group: [], path, base, []
        )


@pytest.mark.run_once
def test_a_group_refuses_variants_it_does_not_train():
    group = settings.Group("mlp", "synthetic", "adam", 256, 4, 500, 0)
    with pytest.raises(ValueError, match=r"no variant named \['adamw'\]"):
        training.group_members(group, settings.FULL, ("none", "adamw"))
    members = training.group_members(group, settings.FULL, ("none",))
    assert {variant.name for variant, _ in members} == {"none"}


def test_coupled_decay_rate_after_one_adam_step():
    # Two kernels with a bias between them, so the optimizer's variable
    # index matters. After one step, Adam's second moment is
    # `(1 - beta_2) * g**2`, so the divisor `(sqrt(v) + epsilon) /
    # sqrt(1 - beta_2)` is `|g| + epsilon / sqrt(1 - beta_2)`.
    rng = np.random.default_rng(0)
    values = [
        rng.normal(size=(3, 4)),
        rng.normal(size=(4,)),
        rng.normal(size=(4, 2)),
    ]
    gradients = [rng.normal(size=v.shape) for v in values]
    variables = [keras.Variable(v, dtype="float32") for v in values]
    optimizer = keras.optimizers.Adam(learning_rate=1e-2, epsilon=1e-3)
    optimizer.apply_gradients(
        zip(
            [keras.ops.convert_to_tensor(g, "float32") for g in gradients],
            variables,
            strict=True,
        )
    )
    kernels, pulls = [variables[0], variables[2]], [0.3, 0.05]
    shrink = norm = 0.0
    for kernel, pull, gradient in zip(
        kernels, pulls, [gradients[0], gradients[2]], strict=True
    ):
        gradient = gradient.astype(np.float32).astype(np.float64)
        squares = keras.ops.convert_to_numpy(kernel).astype(np.float64) ** 2
        divisor = np.abs(gradient) + 1e-3 / np.sqrt(1 - 0.999)
        shrink += np.sum(squares * pull / divisor)
        norm += np.sum(squares)
    # float32 moments: a relative tolerance well above float32 rounding.
    assert adam_decay.coupled_decay_rate(
        optimizer, kernels, pulls
    ) == pytest.approx(shrink / norm, rel=1e-5)
