"""Scenarios written from the language reference alone (docs/scenario-language.md) parse
with no change."""

from __future__ import annotations

from ksmdiff.scenario import ast as A
from ksmdiff.scenario import parse, print_scenario

README_EXAMPLE = '''\
scenario "reuse of an only-pte-mapped KSM page"
tags seed, reuse

process A
A: mmap buf 4
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
expect A buf[0] ksm
expect A buf[0] same-frame A buf[3]
A: munmap buf[0..2]
A: write buf[3] 0x01
expect A buf[3] reused on 5.1..5.8
expect A buf[3] copied on <5.1, >=5.9
expect A buf[3] content 0x5a+0x01
'''

# Written by hand from the statement tables of docs/scenario-language.md, every statement
# once, with the spellings a reader would try: CRLF line ends, tabs, trailing comments, no
# blank lines.
EVERY_STATEMENT = (
    'scenario "every statement of the language reference"\r\n'
    "tags matrix, fork, swap\r\n"
    "requires swap, tracepoints\r\n"
    "process P\r\n"
    "P: mmap R 3\t# three pages\r\n"
    "P: fill R 0x10\r\n"
    "P: fill R[2] zero\r\n"
    "P: write R[0..1] 0xff\r\n"
    "P: read R\r\n"
    "P: madvise R mergeable\r\n"
    "P: madvise R[1] unmergeable\r\n"
    "P: madvise R[0] dontneed\r\n"
    "P: madvise R[2] pageout\r\n"
    "P: mprotect R ro\r\n"
    "P: mprotect R rw\r\n"
    "P: pin R[1]\r\n"
    "P: fork C\r\n"
    "P: unpin R[1]\r\n"
    "P: prctl merge on\r\n"
    "P: prctl merge off\r\n"
    "ksm settle\r\n"
    "ksm scan 2\r\n"
    "ksm set use_zero_pages 1\r\n"
    "ksm set max_page_sharing 256\r\n"
    "ksm set merge_across_nodes 1\r\n"
    "expect P R[0] ksm\r\n"
    "expect P R[0] not reused\r\n"
    "expect P R[0] copied on 5.1..5.8\r\n"
    "expect P R[0] zero-page on >=6.7\r\n"
    "expect P R[2] swapped on <5.1\r\n"
    "expect P R[2] present on 5.4\r\n"
    "expect P R[1] exclusive\r\n"
    "expect C R[1] mapcount 2\r\n"
    "expect P R[1] content 0x10+0xff\r\n"
    "expect P R[2] content zero\r\n"
    "expect P R[1] same-frame C R[1]\r\n"
    "C: munmap R[0]\r\n"
    "expect C R[0] unmapped\r\n"
    "C: exit\r\n"
    "expect counter cow_ksm +1 on >=5.19\r\n"
    "expect counter ksm_swpin_copy +0\r\n"
    "expect counter pgreuse +2\r\n"
    "expect counter pages_shared +1\r\n"
    "expect counter pages_sharing +0\r\n"
    "expect counter ksm_zero_pages +1\r\n"
    "expect counter stable_nodes_removed +1\r\n"
)


def test_readme_example_parses_and_round_trips():
    scn = parse(README_EXAMPLE, "readme.scenario")
    assert scn.title == "reuse of an only-pte-mapped KSM page"
    assert scn.tags == ("seed", "reuse")
    assert isinstance(scn.statements[-1], A.ExpectPage)
    assert print_scenario(scn) == README_EXAMPLE


def test_every_statement_of_the_table_parses():
    scn = parse(EVERY_STATEMENT, "every.scenario")
    kinds = {type(s).__name__ for s in scn.statements}
    assert kinds == {"Mmap", "Fill", "Write", "Read", "Madvise", "Mprotect", "Fork", "Exit",
                     "Pin", "Unpin", "Prctl", "KsmSettle", "KsmScan", "KsmSet", "ExpectPage",
                     "ExpectCounter", "Munmap"}
    assert parse(print_scenario(scn)) == scn
