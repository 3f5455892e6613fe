"""``P: exec`` and absolute per-process counters (``expect counter P NAME =N``): syntax,
round trip, layout and the validator's errors."""

from __future__ import annotations

import pytest

from ksmdiff.errors import InputError
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import parse, print_scenario
from ksmdiff.scenario.layout import layout_at

HEAD = 'scenario "t"\nprocess A\nA: mmap buf 4\n'


def test_exec_round_trip_and_layout():
    scn = parse(HEAD + "A: fill buf 0x11\nA: exec\nA: mmap buf 2\nA: fill buf 0x22\n")
    assert isinstance(scn.statements[2], A.Exec)
    assert parse(print_scenario(scn)) == scn
    lay = layout_at(scn, 3)                       # after exec: nothing of A is mapped
    assert lay.procs["A"].alive and not any(lay.procs["A"].regions["buf"].mapped)
    assert layout_at(scn, 4).npages("A", "buf") == 2


def test_absolute_counter_round_trip():
    scn = parse(HEAD + "expect counter A ksm_merging_pages =4 on >=6.1\n"
                       "expect counter A ksm_rmap_items +0\n")
    a, d = scn.statements[-2:]
    assert (a.absolute, a.delta, a.proc) == (True, 4, "A")
    assert (d.absolute, d.delta) == (False, 0)
    text = print_scenario(scn)
    assert "expect counter A ksm_merging_pages =4 on >=6.1" in text
    assert parse(text) == scn


@pytest.mark.parametrize("body, message, line", [
    ("A: exec\nA: fill buf 0x01\n", "fill of an unmapped page buf[0]", 5),
    ("A: exec\nA: read buf[1]\n", "read of an unmapped page buf[1]", 5),
    ("A: pin buf[2]\nA: exec\n", "exec while A still pins buf[2]", 5),
    ("A: exit\nA: exec\n", "process A has exited", 5),
    ("Z: exec\n", "unknown process 'Z'", 4),
    ("expect counter pages_shared =1\n", "only a per-process counter", 4),
    ("expect counter A ksm_merging_pages =99999999999\n", "too large", 4),
])
def test_errors(body, message, line):
    with pytest.raises(InputError) as info:
        parse(HEAD + body, "e.scenario")
    assert message in info.value.render()
    assert info.value.location.line == line


def test_exec_ends_mlock_and_pins_may_be_dropped_first():
    parse(HEAD + "A: mlock buf\nA: exec\nA: mmap buf 4\nA: madvise buf pageout\n")
    parse(HEAD + "A: pin buf[0]\nA: unpin buf[0]\nA: exec\n")
