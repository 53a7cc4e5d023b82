"""What a study trains: its sizes, setups, variants and groups."""

import dataclasses
from typing import NamedTuple

DEFAULT_FACTOR = 0.01  # ScaledL2's default, and keras's own `L2(0.01)`
KERAS_ADAMW_DEFAULT = 0.004  # keras.optimizers.AdamW's `weight_decay`
AXES = ("width", "depth", "data size")
FAMILIES = ("mlp", "cnn", "transformer")
"""ReLU MLPs, stacks of `Conv1D`, pre-norm transformer encoders."""
DATA_SETS = ("synthetic", "diabetes", "mnist1d")
TABULAR = ("synthetic", "diabetes")
"""Regression data sets; MNIST-1D is a 10-class classification."""
OPTIMIZERS = ("adam", "sgd", "adamw")
"""Adam and SGD + momentum with coupled penalties; AdamW with decay."""

DIABETES_TRAIN_ROWS = 331
"""scikit-learn's diabetes: 442 patients, 331 for training, 111 for test."""
MNIST1D_TRAIN_ROWS = 4000
"""MNIST-1D's default split: 4000 training and 1000 test sequences."""


class Setup(NamedTuple):
    """A family of networks on one data set under one optimizer."""

    family: str
    data: str
    optimizer: str

    @property
    def architecture(self):
        """The key of its sizes in `Settings.shapes` and `center`."""
        return f"{self.family}/{self.data}"


SETUPS = tuple(
    Setup("mlp", data, optimizer)
    for data in TABULAR
    for optimizer in OPTIMIZERS
) + tuple(
    Setup(family, "mnist1d", optimizer)
    for family in FAMILIES
    for optimizer in OPTIMIZERS
)


class Shapes(NamedTuple):
    """Widths (at the reference depth), depths (at the reference width)."""

    widths: tuple
    depths: tuple
    reference: tuple  # (width, depth), also trained on fewer rows


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one study; `FULL` is the published one."""

    shapes: dict  # per architecture ("mlp/synthetic"): a `Shapes` as a dict
    seeds: tuple
    epochs: dict  # per data set
    num_train: dict  # per data set: (sweep size, the other size)
    batch_size: dict  # per data set
    learning_rates: dict  # per data set: per optimizer
    num_test: int  # synthetic test rows
    signal: float  # of the synthetic data
    half_decades: int  # grid points on each side of a variant's center
    center: dict  # per penalty kind (l2, decay) and architecture; see grid.py
    optimizers: tuple = OPTIMIZERS  # only the setups of these are trained

    def shapes_of(self, setup):
        return Shapes(**self.shapes[setup.architecture])


TABULAR_LEARNING_RATES = {"adam": 1e-3, "adamw": 1e-3, "sgd": 1e-2}
MNIST1D_LEARNING_RATES = {"adam": 1e-2, "adamw": 1e-2, "sgd": 5e-2}
"""Adam at MNIST-1D's own 1e-2. SGD (momentum 0.9) at 5e-2: unpenalized,
every family of the reference size came within 3 points of its Adam
accuracy in a one-seed pilot."""

_TABULAR_MLP = {"widths": (64, 256, 1024), "depths": (2, 4, 8)}
FULL = Settings(
    shapes={
        "mlp/synthetic": {**_TABULAR_MLP, "reference": (256, 4)},
        "mlp/diabetes": {**_TABULAR_MLP, "reference": (256, 4)},
        "mlp/mnist1d": {
            "widths": (32, 128, 256),
            "depths": (1, 2, 4),
            "reference": (128, 2),
        },
        "cnn/mnist1d": {
            "widths": (8, 32, 64),
            "depths": (2, 3, 8),
            "reference": (32, 3),
        },
        "transformer/mnist1d": {
            "widths": (8, 32, 64),
            "depths": (1, 2, 4),
            "reference": (32, 2),
        },
    },
    seeds=(0, 1, 2, 3, 4),
    epochs={"synthetic": 10, "diabetes": 30, "mnist1d": 30},
    num_train={
        "synthetic": (2000, 500),
        "diabetes": (DIABETES_TRAIN_ROWS, round(DIABETES_TRAIN_ROWS / 4)),
        "mnist1d": (MNIST1D_TRAIN_ROWS, MNIST1D_TRAIN_ROWS // 4),
    },
    batch_size={"synthetic": 64, "diabetes": 32, "mnist1d": 100},
    learning_rates={
        "synthetic": TABULAR_LEARNING_RATES,
        "diabetes": TABULAR_LEARNING_RATES,
        "mnist1d": MNIST1D_LEARNING_RATES,
    },
    num_test=4000,
    signal=0.5,
    half_decades=4,
    center={
        "l2": {
            "mlp/synthetic": 1e-3,
            "mlp/diabetes": 10**-1.5,
            "mlp/mnist1d": 1e-3,
            "cnn/mnist1d": 1e-3,
            "transformer/mnist1d": 10**-3.5,
        },
        # MNIST-1D trains at a 10x larger rate: AdamW decays 10x faster.
        "decay": {
            "mlp/synthetic": 10**0.5,
            "mlp/diabetes": 10**0.5,
            "mlp/mnist1d": 10**-0.5,
            "cnn/mnist1d": 10**-0.5,
            "transformer/mnist1d": 10**-0.5,
        },
    },
)
# Two sizes an axis, the fewest a drift needs: each group's compilation
# dominates a quick run.
_QUICK_SHAPES = {"widths": (8, 16), "depths": (1, 2), "reference": (16, 2)}
_QUICK_FAMILY_SHAPES = {
    "widths": (8, 16),
    "depths": (1, 2),
    "reference": (8, 1),
}
QUICK = Settings(
    shapes={
        "mlp/synthetic": _QUICK_SHAPES,
        "mlp/diabetes": _QUICK_SHAPES,
        "mlp/mnist1d": _QUICK_FAMILY_SHAPES,
        "cnn/mnist1d": _QUICK_FAMILY_SHAPES,
        "transformer/mnist1d": _QUICK_FAMILY_SHAPES,
    },
    seeds=(0,),
    epochs={"synthetic": 1, "diabetes": 1, "mnist1d": 1},
    num_train={
        "synthetic": (256, 64),
        "diabetes": (256, 64),
        "mnist1d": (256, 64),
    },
    batch_size={"synthetic": 64, "diabetes": 32, "mnist1d": 64},
    learning_rates={
        "synthetic": TABULAR_LEARNING_RATES,
        "diabetes": TABULAR_LEARNING_RATES,
        "mnist1d": MNIST1D_LEARNING_RATES,
    },
    num_test=256,
    signal=0.5,
    half_decades=1,
    center={
        "l2": {
            "mlp/synthetic": 1e-3,
            "mlp/diabetes": 1e-2,
            "mlp/mnist1d": 1e-3,
            "cnn/mnist1d": 1e-3,
            "transformer/mnist1d": 1e-3,
        },
        "decay": {
            "mlp/synthetic": 1.0,
            "mlp/diabetes": 1.0,
            "mlp/mnist1d": 1.0,
            "cnn/mnist1d": 1.0,
            "transformer/mnist1d": 1.0,
        },
    },
    # Adam for a coupled penalty, AdamW for decay: SGD's runs would only
    # repeat Adam's code with another optimizer.
    optimizers=("adam", "adamw"),
)


class Group(NamedTuple):
    """Runs trained together: they share all of this, and the weights."""

    family: str
    data: str
    optimizer: str
    width: int
    depth: int
    num_train: int
    seed: int

    @property
    def config_key(self):
        """The configuration, without the seed."""
        return (
            f"{self.family}/{self.data}/{self.optimizer}/w{self.width}"
            f"/d{self.depth}/n{self.num_train}"
        )

    @property
    def key(self):
        return f"{self.config_key}/s{self.seed}"

    @property
    def setup(self):
        return Setup(self.family, self.data, self.optimizer)

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
    def uniform(self):
        """The same multiplier on every kernel: a rescaled `none` or decay.

        Such a variant at factor `f` trains exactly as `none` (or `adamw`)
        at `f * multiplier`, so on MNIST-1D it is not trained again: its
        records are those runs with the factor rescaled (`derived.py`).
        """
        return self.scale in ("none", "decay") and (
            self.normalize_depth or self.num_examples
        )

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
OTHER_SCALES = (Variant("size"), Variant("fan_in"), Variant("fan_out"))
"""The package's remaining scales, trained in `OTHER_SCALES_SETUP` only."""
OTHER_SCALES_SETUP = Setup("cnn", "mnist1d", "adam")


def plain_variants(setup):
    """The variants summarized on every configuration of a setup."""
    if setup.optimizer == "adamw":
        return DECAY_VARIANTS
    if setup == OTHER_SCALES_SETUP:
        return L2_VARIANTS + OTHER_SCALES
    return L2_VARIANTS


def summarized_variants(setup):
    if setup.optimizer == "adamw":
        return DECAY_VARIANTS
    return plain_variants(setup) + DATA_SIZE_VARIANTS


def configurations(settings):
    """Every group of the study less its seed, as `Group` fields."""
    result = []
    for setup in SETUPS:
        if setup.optimizer not in settings.optimizers:
            continue
        shapes = settings.shapes_of(setup)
        width, depth = shapes.reference
        sizes = [(w, depth) for w in shapes.widths]
        sizes += [(width, d) for d in shapes.depths if d != depth]
        sweep_size, other_size = settings.num_train[setup.data]
        for size in sizes:
            result.append((*setup, *size, sweep_size))
        result.append((*setup, width, depth, other_size))
    return result


def groups(settings):
    return [
        Group(*config, seed)
        for seed in settings.seeds
        for config in configurations(settings)
    ]


def trains_derived(data):
    """Whether the uniform variants are derived (MNIST-1D) or trained."""
    return data == "mnist1d"


def trained_variants(group, settings):
    """The variants trained in this group.

    On the tabular data every variant is trained, the `num_examples` ones
    on the reference model only (at both sizes: they are compared along the
    data-size axis alone). On MNIST-1D the uniform variants are derived
    from `none` and `adamw` (see `Variant.uniform`), and every group has an
    unpenalized member too (`None`), the baseline of its family.
    """
    setup = group.setup
    if trains_derived(group.data):
        return [v for v in plain_variants(setup) if not v.uniform]
    plain = plain_variants(setup)
    if group.optimizer == "adamw":
        return plain
    reference = settings.shapes_of(setup).reference
    if (group.width, group.depth) != tuple(reference):
        return plain
    return plain + DATA_SIZE_VARIANTS


def num_kernels(family, depth):
    """Penalised kernels of a network of `depth` layers (or blocks).

    MLP: `depth` hidden layers and the output. CNN: `depth` convolutions
    and the output. Transformer: the patch embedding, per block the four
    attention projections and two feed-forward kernels, and the output.
    """
    if family == "transformer":
        return 6 * depth + 2
    return depth + 1


def hidden_kernel_shape(family, width):
    """The shape of a typical hidden kernel, for centering a grid."""
    if family == "cnn":
        return (3, width, width)
    return (width, width)
