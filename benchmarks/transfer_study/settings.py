"""What a study trains: its sizes, setups, variants and groups."""

import dataclasses
from typing import NamedTuple

from keras_scaled_l2.scales import SCALES

PLAIN_SCALES = tuple(SCALES)
DEFAULT_FACTOR = 0.01  # ScaledL2's default, and keras's own `L2(0.01)`
AXES = ("width", "depth", "data size")
SETUPS = (("synthetic", "adam"), ("synthetic", "sgd"), ("digits", "adam"))
"""(data set, optimizer) pairs."""

DIGITS_TRAIN_ROWS = 1347
"""scikit-learn's digits: 1797 images, 1347 for training, 450 for test."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of one study; `FULL` is the published one."""

    widths: tuple  # at depth `reference[1]`
    depths: tuple  # at width `reference[0]`
    reference: tuple  # (width, depth) of the data-size comparison
    seeds: tuple
    epochs: dict  # per data set
    num_train: dict  # per data set: (sweep size, the other size)
    num_test: int  # synthetic test rows
    signal: float  # of the synthetic data
    batch_size: int
    half_decades: int  # grid points on each side of a scale's center
    center: dict  # per data set, the grid center of `none`; see grid.py


FULL = Settings(
    widths=(64, 256, 1024),
    depths=(2, 4, 8),
    reference=(256, 4),
    seeds=(0, 1, 2),
    epochs={"synthetic": 10, "digits": 12},
    num_train={
        "synthetic": (2000, 500),
        "digits": (DIGITS_TRAIN_ROWS, round(DIGITS_TRAIN_ROWS / 4)),
    },
    num_test=4000,
    signal=0.5,
    batch_size=64,
    half_decades=4,
    center={"synthetic": 1e-3, "digits": 10**-3.5},
)
QUICK = Settings(
    widths=(8, 16, 32),
    depths=(1, 2, 3),
    reference=(16, 2),
    seeds=(0,),
    epochs={"synthetic": 1, "digits": 1},
    num_train={"synthetic": (256, 64), "digits": (256, 64)},
    num_test=256,
    signal=0.5,
    batch_size=64,
    half_decades=1,
    center={"synthetic": 1e-3, "digits": 1e-3},
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
    """A scale, with or without `num_examples` (the training-set size)."""

    scale: str
    num_examples: bool

    @property
    def name(self):
        return f"{self.scale}+num_examples" if self.num_examples else self.scale


PLAIN_VARIANTS = tuple(Variant(scale, False) for scale in PLAIN_SCALES)
DATA_SIZE_VARIANTS = tuple(Variant(scale, True) for scale in PLAIN_SCALES)
VARIANTS = PLAIN_VARIANTS + DATA_SIZE_VARIANTS


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
        for config in configurations(settings)
        for seed in settings.seeds
    ]


def variants_of(group, settings):
    """The variants trained in this group.

    `num_examples` only rescales the factor at a fixed data size, so its
    variants are trained on the reference model only, at both sizes.
    """
    if (group.width, group.depth) != tuple(settings.reference):
        return PLAIN_VARIANTS
    return VARIANTS
