"""The guest agent's adjustments to the runner (no VM needed)."""

from ksmdiff.lab import agent
from ksmdiff.probe import system


def test_ksmd_bounds_and_exact_scan_sleep_are_stretched(monkeypatch):
    calls = []
    monkeypatch.setattr(system, "scan_exact", lambda n, *, sleep_ms=20, timeout=None:
                        calls.append(("scan", n, sleep_ms, timeout)) or n)
    monkeypatch.setattr(system, "settle", lambda *, min_scans=2, timeout=3.0:
                        calls.append(("settle", min_scans, timeout)) or min_scans)
    monkeypatch.setattr(system, "drain_stable_nodes", lambda timeout=2.0:
                        calls.append(("drain", timeout)) or True)
    monkeypatch.setattr(system, "POLL_SECONDS", 0.0002)
    agent.scale_ksmd_waits(10)
    assert system.POLL_SECONDS == 0.002     # the one guest CPU left to ksmd between reads
    assert system.scan_exact(1) == 1
    assert system.scan_exact(3, sleep_ms=5, timeout=1.0) == 3
    assert system.settle(min_scans=2, timeout=3.0) == 2
    assert system.drain_stable_nodes(timeout=2.0) is True
    assert calls == [("scan", 1, 200, (2.0 + 1 * 0.2 * 3) * 10), ("scan", 3, 50, 10.0),
                     ("settle", 2, 30.0), ("drain", 20.0)]


def test_a_race_job_runs_its_program_and_writes_the_output(tmp_path):
    import json
    lines = "round 0 reused=1 windows=1 lookups=1 leak=0 v0=0x10\ndone rounds=1\n"
    job = {"kind": "race", "argv": ["sh", "-c", f"printf '{lines}'; echo oops >&2; exit 0"]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert agent.main([str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["rc"] == 0 and doc["stdout"] == lines and doc["stderr"] == "oops\n"
    # beats are rate-limited (BEAT_SECONDS): the first round's, at least
    assert (tmp_path / "progress").read_text().startswith("race-")


def test_result_is_written_whole_and_atomically(tmp_path):
    """One encoded write, then the rename: a reader sees no result or all of it."""
    import json
    doc = {"runs": [{"records": [{"f": list(range(100))}] * 50}], "x": "\u00e9"}
    path = str(tmp_path / "result.json")
    agent._write(path, doc)
    assert json.loads((tmp_path / "result.json").read_text()) == doc
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_the_guests_imports_do_without_the_parser():
    """The agent's imports (runner, judge, the scenario objects it unpickles) leave the
    scenario parser and lark unimported: seconds of an emulated CPU at every boot."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(agent.__file__).resolve().parents[2]
    code = ("import sys, ksmdiff.lab.agent, ksmdiff.probe, ksmdiff.judge.compare, "
            "ksmdiff.scenario.ast; print(sorted(m for m in ('lark', 'ksmdiff.scenario.parser') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
