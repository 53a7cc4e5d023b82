import warnings

import keras
import numpy as np
import pytest

from keras_scaled_l2 import CollapseMonitor, CollapseWarning, PenaltyLogger
from keras_scaled_l2.datasets import make_low_signal_tabular
from keras_scaled_l2.demo import build_mlp

DATA = make_low_signal_tabular(4000, 1000, seed=0)
PROBE = DATA[1][0][:256]


def _train(factor, monitor, extra_callbacks=(), epochs=6):
    """The demo's deep MLP on the demo's noisy data, under L2(factor)."""
    (x, y), _ = DATA
    keras.utils.set_random_seed(0)
    model = build_mlp(x.shape[1], lambda: keras.regularizers.L2(factor))
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    history = model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=32,
        verbose=0,
        callbacks=[monitor, *extra_callbacks],
    ).history
    return model, history


def _spread(model, probe=PROBE):
    return float(np.max(np.std(model.predict(probe, verbose=0), axis=0)))


class _UntrainedSpread(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.spread = _spread(self.model)


def test_warns_on_the_deep_mlp_under_keras_l2():
    monitor, untrained = CollapseMonitor(PROBE), _UntrainedSpread()
    with pytest.warns(CollapseWarning) as record:
        model, history = _train(0.01, monitor, [PenaltyLogger(), untrained])
    caught = [w for w in record if w.category is CollapseWarning]
    assert len(caught) == 1  # once, not at every collapsed epoch
    epoch = monitor.collapsed_epoch
    assert epoch is not None
    spreads = history["output_std"]
    # The monitor's peak counts the untrained network's spread too.
    peak = max(untrained.spread, *spreads)
    assert spreads[epoch] < 1e-3 * peak
    assert _spread(model) < 1e-3 * peak  # and it stays collapsed
    message = str(caught[0].message)
    assert message.startswith(f"Epoch {epoch + 1}: the predictions")
    assert f"output std {spreads[epoch]:.3g}" in message
    share = history["penalty"][epoch] / history["loss"][epoch]
    assert f"The penalty is {share:.0%} of the loss" in message
    for layer in model.layers[:4]:  # the hidden layers' kernels all shrank
        assert f"/{layer.name}/kernel (" in message
    assert "lower the penalty factor" in message


def test_silent_on_the_same_model_with_a_small_factor():
    monitor = CollapseMonitor(PROBE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        model, history = _train(1e-5, monitor)
    assert monitor.collapsed_epoch is None
    assert min(history["output_std"]) > 0.01
    assert history["output_std"][-1] == pytest.approx(_spread(model), rel=1e-4)


def test_silent_on_outputs_constant_from_the_start():
    # Identical probe rows: the outputs are the same whatever the weights.
    monitor = CollapseMonitor(np.repeat(PROBE[:1], 32, axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        _, history = _train(0.01, monitor, epochs=4)
    assert monitor.collapsed_epoch is None
    assert max(history["output_std"]) < 1e-6


def test_silent_on_a_model_that_never_had_any_spread():
    (x, y), _ = DATA
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(1, kernel_initializer="zeros"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.0), "mse")
    monitor = CollapseMonitor(PROBE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        model.fit(x, y, epochs=2, verbose=0, callbacks=[monitor])
    assert monitor.collapsed_epoch is None


def test_stop_training_and_restore_the_last_healthy_weights():
    monitor = CollapseMonitor(
        PROBE, stop_training=True, restore_healthy_weights=True
    )
    with pytest.warns(CollapseWarning):
        model, history = _train(0.01, monitor, epochs=10)
    epoch = monitor.collapsed_epoch
    assert len(history["loss"]) == epoch + 1  # stopped at the collapse
    healthy = history["output_std"][epoch - 1] if epoch else None
    assert healthy is not None and healthy > 1e-3 * max(history["output_std"])
    assert _spread(model) == pytest.approx(healthy, rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, name, expected, shown",
    [
        (
            {"probe_x": np.ones((1, 3))},
            "probe_x",
            "at least 2 samples",
            "'<1 sample(s)>'",
        ),
        (
            {"probe_x": 3.0},
            "probe_x",
            "arrays with a leading sample axis",
            "3.0",
        ),
        (
            {"min_relative_spread": 0},
            "min_relative_spread",
            "a float strictly between 0 and 1",
            "0",
        ),
        (
            {"min_relative_spread": 1.5},
            "min_relative_spread",
            "a float strictly between 0 and 1",
            "1.5",
        ),
        (
            {"kernel_rms_fraction": True},
            "kernel_rms_fraction",
            "a float strictly between 0 and 1",
            "True",
        ),
        (
            {"kernel_rms_fraction": "0.1"},
            "kernel_rms_fraction",
            "a float strictly between 0 and 1",
            "'0.1'",
        ),
        ({"stop_training": 1}, "stop_training", "True or False", "1"),
        (
            {"restore_healthy_weights": "yes"},
            "restore_healthy_weights",
            "True or False",
            "'yes'",
        ),
    ],
)
def test_bad_arguments(kwargs, name, expected, shown):
    kwargs = {"probe_x": PROBE, **kwargs}
    with pytest.raises(ValueError) as error:
        CollapseMonitor(**kwargs)
    assert str(error.value) == (
        f"Invalid value for argument `{name}`: expected {expected}. "
        f"Received: {name}={shown}"
    )


def test_collapse_warning_is_a_user_warning():
    assert issubclass(CollapseWarning, UserWarning)
