"""Comments survive text -> tree -> text: ``ksmdiff format`` never deletes one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksmdiff.scenario import parse, print_scenario

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "corpora").rglob("*.scenario"))

TEXT = '''# about the whole file
# second line, with "quotes # and a hash"

scenario "a # in the title is no comment"  # the title's comment
tags t1, t2
# above requires
requires swap

# above process
process A  # trailing on process
A: mmap buf 2

# a group
A: fill buf 0x5a
expect A buf[0] present on >=5.4  # why
#
# after an empty comment line

# at the end
'''


def _comments(scn) -> list:
    """Every comment of a scenario, in order, as printed-independent data."""
    out = [scn.header_comments]
    out += [s.comments for s in scn.statements]
    out.append(scn.end_comments)
    return out


def _comment_texts(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if "#" in line:
            out.append(line[line.index("#", line.rfind('"') + 1 if line.startswith("scenario")
                                       else 0):].rstrip())
    return out


def test_every_kind_of_comment_is_kept_in_place():
    scn = parse(TEXT, "t.scenario")
    assert print_scenario(scn) == TEXT
    assert scn.title == "a # in the title is no comment"
    assert scn.statements[1].comments.before == (None, " a group")
    assert scn.statements[2].comments.trailing == " why"
    assert scn.header_comment("process").before == (" above process",)
    assert scn.header_comment("process").trailing == " trailing on process"
    assert scn.end_comments == ("", " after an empty comment line", None, " at the end")


def test_comments_do_not_take_part_in_equality():
    assert parse(TEXT) == parse("\n".join(
        line.split("  #")[0] for line in TEXT.splitlines() if not line.startswith("#")))


def test_blank_line_runs_collapse_and_whitespace_is_canonical():
    text = 'scenario "t"\n\n\n\nprocess A\n\n\n\nA: mmap b 1   #  x   \n\n\n'
    assert print_scenario(parse(text)) == 'scenario "t"\n\nprocess A\n\nA: mmap b 1  #  x\n'


def test_a_header_moved_by_the_printer_keeps_its_comment():
    text = 'scenario "t"\n# why swap\nrequires swap\n# the tags\ntags a\n\nprocess A\n'
    out = print_scenario(parse(text))
    assert out == 'scenario "t"\n# the tags\ntags a\n# why swap\nrequires swap\n\nprocess A\n'


@pytest.mark.parametrize("path", CORPUS, ids=[f"{p.parent.name}/{p.name}" for p in CORPUS])
def test_bundled_scenarios_are_canonical_and_keep_every_comment(path):
    text = path.read_text()
    scn = parse(text, str(path))
    printed = print_scenario(scn)
    again = parse(printed, str(path))
    assert again == scn and _comments(again) == _comments(scn)   # parse -> print -> parse
    assert print_scenario(again) == printed                      # print is a fixpoint
    assert _comment_texts(printed) == _comment_texts(text)       # no comment lost
    assert printed == text                                       # format --check passes


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 30
