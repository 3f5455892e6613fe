"""``ksmdiff run`` on the model: the table, the exit codes, the JSON run record."""

from __future__ import annotations

import json

from ksmdiff.cli import main
from ksmdiff.reports.record import with_fields
from ksmdiff.scenario import parse
from ksmdiff.session import ksm_reuse_seen, run_model_cell
from ksmdiff.versions import KernelVersion

REUSE = '''scenario "only-pte-mapped KSM page"
process A
A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
expect A buf[0] ksm
A: munmap buf[1]
A: read buf[0]
A: write buf[0] 0x01
expect A buf[0] reused on 5.1..5.8
expect A buf[0] copied on <5.1, >=5.9
expect A buf[0] content 0x5a+0x01
'''


def test_table_marks_the_reuse_on_54_alone(tmp_path, capsys):
    p = tmp_path / "reuse.scenario"
    p.write_text(REUSE)
    out_json = tmp_path / "run.json"
    code = main(["run", str(p), "--kernel", "4.19", "--kernel", "5.4", "--kernel", "6.12",
                 "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0, out
    row = next(line for line in out.splitlines() if "reuse" in line.split()[0])
    cells = row.split()[1:]
    assert cells == ["ok", "3", "ok", "3", "reuse", "ok", "3"], row
    record = json.loads(out_json.read_text())
    assert record["versions"] == ["4.19", "5.4", "6.12"]
    assert len(record["results"]) == 3
    r54 = next(r for r in record["results"] if r["target"] == "5.4")
    assert r54["ksm_reuse"] is True
    assert {e["status"] for e in r54["expects"]} == {"held", "skipped"}
    first = with_fields(r54["observations"])[0]
    assert first["fields"]["A/buf[0].present"] == [False]


def test_a_read_of_a_ksm_page_is_not_a_reuse():
    scn = parse(REUSE.replace("A: write buf[0] 0x01\n", "").split("expect A buf[0] reused")[0])
    cell = run_model_cell(scn, KernelVersion.parse("5.4"))
    assert not ksm_reuse_seen(scn, cell.records)


def test_reuse_is_found_alike_by_runs_and_by_keys():
    """ksm_reuse_seen reads history views by runs, whole records by key: the same answer
    on every corpus scenario where 5.4 reuses a KSM page and on one where it does not."""
    from pathlib import Path

    from ksmdiff.observe import Record
    from ksmdiff.scenario import find_scenarios, parse_file
    root = Path(__file__).resolve().parents[2] / "corpora"
    seen = set()
    for path in sorted(find_scenarios([root])):
        scn = parse_file(path)
        cell = run_model_cell(scn, KernelVersion.parse("5.4"))
        if cell.status != "ok":
            continue
        whole = [Record(r.stmt, r.line, dict(r.fields), r.status, r.note)
                 for r in cell.records]
        got = ksm_reuse_seen(scn, cell.records)
        assert got == ksm_reuse_seen(scn, whole), path
        seen.add(got)
    assert seen == {True, False}


def test_failed_expect_exits_1_and_names_the_line(tmp_path, capsys):
    p = tmp_path / "wrong.scenario"
    p.write_text(REUSE.replace("reused on 5.1..5.8", "reused on >=6.7"))
    assert main(["run", str(p), "--kernel", "6.12"]) == 1
    out = capsys.readouterr().out
    assert f"{p}:11: failed on the 6.12 model: expect A buf[0] reused on >=6.7" in out
    assert "fault = {copied}" in out


def test_unsupported_is_not_a_failure(tmp_path, capsys):
    p = tmp_path / "prctl.scenario"
    p.write_text('scenario "p"\nprocess A\nA: prctl merge on\nA: mmap b 1\n')
    assert main(["run", str(p), "--kernel", "5.4"]) == 0
    assert "unsupported" in capsys.readouterr().out
