"""Progress of long commands: one line per stage when stderr is no terminal (CI), a live
display on a terminal, nothing with -q; the same helper in every command."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ksmdiff.internal.progress import Mode, Progress, choose_mode

ROOT = Path(__file__).resolve().parents[2]


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_modes(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert choose_mode(True, _Tty()) is Mode.QUIET
    assert choose_mode(False, io.StringIO()) is Mode.LINES
    assert choose_mode(False, _Tty()) is Mode.LIVE
    monkeypatch.setenv("CI", "true")
    assert choose_mode(False, _Tty()) is Mode.LINES


def test_lines_one_per_stage_and_a_long_stage_at_most_every_interval():
    err = io.StringIO()
    with Progress(stream=err, interval=3600) as p:
        assert p.mode is Mode.LINES
        p.stage("model 5.4", total=3)
        for i in range(3):
            p.update(done=i + 1)           # within the interval: no line
        p.stage("model 6.12", total=3)
        p.event("lab 5.4: done")
    assert err.getvalue().splitlines() == ["... model 5.4", "... model 6.12",
                                           "... lab 5.4: done"]
    err = io.StringIO()
    with Progress(stream=err, interval=0) as p:
        p.stage("fuzz host", total=10)
        p.update(done=4, note="40 scenarios")
    assert err.getvalue().splitlines()[-1] == "... fuzz host 4/10: 40 scenarios"


def test_quiet_prints_nothing(capsys):
    err = io.StringIO()
    with Progress(quiet=True, stream=err) as p:
        p.stage("x", total=2)
        p.update(done=1, note="y")
        p.event("z")
    assert err.getvalue() == ""


def test_live_draws_on_a_terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    term = _Tty()
    with Progress(stream=term) as p:
        assert p.mode is Mode.LIVE
        p.stage("prove race 5.1-5.8", total=4)
        p.update(done=2)
        time.sleep(0.3)                    # one refresh of the display
    assert "prove race 5.1-5.8" in term.getvalue()


@pytest.mark.system                      # runs the CLI as a subprocess
@pytest.mark.parametrize("argv, stage", [
    (["run", "corpora/matrix/child-writes.scenario", "--kernel", "5.4"], "... model 5.4"),
    (["fuzz", "--kernel", "6.12", "--budget", "1s"], "... fuzz 6.12"),
])
def test_commands_say_their_stages_in_ci_and_nothing_with_q(argv, stage, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), CI="true")
    if argv[0] == "fuzz":
        argv = argv + ["--out", str(tmp_path / "found")]
    p = subprocess.run([sys.executable, "-m", "ksmdiff", *argv], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert any(x.startswith(stage) for x in p.stderr.splitlines()), p.stderr
    q = subprocess.run([sys.executable, "-m", "ksmdiff", *argv, "-q"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert "..." not in q.stderr, q.stderr


def test_lab_build_says_each_build_step(monkeypatch, capsys):
    from ksmdiff.cli import main
    from ksmdiff.lab import build as B

    def fake_build_known(names, jobs, echo):
        echo("unpacking the source")
        echo("make -j2 bzImage")
        return [("5.4", B.Outcome.BUILT, "5.4.59 (1 s of make)")]
    monkeypatch.setattr(B, "build_known", fake_build_known)
    monkeypatch.delenv("CI", raising=False)
    assert main(["lab", "build", "--all-known", "5.4"]) == 0
    out = capsys.readouterr()
    assert out.err.splitlines() == ["... lab build: unpacking the source",
                                    "... lab build: make -j2 bzImage"]
    assert "5.4: built" in out.out
    assert main(["lab", "build", "--all-known", "5.4", "-q"]) == 0
    assert capsys.readouterr().err == ""
