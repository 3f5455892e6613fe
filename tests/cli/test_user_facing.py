"""What a user meets first: every error of every file in one pass, a bad --json path
refused before anything runs, an atomic run record with the tool version, Ctrl-C without a
traceback, versions outside the checked range run with a note, format keeping comments,
and the pytest plugin's markers registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ksmdiff
from ksmdiff import cli
from ksmdiff.cli import main

HOME = Path(ksmdiff.__file__).resolve().parents[1]
ROOT = Path(__file__).resolve().parents[2]

GOOD = '''scenario "only-pte-mapped KSM page"
process A
A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: write buf[0] 0x01
expect A buf[0] reused on 5.1..5.8
expect A buf[0] copied on <5.1, >=5.9
'''


def test_check_reports_every_bad_file_in_one_pass(tmp_path, capsys):
    (tmp_path / "a.scenario").write_text('scenario "x"\nprocess A\nB: mmap b 1\n')
    (tmp_path / "b.scenario").write_text('scenario "x"\nprocess A\nA: wirte b 1\n')
    (tmp_path / "c.scenario").write_text(GOOD)
    assert main(["check", str(tmp_path), str(tmp_path / "missing.scenario")]) == 2
    out, err = capsys.readouterr()
    assert f"{tmp_path / 'a.scenario'}:3:1: error: unknown process 'B'" in err
    assert f"{tmp_path / 'b.scenario'}:3:4: error: unexpected 'wirte'" in err
    assert f"{tmp_path / 'missing.scenario'}:1:1: error: no such file" in err
    assert f"{tmp_path / 'c.scenario'}: ok" in out


@pytest.mark.parametrize("where", ["missing-dir/r.json", "file/r.json", "."])
def test_json_to_a_bad_path_fails_before_the_run(tmp_path, capsys, where):
    good = tmp_path / "good.scenario"
    good.write_text(GOOD)
    (tmp_path / "file").write_text("")
    assert main(["run", str(good), "--kernel", "5.4", "--json", str(tmp_path / where)]) == 2
    out, err = capsys.readouterr()
    assert "--json" in err and out == ""          # no table: nothing ran


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_json_into_a_read_only_directory_fails_before_the_run(tmp_path, capsys):
    good = tmp_path / "good.scenario"
    good.write_text(GOOD)
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    assert main(["run", str(good), "--kernel", "5.4", "--json", str(ro / "r.json")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_record_has_the_tool_version_and_is_written_atomically(tmp_path, capsys):
    good = tmp_path / "good.scenario"
    good.write_text(GOOD)
    out = tmp_path / "rec" / "run.json"
    out.parent.mkdir()
    out.write_text("an older record")
    assert main(["run", str(good), "--kernel", "5.4", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["tool_version"] == ksmdiff.__version__
    assert sorted(p.name for p in out.parent.iterdir()) == ["run.json"]  # no temp file left


def test_a_failed_write_leaves_the_old_record(tmp_path, monkeypatch):
    from ksmdiff import report
    out = tmp_path / "run.json"
    out.write_text("old")

    from ksmdiff.internal import atomic

    def boom(*a, **k):       # interrupted after the new text is written, before the rename
        raise KeyboardInterrupt
    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        report.write_json(str(out), [], [], {}, 0.0, [])
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_ctrl_c_during_start_up_prints_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["check", "x"]) == 130
    err = capsys.readouterr().err
    assert err == "ksmdiff: interrupted\n"


def test_versions_outside_the_checked_range_run_with_a_note(tmp_path, capsys):
    good = tmp_path / "good.scenario"
    good.write_text(GOOD)
    out = tmp_path / "r.json"
    assert main(["run", str(good), "--kernel", "7.3", "--kernel", "3.10", "--kernel", "5.4",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "note: 7.3 is newer than" in text and "judged as the >=6.7 era" in text
    assert "note: 3.10 is older than" in text and "judged as the <=5.0 era" in text
    assert "note: 5.4" not in text
    assert len(json.loads(out.read_text())["notes"]) == 2


def test_format_in_place_keeps_comments(tmp_path):
    p = tmp_path / "c.scenario"
    text = ('# why this scenario\nscenario "t"  # title\n\nprocess A\n# map\n'
            'A:   mmap  b 1   # one page\n# the end\n')
    p.write_text(text)
    assert main(["format", "--in-place", str(p)]) == 0
    assert p.read_text() == text.replace("A:   mmap  b 1   #", "A: mmap b 1  #")
    assert main(["format", "--check", str(p)]) == 0


def test_the_bundled_corpus_is_canonical(capsys):
    assert main(["format", "--check", str(ROOT / "corpora")]) == 0


def test_the_pytest_plugin_registers_its_markers(tmp_path):
    from importlib.metadata import entry_points
    plugin = ([] if "ksmdiff.pytest_plugin" in {ep.value for ep in entry_points(group="pytest11")}
              else ["-p", "ksmdiff.pytest_plugin"])
    (tmp_path / "good.scenario").write_text(GOOD)
    env = {**os.environ, "PYTHONPATH": str(HOME)}
    res = subprocess.run([sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), "--strict-markers",
                          "-W", "error::pytest.PytestUnknownMarkWarning", "-q",
                          "--ksmdiff-kernel", "5.4", "--collect-only", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 tests collected" in res.stdout          # model[5.4] and the host item
    res = subprocess.run([sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), "--markers"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert "@pytest.mark.kernel:" in res.stdout and "@pytest.mark.slow:" in res.stdout
