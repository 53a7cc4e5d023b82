"""Per-layer penalty report: which layer does the factor really hit?"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import keras

from keras_scaled_l2 import _persistence
from keras_scaled_l2._kernels import Kernel, model_kernels
from keras_scaled_l2._layer_names import layer_namer
from keras_scaled_l2._penalty_tools import is_anchored, penalty_label
from keras_scaled_l2._types import FanAxes
from keras_scaled_l2._validation import validate_factor
from keras_scaled_l2.regularizers import ScaledRegularizer
from keras_scaled_l2.scales import SCALES, compute_fans, shape_multiplier

if TYPE_CHECKING:
    import pandas as pd

_KERAS_SCALE_NONE = (
    keras.regularizers.L1,
    keras.regularizers.L2,
    keras.regularizers.L1L2,
)


@dataclasses.dataclass(frozen=True)
class PenaltyRow:
    """One regularized weight: its fans, its regularizer and its penalty now.

    A row of `PenaltyReport.rows`.

    Attributes:
        layer: The layers below the model that hold the weight
            (`backbone/conv`).
        weight: The weight's own name (`kernel`).
        shape: The weight's shape.
        fan_in: Its fan-in, as the penalty counts it.
        fan_out: Its fan-out, as the penalty counts it.
        scale: A scaled penalty's `scale`; `none` for Keras's own.
        penalty: The penalty now, as Keras adds it to the loss.
        share: Its part of the report's total.
        num_kernels: A scaled penalty's `num_kernels`, or `None`.
        reload: What restores the penalty after a save: `keras`,
            `package` (`keras_scaled_l2.load_model`) or `unknown`.
        toward: `start` for a penalty of `w - w0` (L2-SP), else `zero`.
        regularizer: The penalty's class and factors: `L2(0.01)` (Keras's),
            `ScaledL2(0.01, balanced)`.

    Examples:
        >>> import keras
        >>> from keras_scaled_l2 import ScaledL2, penalty_report
        >>> model = keras.Sequential([
        ...     keras.Input((8,)),
        ...     keras.layers.Dense(4, kernel_regularizer=ScaledL2(0.01)),
        ... ])
        >>> row = penalty_report(model).rows[0]
        >>> row.shape, row.fan_in, row.fan_out, row.regularizer
        ((8, 4), 8, 4, 'ScaledL2(0.01, balanced)')
    """

    layer: str
    weight: str
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    scale: str
    penalty: float
    share: float
    num_kernels: int | None = None  # a scaled penalty's `num_kernels`
    reload: str = "keras"  # what restores it: "keras", "package", "unknown"
    toward: str = "zero"  # "start": a penalty of `w - w0` (L2-SP)
    regularizer: str = ""  # class and factors: "ScaledL2(0.01, balanced)"


@dataclasses.dataclass(frozen=True)
class WhatIfRow:
    """One kernel: its L2 penalty under each scale for one factor.

    A row of `PenaltyReport.what_if`, made when `penalty_report` gets
    `l2`.

    Attributes:
        layer: The layers below the model that hold the kernel.
        weight: The kernel's own name.
        shape: The kernel's shape.
        fan_in: Its fan-in.
        fan_out: Its fan-out.
        penalties: Per scale of `SCALES`, `l2 * s(shape) * sum(w**2)`.
        shares: Per scale, the kernel's part of that scale's total.

    Examples:
        >>> import keras
        >>> from keras_scaled_l2 import penalty_report
        >>> model = keras.Sequential([
        ...     keras.Input((8,)),
        ...     keras.layers.Dense(4, kernel_initializer="ones"),
        ... ])
        >>> row = penalty_report(model, l2=0.01).what_if[0]
        >>> round(row.penalties["none"], 4), round(row.penalties["size"], 4)
        (0.32, 0.01)
    """

    layer: str
    weight: str
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    penalties: dict[str, float]
    shares: dict[str, float]


@dataclasses.dataclass(frozen=True)
class PenaltyReport:
    """The report `penalty_report` returns; `str()` prints it as tables.

    Attributes:
        rows: One `PenaltyRow` per regularized trainable weight (the
            penalties Keras adds to the loss), in `trainable_weights` order.
        total: The sum of their penalties.
        l2: The factor of the what-if table, or `None`.
        what_if: One `WhatIfRow` per kernel, with `l2` under every scale.

    Examples:
        >>> import keras
        >>> model = keras.Sequential([
        ...     keras.Input((8,)),
        ...     keras.layers.Dense(
        ...         4,
        ...         kernel_initializer="ones",
        ...         kernel_regularizer=keras.regularizers.L2(0.01),
        ...     ),
        ... ])
        >>> report = penalty_report(model)
        >>> round(report.total, 4), report.rows[0].regularizer  # 0.01 * 32
        (0.32, 'L2(0.01)')
    """

    rows: list[PenaltyRow]
    total: float
    l2: float | None = None
    what_if: list[WhatIfRow] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        lines = ["Penalties now (the terms Keras adds to the loss):"]
        # The column appears where a penalty pulls toward starting weights.
        toward = any(r.toward != "zero" for r in self.rows)
        if self.rows:
            lines += _table(
                [
                    *_KERNEL_COLUMNS,
                    "regularizer",
                    *(["toward"] if toward else []),
                    "penalty",
                    "share",
                    "reload",
                ],
                [
                    [
                        *_kernel_cells(r),
                        r.regularizer,
                        *([r.toward] if toward else []),
                        f"{r.penalty:.7g}",
                        f"{r.share:.1%}",
                        r.reload,
                    ]
                    for r in self.rows
                ],
            )
        else:
            lines.append("  (no regularized weights)")
        lines.append(f"total penalty: {self.total:.7g}")
        lines += _toward_notes(self.rows)
        lines += _reload_notes(self.rows)
        if self.l2 is not None:
            lines += [
                "",
                f"L2 penalty with factor {self.l2:g} under each scale "
                "(share of that scale's total):",
            ]
            scales = list(SCALES)
            lines += _table(
                [*_KERNEL_COLUMNS, *scales],
                [
                    [
                        *_kernel_cells(r),
                        *(
                            f"{r.penalties[s]:.4g} ({r.shares[s]:.0%})"
                            for s in scales
                        ),
                    ]
                    for r in self.what_if
                ],
            )
        return "\n".join(lines)

    def to_dataframe(self, what_if: bool = False) -> pd.DataFrame:
        """Returns the rows (or the what-if rows) as a pandas DataFrame.

        Args:
            what_if: Bool. If `True`, the what-if table (one row per kernel,
                a `penalty_SCALE` and `share_SCALE` column per scale) in
                place of the table of penalties. Defaults to `False`.
        """
        try:
            import pandas as pd
        except ImportError as error:
            raise ImportError(
                "PenaltyReport.to_dataframe needs pandas: pip install pandas"
            ) from error
        if not what_if:
            return pd.DataFrame([dataclasses.asdict(r) for r in self.rows])
        records = []
        for row in self.what_if:
            record = {
                "layer": row.layer,
                "weight": row.weight,
                "shape": row.shape,
                "fan_in": row.fan_in,
                "fan_out": row.fan_out,
            }
            for scale in SCALES:
                record[f"penalty_{scale}"] = row.penalties[scale]
                record[f"share_{scale}"] = row.shares[scale]
            records.append(record)
        return pd.DataFrame(records)


def penalty_report(
    model: keras.Model, l2: float | None = None
) -> PenaltyReport:
    """Reports each layer's penalty, and what a factor would do per scale.

    The first table has one row per regularized trainable weight, with its
    regularizer's class and factors (`L2(0.01)` for Keras's,
    `ScaledL2(0.01, balanced)`, `ScaledL1L2(l1=0.01, l2=0.1, fan_in)`), the
    penalty it computes now and its share of the total (which equals the
    weight-penalty part of `sum(model.losses)`). A row's `layer` and
    `weight`, joined by `/`, are the name `attach_regularizer` returns for
    that kernel (`backbone/conv/kernel`). A starting-point
    penalty (L2-SP, a scaled penalty with `anchor`) shows `toward: start`:
    it is the norm of `w - w0`, not of `w`. With `l2`, a
    second table gives, for every kernel `attach_regularizer` would
    regularize, the penalty `l2 * s(shape) * sum(w**2)` under each scale:
    under `"none"` (Keras's `L2`) the widest layers usually hold most of it.

    Examples:
        >>> model = keras.Sequential([
        ...     keras.Input((784,)),
        ...     keras.layers.Dense(1024, kernel_regularizer="l2"),
        ...     keras.layers.Dense(10, kernel_regularizer="l2"),
        ... ])
        >>> report = penalty_report(model, l2=0.01)
        >>> round(report.rows[0].share, 2), len(report.what_if)
        (0.98, 2)
        >>> report.rows[0].regularizer  # the "l2" name: Keras's L2(0.01)
        'L2(0.01)'

    Args:
        model: A built Keras model.
        l2: Optional non-negative float: adds the what-if table for that
            factor. Defaults to `None`.

    Returns:
        A `PenaltyReport`.
    """
    if l2 is not None:
        l2 = validate_factor(l2, "l2")
    kernels = {id(k.weight): k for k in model_kernels(model)}
    name_of = layer_namer(model)
    restorers = _persistence.penalty_restorers(model)
    records: list[dict[str, Any]] = []
    for weight in model.trainable_weights:
        regularizer = weight.regularizer
        if regularizer is None:
            continue
        kernel = kernels.get(id(weight))
        fan_in, fan_out = _fans(weight, regularizer, kernel)
        records.append(
            dict(
                layer=name_of(weight),
                weight=weight.name,
                shape=tuple(weight.shape),
                fan_in=fan_in,
                fan_out=fan_out,
                scale=_scale_name(regularizer),
                num_kernels=getattr(regularizer, "num_kernels", None),
                penalty=_penalty(regularizer, weight, kernel),
                reload=restorers.get(id(weight), _persistence.UNKNOWN),
                toward="start" if is_anchored(regularizer) else "zero",
                regularizer=penalty_label(regularizer),
            )
        )
    total = sum(record["penalty"] for record in records)
    rows = [
        PenaltyRow(**record, share=_share(record["penalty"], total))
        for record in records
    ]
    what_if = (
        _what_if(model, name_of, kernels.values(), l2) if l2 is not None else []
    )
    return PenaltyReport(rows=rows, total=total, l2=l2, what_if=what_if)


def _what_if(model, name_of, kernels, l2):
    trainable = {id(w) for w in model.trainable_weights}
    kernels = [k for k in kernels if id(k.weight) in trainable]
    sums = [k.sum_of_squares() for k in kernels]
    penalties = [
        {
            scale: l2
            * shape_multiplier(
                tuple(k.weight.shape), scale, None, k.input_axes, k.output_axes
            )
            * squares
            for scale in SCALES
        }
        for k, squares in zip(kernels, sums, strict=True)
    ]
    totals = {s: sum(p[s] for p in penalties) for s in SCALES}
    rows = []
    for kernel, scaled in zip(kernels, penalties, strict=True):
        fan_in, fan_out = compute_fans(
            kernel.weight.shape, kernel.input_axes, kernel.output_axes
        )
        rows.append(
            WhatIfRow(
                layer=name_of(kernel.weight),
                weight=kernel.weight.name,
                shape=tuple(kernel.weight.shape),
                fan_in=fan_in,
                fan_out=fan_out,
                penalties=scaled,
                shares={s: _share(scaled[s], totals[s]) for s in SCALES},
            )
        )
    return rows


def _penalty(regularizer, weight, kernel):
    """The penalty as the layer computes it: with the kernel's fan axes."""
    if isinstance(regularizer, ScaledRegularizer) and kernel is not None:
        value = regularizer.penalty(weight, *_kernel_axes(kernel))
    else:
        value = regularizer(weight)
    return float(keras.ops.convert_to_numpy(value))


def _fans(weight, regularizer, kernel):
    axes = _kernel_axes(kernel)
    if isinstance(regularizer, ScaledRegularizer):
        axes = regularizer.fan_axes(*axes)
    return compute_fans(weight.shape, *axes)


def _kernel_axes(kernel: Kernel | None) -> FanAxes:
    if kernel is None:
        return None, None
    return kernel.input_axes, kernel.output_axes


def _scale_name(regularizer):
    if isinstance(regularizer, ScaledRegularizer):
        return regularizer.scale
    if isinstance(regularizer, _KERAS_SCALE_NONE):
        return "none"
    return type(regularizer).__name__


def _toward_notes(rows):
    anchored = sum(r.toward == "start" for r in rows)
    if not anchored:
        return []
    one = anchored == 1
    return [
        f"toward start: {_of_these(anchored)} "
        + (
            "a starting-point penalty (L2-SP): it pulls its kernel"
            if one
            else "starting-point penalties (L2-SP): they pull each kernel"
        )
        + " toward its starting weights w0, the norm of w - w0, not toward "
        "zero."
    ]


def _reload_notes(rows):
    package = sum(r.reload == _persistence.PACKAGE for r in rows)
    unknown = sum(r.reload == _persistence.UNKNOWN for r in rows)
    notes = []
    if package:
        one = package == 1
        notes.append(
            f"reload: {_of_these(package, 'comes', 'come')} back only with "
            "keras_scaled_l2.load_model (keras.models.load_model drops "
            f"{'it' if one else 'them'})."
        )
    if unknown:
        one = unknown == 1
        notes.append(
            f"reload: {_of_these(unknown, 'sits', 'sit')} "
            + (
                "in a layer whose saved config is not known to carry it, and "
                "no record does: it comes back only if the layer's "
                "constructor sets it again. Set it"
                if one
                else "in layers whose saved configs are not known to carry "
                "them, and no record does: they come back only if the "
                "layer's constructor sets them again. Set them"
            )
            + " with attach_regularizer, which records "
            f"{'it' if one else 'them'} for keras_scaled_l2.load_model."
        )
    return notes


def _of_these(count, singular="is", plural="are"):
    """`1 of these penalties is`, `2 of these penalties are`."""
    return f"{count} of these penalties {singular if count == 1 else plural}"


def _share(value, total):
    return value / total if total else (math.nan if value else 0.0)


def _shape(shape):
    return "x".join(str(d) for d in shape) or "()"


_KERNEL_COLUMNS = ("layer", "weight", "shape", "fan_in", "fan_out")
_LEFT_ALIGNED = ("layer", "weight", "shape", "regularizer", "toward")


def _kernel_cells(row):
    return [row.layer, row.weight, _shape(row.shape), row.fan_in, row.fan_out]


def _table(header, rows):
    cells = [[str(c) for c in row] for row in rows]
    widths = [
        max(len(header[i]), *(len(row[i]) for row in cells))
        for i in range(len(header))
    ]

    def line(values):
        return "  " + "  ".join(
            v.ljust(w) if name in _LEFT_ALIGNED else v.rjust(w)
            for name, v, w in zip(header, values, widths, strict=True)
        )

    return [
        line(header),
        line(["-" * w for w in widths]),
        *(line(row) for row in cells),
    ]
