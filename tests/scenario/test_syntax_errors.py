"""Every syntax error names file:line:column and what was expected, and nothing runs."""

from __future__ import annotations

import pytest

from ksmdiff.errors import InputError
from ksmdiff.scenario import parse

HEAD = 'scenario "t"\nprocess A\nA: mmap buf 4\n'


@pytest.mark.parametrize("text, line, col, message, expected", [
    ("", 1, 1, "must start with its title", 'scenario "TITLE"'),
    ("process A\n", 1, 1, "must start with its title", "scenario"),
    ('scenario "t"\n', 2, 1, "no 'process' statement", "process NAME"),
    ('scenario t\n', 1, 10, "unexpected", "quoted string"),
    (HEAD + "A: frob buf\n", 4, 4, "unexpected 'frob'", "'mmap'"),
    (HEAD + "A: fill buf 0x5a 0x01\n", 4, 18, "unexpected '0x01'", "end of line"),
    (HEAD + "A: fill buf\n", 4, 12, "unexpected end of line", "a byte such as 0x5a"),
    (HEAD + "A: write buf[0 0x01\n", 4, 16, "unexpected '0x01'", "']'"),
    (HEAD + "expect A buf[0] bogus\n", 4, 17, "unexpected 'bogus'", "a predicate"),
    (HEAD + "expect A buf[0] ksm on five\n", 4, 24, "unexpected", "kernel version"),
    # ("cow_ksm one" could still be a per-process counter 'one' of a process cow_ksm: the
    # change is missing at the end of the line)
    (HEAD + "expect counter cow_ksm one\n", 4, 27, "unexpected", "signed number"),
    (HEAD + "expect counter cow_ksm one two\n", 4, 28, "unexpected", "signed number"),
    (HEAD + "A: write buf 0x1ff\n", 4, 14, "out of range", "0x00..0xff"),
    (HEAD + "A: madvise buf sideways\n", 4, 16, "unknown madvise advice", "mergeable"),
    (HEAD + "A: mprotect buf rwx\n", 4, 17, "unknown protection", "ro, rw or none"),
    (HEAD + "ksm set run 1\n", 4, 13, "ksm set run 1", "ksm set run 2"),
    (HEAD + "ksm set frobs 2\n", 4, 9, "unknown KSM knob 'frobs'", "use_zero_pages"),
    (HEAD + "A: prctl merge maybe\n", 4, 16, "unknown prctl", "on or off"),
    (HEAD + "A: read buf[3..1]\n", 4, 13, "empty range", "i <= j"),
    (HEAD + "expect A buf[0] ksm on 5.8..5.1\n", 4, 24, "empty version range", "A <= B"),
    (HEAD + "A: read buf[99999999999999999999]\n", 4, 13, "too large", "below"),
    ('scenario "t"\nrequires swap, teleport\nprocess A\n', 2, 16, "unknown feature", "swap"),
    (HEAD + "A: read buf\t@\n", 4, 13, "unexpected character '@'", "end of line"),
])
def test_syntax_error_names_place_and_expectation(text, line, col, message, expected):
    with pytest.raises(InputError) as info:
        parse(text, "case.scenario")
    err = info.value
    assert err.location is not None
    assert (err.location.file, err.location.line, err.location.column) == \
        ("case.scenario", line, col), err.render()
    assert message in err.message, err.render()
    assert expected in (err.expected or ""), err.render()
    assert err.render().startswith(f"case.scenario:{line}:{col}: error: ")


def test_binary_garbage_is_refused_with_position():
    with pytest.raises(InputError) as info:
        parse(b'scenario "t"\nprocess A\n\x89PNG\xff\xfe', "g.scenario")
    assert "not UTF-8" in info.value.message
    assert (info.value.location.line, info.value.location.column) == (3, 1)
    assert "0x89" in info.value.message


def test_nul_byte_is_refused():
    with pytest.raises(InputError) as info:
        parse('scenario "t"\nprocess A\nA: mmap b\x00 1\n', "n.scenario")
    assert "control character" in info.value.message
    assert info.value.location.line == 3


def test_ten_megabyte_file_is_refused_before_parsing():
    text = 'scenario "t"\nprocess A\n' + ("# filler\n" * (10 * 1024 * 1024 // 9))
    with pytest.raises(InputError) as info:
        parse(text, "big.scenario")
    assert "more than the limit" in info.value.message


def test_header_order_errors():
    with pytest.raises(InputError, match="second 'process'"):
        parse('scenario "t"\nprocess A\nprocess B\n')
    with pytest.raises(InputError, match="must come before 'process'"):
        parse('scenario "t"\nprocess A\ntags x\n')
    with pytest.raises(InputError, match="must be the first statement"):
        parse('tags x\nscenario "t"\nprocess A\n')
