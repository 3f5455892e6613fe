"""The shared header check of prove and benchmark result files."""

import pytest

from ksmdiff.errors import InputError, Location
from ksmdiff.reports.header import check_header

W = Location("r.json", 1, 1)


def _check(rec):
    check_header(rec, W, "prove", 1, "prove result", "ksmdiff prove --json", ("results",))


def test_a_good_header_passes():
    _check({"tool": "ksmdiff", "kind": "prove", "format": 1, "results": []})


@pytest.mark.parametrize("rec, says", [
    ([], "not a ksmdiff prove result"),
    ({"tool": "ksmdiff", "kind": "bench", "format": 1, "results": []},
     "not a ksmdiff prove result"),
    ({"tool": "ksmdiff", "kind": "prove", "format": 2, "results": []},
     "prove result format 2 is not supported"),
    ({"tool": "ksmdiff", "kind": "prove", "format": 1}, "prove result lacks results"),
])
def test_a_bad_header_says_what_is_wrong(rec, says):
    with pytest.raises(InputError) as e:
        _check(rec)
    assert says in str(e.value) and "r.json" in str(e.value)
