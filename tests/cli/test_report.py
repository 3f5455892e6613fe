"""The result table: reasons shown, FAIL n/m explained, nothing-checked cells not 'ok 0',
one line per distinct failure with every version it happened on, and the model's several
allowed values named when they make an expect fail."""

from __future__ import annotations

import io

from ksmdiff.judge.expects import FAILED, HELD, SKIPPED, ExpectResult
from ksmdiff.report import cell_text, print_summary, several_values_note
from ksmdiff.scenario import parse
from ksmdiff.session import CellResult, run_model_cell
from ksmdiff.versions import KernelVersion

TEXT = '''scenario "t"
process A
A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: write buf[0] 0x01
expect A buf[0] reused
expect counter pages_shared +5 on 5.4
'''


def _table(scn, versions):
    cells = {(0, v): run_model_cell(scn, KernelVersion.parse(v)) for v in versions}
    out = io.StringIO()
    print_summary([scn], versions, cells, out=out)
    return cells, out.getvalue()


def test_same_failure_is_one_line_with_every_version():
    scn = parse(TEXT, "t.scenario")
    cells, text = _table(scn, ["4.19", "5.4", "5.10", "6.12"])
    assert text.count("t.scenario:9:") == 1
    assert "t.scenario:9: failed on the 4.19, 5.10, 6.12 models: expect A buf[0] reused" in text
    assert "t.scenario:10: failed on the 5.4 model" in text
    # n of the m expects judged there (the 'on 5.4' one is skipped elsewhere)
    assert cell_text(cells[(0, "5.4")]) == "FAIL 1/2"
    assert cell_text(cells[(0, "6.12")]) == "FAIL 1/1"
    assert "'FAIL n/m': n of the m expects judged on that version failed" in text


def test_a_cell_that_checked_nothing_is_not_ok_0():
    scn = parse('scenario "t"\nprocess A\nA: mmap b 1\nexpect A b not present on 5.4\n')
    cells, text = _table(scn, ["5.4", "6.12"])
    assert cell_text(cells[(0, "5.4")]) == "ok 1"
    assert cell_text(cells[(0, "6.12")]) == "ran, 0 checked"
    assert "ok 0" not in text and "'ran, 0 checked'" in text


def test_unsupported_shows_why_once_for_every_version():
    scn = parse('scenario "p"\nprocess A\nA: prctl merge on\nA: mmap b 1\n', "p.scenario")
    _, text = _table(scn, ["4.19", "5.4", "6.12"])
    line = next(ln for ln in text.splitlines() if ln.startswith("p.scenario: unsupported"))
    assert "on the 4.19, 5.4 models" in line and "prctl-merge" in line
    assert "'unsupported': the version lacks a feature" in text


def test_several_allowed_values_are_named():
    scn = parse(TEXT, "t.scenario")
    stmt = scn.statements[6]                 # expect A buf[0] reused
    reason = "A buf[0]: fault = {copied, reused}"
    assert several_values_note(stmt, reason) == (
        "expect fails because the model allows {copied, reused}: an expect must hold for "
        "every allowed value")
    assert several_values_note(stmt, "A buf[0]: fault = {copied}") is None
    assert several_values_note(stmt, "A buf[0]: fault = {copied, fresh}") is None
    cell = CellResult(scn, "5.4", KernelVersion.parse("5.4"), "ok", "",
                      [ExpectResult(6, 9, "expect A buf[0] reused", FAILED, reason),
                       ExpectResult(7, 10, "expect counter pages_shared +5 on 5.4", HELD),
                       ])
    out = io.StringIO()
    print_summary([scn], ["5.4"], {(0, "5.4"): cell}, out=out)
    assert ("    expect fails because the model allows {copied, reused}: an expect must "
            "hold for every allowed value") in out.getvalue()
    assert cell_text(cell) == "FAIL 1/2"
    skipped = CellResult(scn, "5.4", KernelVersion.parse("5.4"), "ok", "",
                         [ExpectResult(6, 9, "x", SKIPPED, "not on 5.4")])
    assert cell_text(skipped) == "ran, 0 checked"


def test_a_kernel_that_did_not_run_is_said_once():
    a = parse(TEXT, "a.scenario")
    b = parse(TEXT, "b.scenario")
    why = "not root: kernel results not run"
    cells = {(i, "host"): CellResult(s, "host", KernelVersion.parse("6.18"), "not-run", why)
             for i, s in enumerate([a, b])}
    out = io.StringIO()
    print_summary([a, b], ["host"], cells, out=out)
    text = out.getvalue()
    assert text.count(why) == 1
    assert f"not run on the host kernel, 2 scenarios: {why}" in text
    assert "'not run': the kernel side could not run here" in text
