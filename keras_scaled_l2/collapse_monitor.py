"""`CollapseMonitor`: catches a network that has come to predict a constant."""

from __future__ import annotations

import math
import warnings
from typing import Any

import keras
import numpy as np

from keras_scaled_l2._validation import (
    invalid_argument,
    validate_flag,
    validate_fraction,
)


class CollapseWarning(UserWarning):
    """Warned by `CollapseMonitor` when the predictions have become constant.

    A `UserWarning`, so the usual filters apply; e.g. to make it an error:

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error", CollapseWarning)
        ...     try:
        ...         warnings.warn("predictions are constant", CollapseWarning)
        ...     except CollapseWarning as caught:
        ...         print(type(caught).__name__)
        CollapseWarning
    """


class CollapseMonitor(keras.callbacks.Callback):
    """Warns when the model's predictions on a probe batch become constant.

    Under too strong a weight penalty, a deep network on noisy data can
    shrink every weight towards zero until it predicts one value for every
    input. Its loss still looks converged; only the spread of its outputs
    tells. At the start of training and at each epoch end this callback
    predicts on `probe_x` and logs `output_std`, the spread of the
    predictions over the probe's samples (the standard deviation over
    samples, taken per output unit, the largest of those).

    The predictions count as collapsed when `output_std` falls below
    `min_relative_spread` times the largest spread seen so far in this
    `fit` (the untrained network's included), so a collapse within the
    first epoch is caught too. A model whose outputs over the probe have
    never had any spread (a spread at or below `1e-6 * (1 + mean |output|)`)
    is not judged at all.

    On collapse it warns once with a `CollapseWarning` that names the
    epoch, the spread, the penalty's share of the loss, and the kernels
    whose RMS fell below `kernel_rms_fraction` of their value at the start
    of training; it can also stop training and restore the weights of the
    last healthy epoch. `collapsed_epoch` holds the (0-based) epoch of the
    collapse, or `None`.

    Examples:
        >>> import numpy as np
        >>> probe = np.random.default_rng(0).normal(size=(64, 8))
        >>> monitor = CollapseMonitor(probe, stop_training=True)

    Args:
        probe_x: Inputs to predict on, at least 2 samples, in any structure
            `model.predict` accepts. A few hundred rows of validation data
            are plenty.
        min_relative_spread: Float in `(0, 1)`; the collapse threshold,
            relative to the largest spread seen. Defaults to `1e-3`.
        kernel_rms_fraction: Float in `(0, 1)`; kernels whose RMS fell
            below this fraction of their starting RMS are named in the
            warning. Defaults to `0.1`.
        stop_training: Whether to stop training on collapse. Defaults to
            `False`.
        restore_healthy_weights: Whether to restore, on collapse, the
            weights of the last epoch whose predictions were not collapsed
            (or the initial weights). Defaults to `False`.
    """

    def __init__(
        self,
        probe_x: Any,
        min_relative_spread: float = 1e-3,
        kernel_rms_fraction: float = 0.1,
        stop_training: bool = False,
        restore_healthy_weights: bool = False,
    ) -> None:
        super().__init__()
        leaves = keras.tree.flatten(probe_x)
        if not leaves or any(np.ndim(leaf) < 1 for leaf in leaves):
            raise invalid_argument(
                "probe_x", "arrays with a leading sample axis", probe_x
            )
        num_samples = len(leaves[0])
        if num_samples < 2:
            raise invalid_argument(
                "probe_x",
                "at least 2 samples",
                f"<{num_samples} sample(s)>",
            )
        self.probe_x = probe_x
        self.min_relative_spread = validate_fraction(
            min_relative_spread, "min_relative_spread"
        )
        self.kernel_rms_fraction = validate_fraction(
            kernel_rms_fraction, "kernel_rms_fraction"
        )
        self.stop_training = validate_flag(stop_training, "stop_training")
        self.restore_healthy_weights = validate_flag(
            restore_healthy_weights, "restore_healthy_weights"
        )
        self.collapsed_epoch: int | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.collapsed_epoch = None
        self._peak_spread = 0.0
        self._start_rms = {w.path: _rms(w) for w in self._kernels()}
        self._healthy_weights = (
            self.model.get_weights() if self.restore_healthy_weights else None
        )
        self._observe()

    def on_epoch_end(
        self, epoch: int, logs: dict[str, Any] | None = None
    ) -> None:
        spread, collapsed = self._observe()
        if logs is not None:
            logs["output_std"] = spread
        if not collapsed:
            if self.restore_healthy_weights:
                self._healthy_weights = self.model.get_weights()
            return
        if self.collapsed_epoch is not None:
            return
        self.collapsed_epoch = epoch
        warnings.warn(
            self._message(epoch, spread, logs or {}),
            CollapseWarning,
            stacklevel=2,
        )
        if self.restore_healthy_weights:
            self.model.set_weights(self._healthy_weights)
        if self.stop_training:
            self.model.stop_training = True

    def _observe(self):
        """Returns the probe spread now and whether it counts as collapsed."""
        outputs = self.model.predict(self.probe_x, verbose=0)
        columns = np.concatenate(
            [
                np.reshape(np.asarray(o, np.float64), (len(o), -1))
                for o in keras.tree.flatten(outputs)
            ],
            axis=1,
        )
        spread = float(np.max(np.std(columns, axis=0)))
        floor = 1e-6 * (1.0 + float(np.mean(np.abs(columns))))
        self._peak_spread = max(self._peak_spread, spread)
        if not math.isfinite(spread) or self._peak_spread <= floor:
            return spread, False
        return spread, spread < self.min_relative_spread * self._peak_spread

    def _kernels(self):
        return [w for w in self.model.trainable_weights if len(w.shape) >= 2]

    def _message(self, epoch, spread, logs):
        shrunk = []
        for weight in self._kernels():
            start = self._start_rms.get(weight.path)
            if start and _rms(weight) < self.kernel_rms_fraction * start:
                shrunk.append(f"{weight.path} ({_rms(weight) / start:.2g}x)")
        share = _penalty_share(self.model, logs)
        return (
            f"Epoch {epoch + 1}: the predictions on the probe have collapsed "
            f"to a constant (output std {spread:.3g}, "
            f"{spread / self._peak_spread:.2g}x its peak of "
            f"{self._peak_spread:.3g}). The penalty is {share} of the loss. "
            "Kernels whose RMS fell below "
            f"{self.kernel_rms_fraction:g}x their starting value: "
            f"{', '.join(shrunk) or 'none'}. Hint: lower the penalty factor, "
            "or scale it by layer size (e.g. keras_scaled_l2.ScaledL2)."
        )


def _rms(weight):
    values = np.asarray(keras.ops.convert_to_numpy(weight), np.float64)
    return float(np.sqrt(np.mean(np.square(values)))) if values.size else 0.0


def _penalty_share(model, logs):
    """The penalty's share of the loss: logged by `PenaltyLogger`, or now."""
    loss = logs.get("loss")
    if loss is None or not loss:
        return "an unknown share"
    penalty = logs.get("penalty")
    if penalty is None:
        penalty = sum(
            float(keras.ops.convert_to_numpy(term)) for term in model.losses
        )
    return f"{penalty / loss:.0%}"
