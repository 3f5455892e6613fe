"""bench/bench_selftests.py's pure parts: its case table names real ports, a selftest run's
stamped lines become per-case seconds, the upstream execv fix is applied only where needed.
(The benchmark itself needs qemu, a lab kernel and its source: run by hand.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ksmdiff.lab.programs import ProgramRun

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "bench_selftests", ROOT / "bench" / "bench_selftests.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod          # (its dataclasses look their module up there)
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def test_every_case_names_a_port_and_every_port_has_a_case(bench):
    ports = {p.stem for p in (ROOT / "corpora" / "kselftest").glob("*.scenario")}
    named = [p for _c, p in bench.FUNCTIONAL_CASES + bench.KSM_TESTS_CASES]
    assert len(named) == len(set(named))
    assert set(named) == ports


def test_functional_cases_are_timed_from_one_run_line_to_the_next(bench):
    lines = [(1.00, "TAP version 13"), (1.00, "# [RUN] test_unmerge"),
             (3.50, "ok 1 Pages were unmerged"), (3.50, "# [RUN] test_prctl"),
             (3.60, "ok 2 # SKIP PR_SET_MEMORY_MERGE not supported"),
             (3.60, "# [RUN] test_prot_none"), (4.00, "not ok 3 Pages were unmerged")]
    got = bench.functional_cases(ProgramRun("ksm_functional_tests", 0, 1, 0.9, 4.25, lines))
    assert got["test_unmerge"] == (pytest.approx(2.5), "ok")
    assert got["test_prctl"] == (pytest.approx(0.1), "skip: PR_SET_MEMORY_MERGE not supported")
    assert got["test_prot_none"] == (pytest.approx(0.65), "not ok")   # to the program's end


def test_the_execv_fix_is_applied_to_a_copy_only_when_missing(bench, tmp_path):
    src = tmp_path / "src" / "ksm_functional_tests.c"
    src.parent.mkdir()
    src.write_text("char *argv_for_program[] = { prg_name, FORK_EXEC_CHILD_PRG_NAME };\n")
    out = tmp_path / "out"
    out.mkdir()
    copy = bench.patched(src, out)
    assert copy == out / src.name and bench.EXEC_ARGV_FIXED in copy.read_text()
    assert bench.EXEC_ARGV in src.read_text()                       # the tree untouched
    src.write_text(copy.read_text())
    assert bench.patched(src, out) == src                           # fixed upstream
