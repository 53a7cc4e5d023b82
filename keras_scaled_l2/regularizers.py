"""Weight penalties scaled by the shape of the kernel they regularize."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Any, TypeVar

import keras
import numpy as np
from keras import ops

from keras_scaled_l2 import _keras_internals
from keras_scaled_l2._kernels import weight_fan_axes
from keras_scaled_l2._types import FanAxes, Tensor
from keras_scaled_l2._validation import (
    invalid_argument,
    shown,
    validate_anchor,
    validate_axes_pair,
    validate_choice,
    validate_factor,
    validate_optional_positive_int,
)
from keras_scaled_l2.scales import FAN_SCALES, SCALES, shape_multiplier

_LOW_PRECISION_DTYPES = ("float16", "bfloat16")

_RegularizerT = TypeVar("_RegularizerT", bound="ScaledRegularizer")


class ScaledRegularizer(
    keras.regularizers.Regularizer, _keras_internals.KerasSaveable
):
    """Base class of the scaled penalties: `factor * s(shape) * norm(w - w0)`.

    It holds what the three public classes share: the scale, the optional
    data-set size and fan axes, the shape multiplier `s(shape)`, the
    optional starting weights `w0` (zero when there are none), float32
    accumulation for low-precision kernels and the config. A subclass only
    names its factors and computes its norm.

    Starting weights (L2-SP, Li et al. 2018) pull a fine-tuned kernel
    toward its pretrained values rather than toward zero. They cost one
    more copy of the kernel, held in float32 (float64 if given float64
    values, where the backend holds float64). A config holds only their
    shape and dtype; their values are saved with the model's weights
    (`.keras` files, `save_weights`), and `keras.models.load_model` and
    `load_weights` restore them. A `.h5` file cannot hold them, so saving
    one with them raises a `ValueError`.

    Args:
        scale: How the penalty is scaled from the kernel's shape, one of
            `"none"`, `"size"`, `"fan_in"`, `"fan_out"`, `"balanced"` (see
            `keras_scaled_l2.scales`).
        num_examples: Optional positive int `m`, the number of training
            examples; multiplies the penalty by `1 / (2 * m)`.
        input_axes: Optional tuple of ints, the kernel axes contracted with
            the layer's input. Given together with `output_axes`.
        output_axes: Optional tuple of ints, the kernel axes of the layer's
            output.
        num_kernels: Optional positive int `K`, the number of kernels of the
            model that carry this penalty; divides the penalty by `K`, so the
            model's total is the factor times the mean over its kernels.
            `attach_regularizer(..., normalize_depth=True)` sets it.
        anchor: Optional starting weights `w0` of the kernel, an array of
            its shape: the penalty is then that of `w - w0`.
            `attach_regularizer(..., anchor=True)` sets each kernel's own.

    Examples:
        >>> isinstance(ScaledL2(0.01), ScaledRegularizer)
        True
        >>> ScaledL2(0.01, scale="none", num_kernels=4).multiplier((256, 128))
        0.25
    """

    def __init__(
        self,
        *,
        scale: str = "balanced",
        num_examples: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
        num_kernels: int | None = None,
        anchor: Any = None,
    ) -> None:
        self.scale = validate_choice(scale, "scale", tuple(SCALES))
        self.num_examples = validate_optional_positive_int(
            num_examples, "num_examples"
        )
        self.input_axes, self.output_axes = validate_axes_pair(
            input_axes, output_axes
        )
        self.num_kernels = validate_optional_positive_int(
            num_kernels, "num_kernels"
        )
        self._anchor: keras.Variable | None = None
        # Where the last save put the starting weights in the weights file.
        self._saved_at: str | None = None
        self._anchor_config: dict[str, Any] | None = None
        # Starting weights taken from a kernel are placed as the kernel is.
        like = anchor if isinstance(anchor, keras.Variable) else None
        anchor = validate_anchor(anchor)
        if isinstance(anchor, dict):
            self._anchor_config = anchor  # values come with the weights
        elif anchor is not None:
            self._set_anchor(anchor, like)

    @property
    def anchored(self) -> bool:
        """Whether the penalty pulls toward starting weights, not zero."""
        return self._anchor_config is not None

    def anchor_values(self) -> np.ndarray | None:
        """Returns a numpy copy of the starting weights, `None` if none.

        Raises:
            ValueError: if the regularizer was rebuilt from its config
                alone and its starting weights were not restored.
        """
        if self._anchor_config is None:
            return None
        return np.array(ops.convert_to_numpy(self._restored_anchor().value))

    def _set_anchor(
        self, values: np.ndarray, like: keras.Variable | None = None
    ) -> None:
        """Sets the starting weights to `values`, placed as `like` (the
        kernel) is under a distribution: sharded where it is sharded."""
        shape = list(values.shape)
        if self._anchor_config is not None and (
            self._anchor_config["shape"] != shape
        ):
            raise invalid_argument(
                "anchor",
                f"starting weights of shape {self._anchor_config['shape']}, "
                "as its config says",
                shown(f"<array of shape {values.shape}>"),
            )
        if self._anchor is not None:
            # Reloaded weights: into the variable that traced TensorFlow and
            # PyTorch steps read (a jitted JAX step holds the old values
            # until it is traced again), in the dtype it holds.
            held = keras.backend.standardize_dtype(self._anchor.dtype)
            self._anchor.assign(values.astype(held))
            return
        # A Keras variable: TensorFlow's and PyTorch's steps read it, it is
        # mirrored under `tf.distribute` and laid out under a
        # `keras.distribution` (as its kernel, or else replicated); a jitted
        # JAX step holds its value.
        placed: contextlib.AbstractContextManager[dict[str, Any]] = (
            contextlib.nullcontext({})
            if like is None
            else _keras_internals.laid_out_like(like)
        )
        with placed as arguments:
            self._anchor = keras.Variable(
                values,
                trainable=False,
                autocast=False,
                name="anchor",
                **arguments,
            )
        # The dtype the backend holds: float32 for float64 values where it
        # computes in float32 only (JAX without x64), as the kernel too.
        dtype = keras.backend.standardize_dtype(self._anchor.dtype)
        self._anchor_config = {"shape": shape, "dtype": dtype}

    def _restored_anchor(self) -> keras.Variable:
        if self._anchor is None:
            shape = tuple(self._anchor_config["shape"])  # type: ignore[index]
            raise ValueError(
                f"{type(self).__name__} pulls toward starting weights of "
                f"shape {shape} that were not "
                "restored: it was rebuilt from its config alone (as "
                "from_config and keras.models.clone_model do), and a config "
                "holds only their shape. They are saved with the model's "
                "weights: load the model with keras.models.load_model or "
                "keras_scaled_l2.load_model, or its weights with "
                "load_weights, or attach the penalty again with "
                "attach_regularizer(..., anchor=True)."
            )
        return self._anchor

    def _anchor_of(self, x: Tensor) -> Tensor:
        """The starting weights of kernel `x`, in `x`'s dtype."""
        anchor = self._restored_anchor()
        if tuple(x.shape) != tuple(anchor.shape):
            raise invalid_argument(
                "anchor",
                f"starting weights of the kernel's shape {tuple(x.shape)}",
                shown(f"<array of shape {tuple(anchor.shape)}>"),
            )
        if keras.backend.standardize_dtype(anchor.dtype) == (
            keras.backend.standardize_dtype(x.dtype)
        ):
            return anchor.value
        return ops.cast(anchor, x.dtype)

    def fan_axes(
        self,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> FanAxes:
        """Returns the fan axes the penalty of a kernel is computed with.

        The regularizer's own `input_axes` / `output_axes` when it has them,
        else the kernel's (those of its `EinsumDense` equation, passed
        here), else `(None, None)`: the Keras fan rule. This is the one
        place where that is decided.

        Examples:
            >>> ScaledL2(0.01).fan_axes((0,), (1, 2))
            ((0,), (1, 2))
            >>> ScaledL2(0.01, input_axes=(0, 1), output_axes=(2,)).fan_axes(
            ...     (0,), (1, 2)
            ... )
            ((0, 1), (2,))

        Args:
            input_axes: Optional fan axes of the kernel itself.
            output_axes: Optional, given with `input_axes`.
        """
        if self.input_axes is not None:
            return self.input_axes, self.output_axes
        return _as_tuple(input_axes), _as_tuple(output_axes)

    def multiplier(
        self,
        shape: Sequence[int | None],
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> float:
        """Returns `s(shape)` for this regularizer, as a Python float.

        `num_examples` and `num_kernels` are included.

        Args:
            shape: The kernel shape, a sequence of ints.
            input_axes: Optional fan axes of the kernel, used when the
                regularizer has none of its own. Defaults to `None`.
            output_axes: Optional, given with `input_axes`.
        """
        multiplier = shape_multiplier(
            shape,
            self.scale,
            self.num_examples,
            *self.fan_axes(input_axes, output_axes),
        )
        if self.num_kernels is not None:
            multiplier /= self.num_kernels
        return multiplier

    def __call__(self, x: Tensor) -> Tensor:
        axes: FanAxes = (None, None)
        if self.scale in FAN_SCALES and self.input_axes is None:
            # A layer computing its penalties: an `EinsumDense` kernel (of a
            # `MultiHeadAttention` too) gets the fans of its equation.
            penalised = _keras_internals.regularized_weight(self)
            if penalised is not None:
                axes = weight_fan_axes(*penalised)
        return self.penalty(x, *axes)

    def penalty(
        self,
        x: Tensor,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> Tensor:
        """Returns the penalty of kernel `x` with the given fan axes.

        What calling the regularizer returns, for a kernel whose fan axes
        are known (see `fan_axes`): a layer's `EinsumDense` kernel, whose
        axes the layer's equation gives.

        Examples:
            >>> kernel = keras.ops.ones((16, 4, 8))
            >>> penalty = ScaledL2(1.0).penalty(kernel, (0,), (1, 2))
            >>> float(penalty)  # (16 + 32) / 512 * sum(kernel**2)
            48.0

        Args:
            x: The kernel.
            input_axes: Optional fan axes of the kernel, used when the
                regularizer has none of its own. Defaults to `None`.
            output_axes: Optional, given with `input_axes`.
        """
        multiplier = self.multiplier(x.shape, input_axes, output_axes)
        # Squares of float16 / bfloat16 weights overflow or lose all
        # precision when summed in their own dtype: accumulate in float32.
        if keras.backend.standardize_dtype(x.dtype) in _LOW_PRECISION_DTYPES:
            x = ops.cast(x, "float32")
        if self._anchor_config is not None:
            x = ops.subtract(x, self._anchor_of(x))
        return self._scaled_norm(x, multiplier)

    def _scaled_norm(self, x: Tensor, multiplier: float) -> Tensor:
        """Returns the penalty of `x` given `s(shape)`; set by subclasses."""
        raise NotImplementedError

    def _factors(self) -> dict[str, float]:
        """Returns the factor arguments as a dict; set by subclasses."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        if self._anchor_config is not None:
            # Here too: a model built with `anchor=` passes no other guard.
            from keras_scaled_l2 import _persistence

            _persistence.refuse_h5(self)
        return {
            **self._factors(),
            "scale": self.scale,
            "num_examples": self.num_examples,
            "input_axes": _as_list(self.input_axes),
            "output_axes": _as_list(self.output_axes),
            "num_kernels": self.num_kernels,
            "anchor": (
                None
                if self._anchor_config is None
                else dict(self._anchor_config)
            ),
        }

    def _obj_type(self) -> str:
        return _keras_internals.SAVEABLE_KIND

    def save_own_variables(self, store: Any) -> None:
        """Writes the starting weights, if any, with the model's weights.

        Keras's `.keras` saving and `save_weights` call it.

        Args:
            store: The dict-like entry Keras gives for this object.
        """
        if self._anchor_config is not None:
            store["anchor"] = self.anchor_values()
            # Where, so that the `.keras` file's penalty record points
            # there rather than storing a second copy.
            self._saved_at = _keras_internals.weights_path(store)

    def load_own_variables(self, store: Any) -> None:
        """Reads the starting weights, if any, from the model's weights.

        Keras's `load_model` and `load_weights` call it on the regularizer
        that the layer's config rebuilt (or that the layer holds).

        Args:
            store: The dict-like entry Keras gives for this object.

        Raises:
            ValueError: if the regularizer pulls toward starting weights
                and the saved weights hold none for it.
        """
        saved = "anchor" in list(store.keys())
        if self._anchor_config is not None and saved:
            self._set_anchor(validate_anchor(store["anchor"]))
        elif self._anchor_config is not None:
            raise ValueError(
                f"{type(self).__name__} pulls toward starting weights, and "
                "the saved weights hold none for it: they were saved from a "
                "model whose penalty here pulled toward zero. Load weights "
                "saved with the starting weights, or attach the penalty "
                "after loading them."
            )
        elif saved:
            warnings.warn(
                f"The saved weights hold starting weights for a penalty "
                f"that pulls toward zero here ({self!r}); they were not "
                "loaded. Attach the penalty with anchor=True to pull "
                "toward them.",
                stacklevel=2,
            )

    def _arguments(self) -> dict[str, Any]:
        """The constructor's arguments: the config, with the anchor's values.

        A penalty rebuilt from its config alone keeps `{"shape", "dtype"}`.
        """
        arguments = self.get_config()
        if self._anchor is not None:
            arguments["anchor"] = self.anchor_values()
        return arguments

    def __reduce__(self) -> tuple[Any, ...]:
        # Not Keras's `KerasSaveable.__reduce__`, which saves a model.
        return type(self).from_config, (self._arguments(),)

    @classmethod
    def from_config(
        cls: type[_RegularizerT], config: dict[str, Any]
    ) -> _RegularizerT:
        """Returns the regularizer `config` describes: `cls(**config)`."""
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(
            f"{name}={value!r}" for name, value in self.get_config().items()
        )
        return f"{type(self).__name__}({arguments})"


def _as_tuple(axes: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if axes is None else tuple(axes)


def _as_list(axes: tuple[int, ...] | None) -> list[int] | None:
    return None if axes is None else list(axes)


def _l2_norm(x: Tensor) -> Tensor:
    return ops.sum(ops.square(x))


def _l1_norm(x: Tensor) -> Tensor:
    return ops.sum(ops.absolute(x))


@keras.saving.register_keras_serializable(package="keras_scaled_l2")
class ScaledL2(ScaledRegularizer):
    """L2 penalty scaled by the kernel's shape.

    The penalty is `l2 * s(shape) * sum(square(w))`, with `s` from `scale`:

    - `"none"`: `1`, the same penalty as `keras.regularizers.L2(l2)`;
    - `"size"`: `1 / size`, the mean of the squared weights;
    - `"fan_in"`: `1 / fan_in`;
    - `"fan_out"`: `1 / fan_out`;
    - `"balanced"` (default): `(fan_in + fan_out) / size`, so that every
      Glorot-initialised kernel starts near `2 * l2`, whatever its size.

    Fans are counted as Keras initializers count them, except for the
    kernel of an `EinsumDense` (the projections of `MultiHeadAttention`
    included): when its layer computes the penalty, the axes its equation
    sums with the input are the fan-in and those only its output has the
    fan-out, so a `(hidden, heads, head_dim)` query kernel counts `hidden`
    in and `heads * head_dim` out. Called by hand on a tensor, the penalty
    uses `input_axes` / `output_axes` if given, else the Keras rule. With
    `num_examples=m`, `s` is divided by `2 * m`, which gives the textbook
    cost `(1/m) sum(loss) + lambda/(2m) sum(w**2)` for `l2=lambda`.

    Examples:
        >>> import numpy as np
        >>> kernel = np.ones((256, 128), dtype="float32")
        >>> round(float(ScaledL2(0.01)(kernel)), 4)  # 0.01 * 384/32768 * 32768
        3.84
        >>> round(float(ScaledL2(0.01, scale="none")(kernel)), 4)  # as keras L2
        327.68
        >>> start = np.full((256, 128), 0.5, dtype="float32")  # pretrained
        >>> round(float(ScaledL2(0.01, anchor=start)(kernel)), 4)  # w - w0
        0.96
        >>> layer = keras.layers.Dense(64, kernel_regularizer=ScaledL2(0.01))

    Args:
        l2: Non-negative float, the penalty factor. Defaults to `0.01`.
        scale: One of `"none"`, `"size"`, `"fan_in"`, `"fan_out"`,
            `"balanced"`. Defaults to `"balanced"`.
        num_examples: Optional positive int, the number of training examples
            `m`; multiplies the penalty by `1 / (2 * m)`. Defaults to `None`.
        input_axes: Optional tuple of ints naming the kernel's input axes,
            for kernels that are neither dense nor conv shaped (an
            `EinsumDense` kernel of shape `(16, 4, 8)` from `"abc,cde->abde"`
            takes `input_axes=(0,)`, `output_axes=(1, 2)`). Defaults to
            `None`.
        output_axes: Optional tuple of ints naming the kernel's output axes;
            given with `input_axes`. Defaults to `None`.
        num_kernels: Optional positive int `K`, the number of kernels in the
            model that carry this penalty; divides the penalty by `K`, so
            that the model's total is `l2` times the mean over its kernels
            and a deeper model is not penalised harder. Set it by hand, or
            let `attach_regularizer(..., normalize_depth=True)` count.
            Defaults to `None` (no division).
        anchor: Optional starting weights `w0`, an array of the kernel's
            shape (its pretrained values, say): the penalty becomes
            `l2 * s(shape) * sum(square(w - w0))`, L2-SP, which pulls the
            kernel toward `w0` rather than toward zero. Held as a float32
            copy (float64 if given float64 values); saved with the model's
            weights in a `.keras` file, never in its config (refused by
            `.h5`). `attach_regularizer(..., anchor=True)` gives each kernel
            its current values. Defaults to `None` (toward zero).
    """

    def __init__(
        self,
        l2: float = 0.01,
        scale: str = "balanced",
        num_examples: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
        num_kernels: int | None = None,
        anchor: Any = None,
    ) -> None:
        self.l2 = validate_factor(l2, "l2")
        super().__init__(
            scale=scale,
            num_examples=num_examples,
            input_axes=input_axes,
            output_axes=output_axes,
            num_kernels=num_kernels,
            anchor=anchor,
        )

    def _factors(self) -> dict[str, float]:
        return {"l2": self.l2}

    def _scaled_norm(self, x: Tensor, multiplier: float) -> Tensor:
        return _l2_norm(x) * (self.l2 * multiplier)


@keras.saving.register_keras_serializable(package="keras_scaled_l2")
class ScaledL1(ScaledRegularizer):
    """L1 penalty scaled by the kernel's shape.

    The penalty is `l1 * s(shape) * sum(abs(w))`, with `s` as in `ScaledL2`;
    `scale="none"` gives the same penalty as `keras.regularizers.L1(l1)`.

    Examples:
        >>> import numpy as np
        >>> kernel = np.full((100, 10), -2.0, dtype="float32")
        >>> round(float(ScaledL1(0.01, scale="size")(kernel)), 4)  # mean |w|
        0.02

    Args:
        l1: Non-negative float, the penalty factor. Defaults to `0.01`.
        scale: One of `"none"`, `"size"`, `"fan_in"`, `"fan_out"`,
            `"balanced"`. Defaults to `"balanced"`.
        num_examples: Optional positive int `m`; multiplies the penalty by
            `1 / (2 * m)`. Defaults to `None`.
        input_axes: Optional tuple of ints, see `ScaledL2`. Defaults to
            `None`.
        output_axes: Optional tuple of ints, see `ScaledL2`. Defaults to
            `None`.
        num_kernels: Optional positive int, see `ScaledL2`. Defaults to
            `None`.
        anchor: Optional starting weights `w0`, see `ScaledL2`: the penalty
            is then that of `w - w0`. Defaults to `None`.
    """

    def __init__(
        self,
        l1: float = 0.01,
        scale: str = "balanced",
        num_examples: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
        num_kernels: int | None = None,
        anchor: Any = None,
    ) -> None:
        self.l1 = validate_factor(l1, "l1")
        super().__init__(
            scale=scale,
            num_examples=num_examples,
            input_axes=input_axes,
            output_axes=output_axes,
            num_kernels=num_kernels,
            anchor=anchor,
        )

    def _factors(self) -> dict[str, float]:
        return {"l1": self.l1}

    def _scaled_norm(self, x: Tensor, multiplier: float) -> Tensor:
        return _l1_norm(x) * (self.l1 * multiplier)


@keras.saving.register_keras_serializable(package="keras_scaled_l2")
class ScaledL1L2(ScaledRegularizer):
    """L1 plus L2 penalty, both scaled by the same `s(shape)`.

    The penalty is `s(shape) * (l1 * sum(abs(w)) + l2 * sum(square(w)))`;
    `scale="none"` gives the same penalty as `keras.regularizers.L1L2`.
    As in Keras, both factors default to `0.0`.

    Examples:
        >>> import numpy as np
        >>> kernel = np.ones((8, 8), dtype="float32")
        >>> penalty = ScaledL1L2(l1=0.01, l2=0.01, scale="size")(kernel)
        >>> round(float(penalty), 4)  # 0.01 * mean(|w|) + 0.01 * mean(w**2)
        0.02

    Args:
        l1: Non-negative float, the L1 factor. Defaults to `0.0`.
        l2: Non-negative float, the L2 factor. Defaults to `0.0`.
        scale: One of `"none"`, `"size"`, `"fan_in"`, `"fan_out"`,
            `"balanced"`. Defaults to `"balanced"`.
        num_examples: Optional positive int `m`; multiplies the penalty by
            `1 / (2 * m)`. Defaults to `None`.
        input_axes: Optional tuple of ints, see `ScaledL2`. Defaults to
            `None`.
        output_axes: Optional tuple of ints, see `ScaledL2`. Defaults to
            `None`.
        num_kernels: Optional positive int, see `ScaledL2`. Defaults to
            `None`.
        anchor: Optional starting weights `w0`, see `ScaledL2`: the penalty
            is then that of `w - w0`. Defaults to `None`.
    """

    def __init__(
        self,
        l1: float = 0.0,
        l2: float = 0.0,
        scale: str = "balanced",
        num_examples: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
        num_kernels: int | None = None,
        anchor: Any = None,
    ) -> None:
        self.l1 = validate_factor(l1, "l1")
        self.l2 = validate_factor(l2, "l2")
        super().__init__(
            scale=scale,
            num_examples=num_examples,
            input_axes=input_axes,
            output_axes=output_axes,
            num_kernels=num_kernels,
            anchor=anchor,
        )

    def _factors(self) -> dict[str, float]:
        return {"l1": self.l1, "l2": self.l2}

    def _scaled_norm(self, x: Tensor, multiplier: float) -> Tensor:
        penalty = ops.zeros((), dtype=x.dtype)
        if self.l1:
            penalty += _l1_norm(x) * (self.l1 * multiplier)
        if self.l2:
            penalty += _l2_norm(x) * (self.l2 * multiplier)
        return penalty
