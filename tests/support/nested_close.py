"""Compare nested results (dicts, lists, numbers) with a float tolerance.

Floats that numpy recomputes go through BLAS/LAPACK kernels chosen by the
processor, so the same records summarized on two machines of one kind can
differ in the last bits. Everything that is not a float (keys, names,
counts, flags, the shape of the structure) must still be equal exactly.
"""

import math


def assert_nested_close(got, want, rel, path="summary"):
    """Fails naming the first place where `got` and `want` differ.

    Floats (and a float against an int) are compared with `math.isclose`
    at relative tolerance `rel`; NaN equals NaN, infinities must match.
    """
    if isinstance(want, dict):
        assert isinstance(got, dict), f"{path}: {got!r} is not a dict"
        assert got.keys() == want.keys(), (
            f"{path}: keys {sorted(got)} != {sorted(want)}"
        )
        for key in want:
            assert_nested_close(got[key], want[key], rel, f"{path}.{key}")
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple), f"{path}: {got!r} is a sequence"
        assert len(got) == len(want), f"{path}: {len(got)} != {len(want)}"
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            assert_nested_close(a, b, rel, f"{path}[{index}]")
    elif isinstance(want, float) or (
        isinstance(got, float) and not isinstance(want, bool)
    ):
        assert isinstance(got, int | float) and not isinstance(got, bool), (
            f"{path}: {got!r} is not a number"
        )
        if math.isnan(want):
            assert math.isnan(got), f"{path}: {got!r} != nan"
        else:
            assert math.isclose(got, want, rel_tol=rel, abs_tol=0.0), (
                f"{path}: {got!r} != {want!r} (rel {rel})"
            )
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"
