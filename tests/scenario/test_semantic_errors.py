"""Semantic errors: found by the validator's walk, with the statement's position."""

from __future__ import annotations

import pytest

from ksmdiff.errors import InputError
from ksmdiff.scenario import implied_features, parse

HEAD = 'scenario "t"\nprocess A\nA: mmap buf 4\n'


@pytest.mark.parametrize("body, line, message", [
    ("B: read buf\n", 4, "unknown process 'B'"),
    ("A: read other\n", 4, "has no region 'other'"),
    ("A: read buf[4]\n", 4, "page 4 is out of range"),
    ("A: read buf[2..9]\n", 4, "page 9 is out of range"),
    ("A: munmap buf[1]\nA: write buf[1] 0x01\n", 5, "write of an unmapped page buf[1]"),
    ("A: munmap buf\nA: fill buf 0x01\n", 5, "fill of an unmapped page"),
    ("A: mprotect buf ro\nA: write buf[0] 0x01\n", 5, "read-only page"),
    ("A: fork A\n", 4, "fork to an existing process name 'A'"),
    ("A: fork B\nB: exit\nA: fork B\n", 6, "fork to an existing process name 'B'"),
    ("A: fork B\nB: exit\nB: read buf\n", 6, "process B has exited"),
    ("A: mmap buf 2\n", 4, "already mapped"),
    ("A: mmap big 200000\n", 4, "mmap of 200000 pages"),
    ("A: mmap big 100000\nA: fork B\n", 5, "more than 131072 pages in all"),
    ("A: mmap none 0\n", 4, "mmap of 0 pages"),
    ("A: unpin buf[0]\n", 4, "has not pinned"),
    ("ksm scan 0\n", 4, "ksm scan 0"),
    ("ksm set use_zero_pages 2\n", 4, "out of range"),
    ("ksm set max_page_sharing 1\n", 4, "out of range"),
    ("expect A buf[0] reused\n", 4, "which no read, write or fill has touched"),
    ("A: fill buf 0x01\nA: fork B\nexpect B buf[0] copied\n", 6, "which no read"),
    ("expect counter frobs +1\n", 4, "unknown counter 'frobs'"),
    ("expect A buf[0..1] same-frame A buf[0..2]\n", 4, "compares 2 pages with 3"),
    ("expect Z buf[0] ksm\n", 4, "unknown process 'Z'"),
])
def test_semantic_error(body, line, message):
    with pytest.raises(InputError) as info:
        parse(HEAD + body, "sem.scenario")
    assert info.value.location.line == line, info.value.render()
    assert info.value.location.column == 1
    assert message in info.value.message, info.value.render()


def test_ltp_sizes_are_allowed():
    """LTP's ksm01: three processes of 32,768 pages; max_page_sharing up to INT_MAX
    (max_page_sharing_store() refuses only values below 2)."""
    body = "ksm set max_page_sharing 98304\nksm set max_page_sharing 2147483647\n"
    for c in "BCD":
        body += f"A: fork {c}\n{c}: mmap mem 32768\n"
    assert len(parse(HEAD + body).statements) == 9


def test_error_lists_known_names():
    with pytest.raises(InputError) as info:
        parse(HEAD + "A: fork B\nC: read buf\n")
    assert info.value.expected == "one of: A, B"


def test_munmap_then_remap_is_allowed():
    scn = parse(HEAD + "A: munmap buf\nA: mmap buf 2\nA: fill buf 0x01\n")
    assert len(scn.statements) == 4


def test_valid_statements_of_every_kind_parse():
    text = HEAD + """\
A: fill buf 0x5a
A: fill buf[0] zero
A: write buf[1..2] 0x01
A: read buf
A: madvise buf mergeable
A: madvise buf[3] pageout
A: mprotect buf ro
A: mprotect buf rw
A: pin buf[0]
A: unpin buf[0]
A: prctl merge on
ksm settle
ksm scan 2
ksm set use_zero_pages 1
A: fork B
expect B buf[0] not ksm on 5.1..5.8, >=6.7, <5.1, 6.1, <=5.18, >6.12.117
expect A buf[1] content 0x5a+0x01
expect A buf[0] content zero
expect A buf[0] same-frame B buf[0]
expect A buf[0] mapcount 2
expect counter cow_ksm -1
B: exit
expect A buf unmapped
"""
    scn = parse(text)
    assert implied_features(scn) == ("swap", "zero-pages", "prctl-merge")
