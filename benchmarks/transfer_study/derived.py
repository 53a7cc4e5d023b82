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

from transfer_study.settings import trains_derived


def derived_factor(name, record):
    """The factor of variant `name` that trains as `record` was trained."""
    if name == "none+num_examples":
        return record["factor"] * 2 * record["num_train"]
    return record["factor"] * record["num_kernels"]


DERIVED_FROM = {
    "none/kernels": "none",
    "none+num_examples": "none",
    "adamw/kernels": "adamw",
}
"""Each derived variant, and the variant whose runs it equals."""


def with_derived_records(records):
    """`records`, plus the derived variants' records on MNIST-1D."""
    derived = [
        {
            **record,
            "variant": name,
            "factor": derived_factor(name, record),
            "source_factor": record["factor"],
        }
        for record in records
        if trains_derived(record["data"])
        for name, source in DERIVED_FROM.items()
        if record["variant"] == source
    ]
    return records + derived
