"""The validator's munmap rule: a range holding pages already unmapped is valid (munmap
acts on the pages still mapped); every other operation needs its pages mapped."""

from __future__ import annotations

import pytest

from ksmdiff.errors import InputError
from ksmdiff.scenario import parse

REPRO = ('scenario "hole"\nprocess A\nA: mmap a 4\nA: munmap a[1]\nA: mmap b 1\n'
         'A: fill b 0x01\nA: munmap a\nA: write b[0] 0x02\n')


def test_munmap_over_a_hole_is_valid():
    scn = parse(REPRO)
    assert [type(s).__name__ for s in scn.statements][-2:] == ["Munmap", "Write"]


def test_the_hole_is_still_unmapped_for_everything_else():
    with pytest.raises(InputError, match=r"read of an unmapped page a\[1\]"):
        parse('scenario "s"\nprocess A\nA: mmap a 4\nA: munmap a[1]\nA: mmap b 1\n'
              'A: read a[0..2]\n')


def test_a_region_can_be_mapped_again_once_every_page_is_unmapped():
    parse(REPRO + "A: mmap a 2\nA: fill a 0x03\n")
    with pytest.raises(InputError, match="already mapped"):
        parse('scenario "s"\nprocess A\nA: mmap a 4\nA: munmap a[1]\nA: mmap a 2\n')
