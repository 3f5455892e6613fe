"""ksmdiff lab race: the output parser, the refusals, the compiled experiment."""

from __future__ import annotations

import pytest

from ksmdiff.errors import EnvironmentProblem, UsageError
from ksmdiff.lab import race

OUT = ("round 0 reused=1 windows=1 lookups=2 leak=0 v0=0x10\n"
       "round 1 reused=0 windows=0 lookups=0 leak=1 v0=0xee\n"
       "done rounds=2\n")


def test_parse_reads_every_round():
    r = race.parse_output(OUT)
    assert [x.index for x in r] == [0, 1]
    assert r[0] == race.Round(0, True, 1, 2, False, 0x10)
    assert r[1].leak and r[1].v0 == 0xEE
    o = race.Outcome("5.4-race", "5.4.59", r, 20000)
    assert (o.leaks, o.met, o.reused) == (1, 1, 1)
    assert "CAUGHT: 1 of 2 rounds" in o.summary()


@pytest.mark.parametrize("text, what", [
    (OUT.replace("done rounds=2\n", ""), "no done line"),
    (OUT.replace("done rounds=2", "done rounds=3"), "done=3"),
    (OUT.replace("round 1", "round 2"), "out of order"),
    (OUT + "Segmentation fault\n", "unexpected"),
])
def test_parse_refuses_an_incomplete_or_strange_run(text, what):
    with pytest.raises(EnvironmentProblem, match=what):
        race.parse_output(text)


def test_no_leak_summary_says_how_often_the_race_ran():
    r = race.parse_output(OUT.replace("leak=1", "leak=0"))
    s = race.Outcome("5.4-race", "5.4.59", r, 20000).summary()
    assert "no leak in 2 rounds" in s and "inside the window in 1 rounds" in s


def test_run_refuses_bad_arguments_and_unknown_kernels(monkeypatch, tmp_path):
    with pytest.raises(UsageError):
        race.run("5.4-race", rounds=0)
    with pytest.raises(UsageError):
        race.run("5.4-race", window_us=200_000)
    monkeypatch.setenv("KSMDIFF_LAB_DIR", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="no lab kernel"):
        race.run("5.4-race")


def test_race_program_compiles_and_refuses_a_kernel_without_the_window():
    """Run on the host only to see it refuse (the host has no reuse_window_us): it must
    exit 2 before touching a knob."""
    import os
    import subprocess
    try:
        exe = race.race_binary()
    except EnvironmentProblem as e:
        pytest.skip(str(e))
    if os.path.exists("/sys/module/ksm/parameters/reuse_window_us"):
        pytest.skip("this kernel has the race window instrumentation: not run on a host")
    p = subprocess.run([str(exe), "1", "1000", "1"], capture_output=True, text=True)
    assert p.returncode == 2 and "not a kernel with" in p.stderr, p.stderr
