"""text -> tree -> text: the printer's output parses back to an equal scenario."""

from __future__ import annotations

from hypothesis import given, settings

from ksmdiff.gen.strategies import scenarios
from ksmdiff.scenario import parse, print_scenario, validate
from ksmdiff.scenario import ast as A


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_print_then_parse_is_identity(scn):
    validate(scn)                         # the strategy only draws valid scenarios
    text = print_scenario(scn)
    again = parse(text, "roundtrip.scenario")
    assert again == scn
    assert print_scenario(again) == text  # and printing is a fixed point


def test_positions_do_not_take_part_in_equality():
    a = parse('scenario "t"\nprocess A\nA: mmap b 1\n')
    b = parse('# a comment\nscenario "t"\n\n\nprocess A\n   A:   mmap   b   1  # c\n')
    assert a == b
    assert a.statements[0].pos != b.statements[0].pos


def test_titles_with_quotes_and_backslashes_round_trip():
    scn = A.Scenario(title='a "quoted" \\ title\\', initial="A", statements=())
    assert parse(print_scenario(scn)) == scn


def test_content_normalises_a_write_equal_to_the_fill():
    assert str(A.Content(0x5A, 0x5A)) == "0x5a"
    assert str(A.Content(None, 0x00)) == "zero"
    assert str(A.Content(None, 0x01)) == "zero+0x01"
    assert A.Content.parse("0x5a+0x01") == A.Content(0x5A, 0x01)
