"""The tolerance helper tells last-bit noise from a changed number."""

import math

import pytest
from nested_close import assert_nested_close

pytestmark = pytest.mark.run_once  # no backend computes a result here

SUMMARY = {"drift": 3.06017247567814, "at_edge": [False, True], "n": 3}


def test_last_bit_differences_pass():
    other = {**SUMMARY, "drift": 3.0601724756781397}
    assert other["drift"] != SUMMARY["drift"]
    assert_nested_close(other, SUMMARY, rel=1e-9)
    assert_nested_close([math.nan, 0.0], [math.nan, 0.0], rel=1e-9)


@pytest.mark.parametrize(
    ("got", "where"),
    [
        ({**SUMMARY, "drift": 3.0601725}, "summary.drift"),
        ({**SUMMARY, "at_edge": [False, False]}, r"summary.at_edge\[1\]"),
        ({**SUMMARY, "n": 4}, "summary.n"),
        ({"drift": 3.06017247567814, "n": 3}, "keys"),
        ({**SUMMARY, "drift": math.nan}, "summary.drift"),
        ({**SUMMARY, "drift": "3.06"}, "not a number"),
    ],
)
def test_changed_numbers_structure_and_flags_fail(got, where):
    with pytest.raises(AssertionError, match=where):
        assert_nested_close(got, SUMMARY, rel=1e-9)
