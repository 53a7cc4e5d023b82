"""What a study trains: its sizes, setups, variants and groups."""

import dataclasses
from typing import NamedTuple

DEFAULT_FACTOR = 0.01  # ScaledL2's default, and keras's own `L2(0.01)`
KERAS_ADAMW_DEFAULT = 0.004  # keras.optimizers.AdamW's `weight_decay`
AXES = ("width", "depth", "data size")
DATA_SETS = ("synthetic", "diabetes")
OPTIMIZERS = ("adam", "sgd", "adamw")
"""Adam and SGD + momentum with coupled penalties; AdamW with decay."""
SETUPS = tuple((data, opt) for data in DATA_SETS for opt in OPTIMIZERS)
"""(data set, optimizer) pairs."""

DIABETES_TRAIN_ROWS = 331
"""scikit-learn's diabetes: 442 patients, 331 for training, 111 for test."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one study; `FULL` is the published one."""

    widths: tuple  # at depth `reference[1]`
    depths: tuple  # at width `reference[0]`
    reference: tuple  # (width, depth) of the data-size comparison
    seeds: tuple
    epochs: dict  # per data set
    num_train: dict  # per data set: (sweep size, the other size)
    batch_size: dict  # per data set
    num_test: int  # synthetic test rows
    signal: float  # of the synthetic data
    half_decades: int  # grid points on each side of a variant's center
    center: dict  # per penalty kind (l2, decay) and data set; see grid.py


FULL = Settings(
    widths=(64, 256, 1024),
    depths=(2, 4, 8),
    reference=(256, 4),
    seeds=(0, 1, 2, 3, 4),
    epochs={"synthetic": 10, "diabetes": 30},
    num_train={
        "synthetic": (2000, 500),
        "diabetes": (DIABETES_TRAIN_ROWS, round(DIABETES_TRAIN_ROWS / 4)),
    },
    batch_size={"synthetic": 64, "diabetes": 32},
    num_test=4000,
    signal=0.5,
    half_decades=4,
    center={
        "l2": {"synthetic": 1e-3, "diabetes": 10**-1.5},
        "decay": {"synthetic": 10**0.5, "diabetes": 10**0.5},
    },
)
QUICK = Settings(
    widths=(8, 16, 32),
    depths=(1, 2, 3),
    reference=(16, 2),
    seeds=(0,),
    epochs={"synthetic": 1, "diabetes": 1},
    num_train={"synthetic": (256, 64), "diabetes": (256, 64)},
    batch_size={"synthetic": 64, "diabetes": 32},
    num_test=256,
    signal=0.5,
    half_decades=2,
    center={
        "l2": {"synthetic": 1e-3, "diabetes": 1e-2},
        "decay": {"synthetic": 1.0, "diabetes": 1.0},
    },
)


class Group(NamedTuple):
    """Runs trained together: they share all of this, and the weights."""

    data: str
    optimizer: str
    width: int
    depth: int
    num_train: int
    seed: int

    @property
    def key(self):
        return (
            f"{self.data}/{self.optimizer}/w{self.width}/d{self.depth}"
            f"/n{self.num_train}/s{self.seed}"
        )

    @classmethod
    def of_record(cls, record):
        return cls(*(record[field] for field in cls._fields))


class Variant(NamedTuple):
    """One way to set the penalty from a factor.

    `scale` is a `ScaledL2` scale (coupled L2, under Adam or SGD), or
    `"decay"`: the factor is AdamW's `weight_decay`, as Keras applies it
    (every variable, biases included). `normalize_depth` divides the factor
    by the number of kernels, as `attach_regularizer(..., normalize_depth=
    True)` does; `num_examples` passes the training-set size to `ScaledL2`.
    """

    scale: str
    normalize_depth: bool = False
    num_examples: bool = False

    @property
    def name(self):
        name = "adamw" if self.scale == "decay" else self.scale
        if self.normalize_depth:
            name += "/kernels"
        if self.num_examples:
            name += "+num_examples"
        return name

    @property
    def decoupled(self):
        return self.scale == "decay"

    @property
    def default_factor(self):
        """The factor a user gets without choosing one."""
        return KERAS_ADAMW_DEFAULT if self.decoupled else DEFAULT_FACTOR


L2_VARIANTS = (
    Variant("none"),
    Variant("balanced"),
    Variant("none", normalize_depth=True),
)
"""Coupled L2: keras's own `L2`, the package's 0.1 default, and the rule."""
DECAY_VARIANTS = (Variant("decay"), Variant("decay", normalize_depth=True))
DATA_SIZE_VARIANTS = (Variant("none", num_examples=True),)
"""`num_examples` only rescales the factor at a fixed data size."""


def plain_variants(optimizer):
    """The variants trained on every configuration of a setup."""
    return DECAY_VARIANTS if optimizer == "adamw" else L2_VARIANTS


def summarized_variants(optimizer):
    if optimizer == "adamw":
        return DECAY_VARIANTS
    return L2_VARIANTS + DATA_SIZE_VARIANTS


def configurations(settings):
    """Every group of the study less its seed, as `Group` fields."""
    width, depth = settings.reference
    shapes = [(w, depth) for w in settings.widths]
    shapes += [(width, d) for d in settings.depths if d != depth]
    result = []
    for data, optimizer in SETUPS:
        sweep_size, other_size = settings.num_train[data]
        for shape in shapes:
            result.append((data, optimizer, *shape, sweep_size))
        result.append((data, optimizer, width, depth, other_size))
    return result


def groups(settings):
    return [
        Group(*config, seed)
        for seed in settings.seeds
        for config in configurations(settings)
    ]


def variants_of(group, settings):
    """The variants trained in this group.

    The `num_examples` variants are trained on the reference model only, at
    both sizes: they are compared along the data-size axis alone.
    """
    plain = plain_variants(group.optimizer)
    if group.optimizer == "adamw":
        return plain
    if (group.width, group.depth) != tuple(settings.reference):
        return plain
    return plain + DATA_SIZE_VARIANTS


def num_kernels(depth):
    """Penalised kernels of an MLP of `depth` hidden layers."""
    return depth + 1
