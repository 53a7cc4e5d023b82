"""Records of the uniform variants on MNIST-1D, from the runs they equal.

A uniform variant (`Variant.uniform`) puts one multiplier `c` on every
kernel: `none/kernels` divides by the number of kernels `K`,
`none+num_examples` by `2 m` (the `lambda/(2m)` convention), and
`adamw/kernels` divides the decay by `K`. At factor `f` it trains exactly as
`none` (or `adamw`) at `f * c`: the same penalty on every kernel, the same
updates. So on MNIST-1D its records are those runs with the factor divided
by `c`; each keeps the factor it was trained at as `source_factor`. The
tabular setups train these variants as members of their own.
"""

import math

from transfer_study.grid import multiplier
from transfer_study.settings import (
    DATA_SIZE_VARIANTS,
    DECAY_VARIANTS,
    L2_VARIANTS,
    num_kernels,
    trains_derived,
)


def derived_factor(name, record):
    """The factor of variant `name` that trains as `record` was trained.

    The variant divides every kernel's penalty by a constant (the number of
    kernels `K`, `2 m`, ...), so its factor is the source's times that. For
    the package's own rules the constant is the ratio of the multipliers
    `grid.multiplier` computes (`num_examples` through the package's
    scales); the candidates' are written here.
    """
    kernels = num_kernels(record["family"], record["depth"])
    rows = record["num_train"]
    if name in DERIVED_FROM:
        source = DERIVED_FROM[name]
        shape = (record["family"], record["width"], record["depth"], rows)
        rescale = multiplier(VARIANTS[source], *shape) / multiplier(
            VARIANTS[name], *shape
        )
    else:
        rescale = {
            "none/kernels^2": kernels**2,
            "none/sqrt(kernels)": math.sqrt(kernels),
            "none+sqrt(num_examples)": math.sqrt(rows),
        }[name]
    return record["factor"] * rescale


DERIVED_FROM = {
    "none/kernels": "none",
    "none+num_examples": "none",
    "adamw/kernels": "adamw",
}
"""Each derived variant, and the variant whose runs it equals."""
VARIANTS = {
    v.name: v for v in L2_VARIANTS + DECAY_VARIANTS + DATA_SIZE_VARIANTS
}


CANDIDATES = {
    "none/kernels^2": "none",
    "none/sqrt(kernels)": "none",
    "none+sqrt(num_examples)": "none",
}
"""Candidate rules, derived from `none` on every data set: a steeper and a
gentler depth exponent than `none/kernels`, and the square root of the
training rows (Loshchilov and Hutter's normalized weight decay scales with
`sqrt(batch / (rows * epochs))`) instead of `lambda/(2m)`."""
CANDIDATE_AXES = {
    "none/kernels^2": ("width", "depth", "data size"),
    "none/sqrt(kernels)": ("width", "depth", "data size"),
    "none+sqrt(num_examples)": ("data size",),
}
"""The axes each candidate is compared along: a data-size rule rescales
the factor at a fixed model, so it is compared across data sizes only."""


def with_derived_records(records):
    """`records`, plus the derived variants' and the candidates' records.

    The uniform variants are derived on MNIST-1D only (the tabular setups
    train them); the candidates on every data set.
    """
    derived = [
        {
            **record,
            "variant": name,
            "factor": derived_factor(name, record),
            "source_factor": record["factor"],
        }
        for record in records
        for name, source in {**DERIVED_FROM, **CANDIDATES}.items()
        if record["variant"] == source
        and (name in CANDIDATES or trains_derived(record["data"]))
    ]
    return records + derived
