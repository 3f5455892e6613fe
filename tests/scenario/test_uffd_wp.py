"""``P: uffd-wp TARGET``: syntax, round trip, implied feature, and what may follow it."""

from __future__ import annotations

import pytest

from ksmdiff.errors import InputError
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import implied_features, parse, print_scenario

HEAD = ('scenario "t"\nprocess A\nA: mmap buf 4\nA: fill buf 0x11\nA: madvise buf mergeable\n'
        'ksm settle\n')


def test_round_trip_and_feature():
    scn = parse(HEAD + "A: uffd-wp buf[0..1]\nA: madvise buf unmergeable\nA: read buf\n")
    s = scn.statements[4]
    assert isinstance(s, A.UffdWp) and (s.target.lo, s.target.hi) == (0, 1)
    assert parse(print_scenario(scn)) == scn
    assert "uffd-wp" in implied_features(scn)


@pytest.mark.parametrize("body, message", [
    ("A: uffd-wp buf\nA: write buf[1] 0x01\n", "uffd-wp page buf[1] would wait"),
    ("A: uffd-wp buf\nA: fill buf 0x01\n", "would wait"),
    ("A: uffd-wp buf\nA: force-write buf[3] 0x01\n", "would wait"),
    ("A: uffd-wp buf\nA: mlock buf\n", "would wait"),
    ("A: uffd-wp buf\nksm settle\n", "ksmd running over uffd-wp pages"),
    ("A: uffd-wp buf\nksm scan 1\n", "ksmd running over uffd-wp pages"),
    ("A: uffd-wp buf\nA: fork B\n", "fork of A, which has uffd-wp pages"),
    ("A: uffd-wp buf\nA: madvise buf pageout\n", "not modelled"),
    ("A: uffd-wp buf\nA: mprotect buf ro\n", "not modelled"),
    ("A: mprotect buf ro\nA: uffd-wp buf\n", "read-only page"),
    ("A: mlock buf\nA: uffd-wp buf\n", "mlocked page"),
])
def test_errors(body, message):
    with pytest.raises(InputError) as info:
        parse(HEAD + body, "e.scenario")
    assert message in info.value.render()
    assert info.value.location.line == 8


def test_munmap_exit_and_exec_end_it():
    parse(HEAD + "A: uffd-wp buf[0]\nA: write buf[1] 0x01\nA: munmap buf[0]\nksm settle\n")
    parse(HEAD + "A: fork B\nB: uffd-wp buf\nB: exit\nksm settle\n")
    parse(HEAD + "A: uffd-wp buf\nA: exec\nA: mmap buf 2\nA: fill buf 0x01\nksm settle\n")
