"""The race experiment's guest agent (no VM needed)."""

from ksmdiff.lab import agent


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


def test_a_job_that_is_no_race_is_an_error_result(tmp_path):
    """Scenarios run without Python in the guest (driver.c): the agent refuses them."""
    import json
    (tmp_path / "job.json").write_text(json.dumps({"payload": "x"}))
    assert agent.main([str(tmp_path)]) == 1
    doc = json.loads((tmp_path / "result.json").read_text())
    assert "not a race job" in doc["error"]
