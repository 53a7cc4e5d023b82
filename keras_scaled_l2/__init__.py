"""Keras weight penalties scaled by the shape of each kernel.

`keras.regularizers.L2(0.01)` adds `0.01 * sum(w**2)` for every kernel, so the
same factor weighs a 1024x1024 kernel a thousand times more than a 32x1 one.
`ScaledL2`, `ScaledL1` and `ScaledL1L2` multiply the penalty by a factor
`s(shape)` computed from the kernel's fans and size, so that every layer's
penalty starts near the same value whatever its size.
"""

# First: without its backend, Keras fails here with the extra to install.
from keras_scaled_l2 import _backend  # noqa: F401
from keras_scaled_l2.attach import attach_regularizer
from keras_scaled_l2.collapse_monitor import CollapseMonitor, CollapseWarning
from keras_scaled_l2.conversions import (
    equivalent_factor,
    equivalent_model_factor,
    keras_factor_from_lambda,
    weight_decay_for_l2,
)
from keras_scaled_l2.factor_search import (
    FactorRow,
    FactorSearchResult,
    search_factor,
)
from keras_scaled_l2.penalty_logger import PenaltyLogger
from keras_scaled_l2.regularizers import (
    ScaledL1,
    ScaledL1L2,
    ScaledL2,
    ScaledRegularizer,
)
from keras_scaled_l2.report import (
    PenaltyReport,
    PenaltyRow,
    WhatIfRow,
    penalty_report,
)
from keras_scaled_l2.saving import PenaltyRecordError, load_model
from keras_scaled_l2.scales import SCALES, compute_fans, shape_multiplier

__version__ = "0.1.0"

__all__ = [
    "SCALES",
    "CollapseMonitor",
    "CollapseWarning",
    "FactorRow",
    "FactorSearchResult",
    "PenaltyLogger",
    "PenaltyRecordError",
    "PenaltyReport",
    "PenaltyRow",
    "ScaledL1",
    "ScaledL1L2",
    "ScaledL2",
    "ScaledRegularizer",
    "WhatIfRow",
    "__version__",
    "attach_regularizer",
    "compute_fans",
    "equivalent_factor",
    "equivalent_model_factor",
    "keras_factor_from_lambda",
    "load_model",
    "penalty_report",
    "search_factor",
    "shape_multiplier",
    "weight_decay_for_l2",
]
