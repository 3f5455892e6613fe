"""The pytest plugin collects .scenario files: one item per model version (+ host)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HOME = Path(__import__("ksmdiff").__file__).resolve().parents[1]  # the ksmdiff under test

GOOD = '''scenario "only-pte-mapped"
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


def _plugin_args() -> list[str]:
    """Load the plugin by name unless the installed entry point already does."""
    from importlib.metadata import entry_points
    names = {ep.value for ep in entry_points(group="pytest11")}
    return [] if "ksmdiff.pytest_plugin" in names else ["-p", "ksmdiff.pytest_plugin"]


def pytest_run(path, *args):
    return subprocess.run([sys.executable, "-m", "pytest", *_plugin_args(),
                           "-q", "-p", "no:cacheprovider", "--rootdir", str(path), str(path),
                           *args], capture_output=True, text=True, timeout=300,
                          cwd=HOME, env={**os.environ, "PYTHONPATH": str(HOME)})


def test_items_per_version_and_junit(tmp_path):
    (tmp_path / "good.scenario").write_text(GOOD)
    (tmp_path / "wrong.scenario").write_text(GOOD.replace("reused on 5.1..5.8",
                                                          "reused on >=5.9"))
    junit = tmp_path / "out.xml"
    res = pytest_run(tmp_path, "--ksmdiff-no-host", "--ksmdiff-kernel", "5.4",
                     "--ksmdiff-kernel", "6.12", f"--junitxml={junit}")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "3 passed" in res.stdout and "1 failed" in res.stdout, res.stdout
    assert "wrong.scenario on 6.12" in res.stdout
    assert "line 9: expect A buf[0] reused on >=5.9" in res.stdout
    xml = junit.read_text()
    assert xml.count("<testcase") == 4 and "model[5.4]" in xml
