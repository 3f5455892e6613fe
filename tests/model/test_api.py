"""The public API, and the walls: the model never touches the system nor imports kspec/probe."""

import ast
import dataclasses
from pathlib import Path

import pytest

from ksmdiff.model import MUTANTS, ModelRun, Violation, run_model
from ksmdiff.versions import Era

from .conftest import V, run, scenario

MODEL_DIR = Path(__import__("ksmdiff.model").model.__file__).resolve().parent

BODY = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
expect A buf[0] ksm
A: write buf[0] 0x01
"""


def test_api_shape():
    r = run(BODY, "5.4")
    assert isinstance(r, ModelRun) and dataclasses.is_dataclass(r)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.status = "x"
    assert r.version == V("5.4") and r.era is Era.V5_1_TO_5_8
    assert r.status == "ok" and r.reason == ""
    assert MUTANTS == ("no-freeze", "freeze-at-2", "no-swapcache-check",
                       "no-stable-node-check", "reuse-mapcount-2")
    assert Violation(1, 2, "isolation", "x").prop == "isolation"


def test_one_record_per_action_with_stmt_and_line():
    scn = scenario(BODY)
    r = run_model(scn, V("6.18"))
    actions = [i for i, s in enumerate(scn.statements)
               if type(s).__name__ not in ("ExpectPage", "ExpectCounter")]
    assert [rec.stmt for rec in r.records] == actions
    assert [rec.line for rec in r.records] == [scn.statements[i].pos.line for i in actions]


def test_unsupported_feature_gives_no_records():
    r = run("A: mmap buf 1\nA: prctl merge on\n", "6.1")
    assert r.status == "unsupported" and "prctl-merge" in r.reason and r.records == ()
    assert run("A: mmap buf 1\nA: prctl merge on\n", "6.4").status == "ok"


def test_counters_only_where_the_kernel_has_them():
    keys = lambda v: {k for k in run(BODY, v).records[-1].fields if k.startswith("counter.")}
    assert keys("5.4") == {"counter.pages_shared", "counter.pages_sharing",
                           "counter.pages_unshared", "counter.pages_volatile",
                           "counter.full_scans"}
    assert "counter.pgreuse" in keys("5.9") and "counter.cow_ksm" not in keys("5.18")
    assert "counter.ksm_swpin_copy" in keys("5.18")
    assert "counter.cow_ksm" in keys("5.19")
    assert "counter.stable_nodes_removed" in keys("6.18")


def test_bad_arguments():
    with pytest.raises(ValueError):
        run(BODY, "5.4", mutant="nope")
    with pytest.raises(TypeError):
        run_model(scenario(BODY), "5.4")


def test_not_present_pages_have_no_content_fields():
    r = run("A: mmap buf 1\n", "6.18")
    f = r.records[-1].fields
    assert f["A/buf[0].present"] == {False} and f["A/buf[0].frame"] == {None}
    assert "A/buf[0].content" not in f and "A/buf[0].ksm" not in f
    assert "A/buf[0].fault" not in f


def test_model_never_imports_the_prover_or_the_probe():
    for path in MODEL_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for n in names:
                assert not n.startswith(("ksmdiff.kspec", "ksmdiff.probe", "ksmdiff.lab")), \
                    f"{path.name} imports {n}"


def test_model_source_names_no_sys_or_proc_paths():
    for path in MODEL_DIR.glob("*.py"):
        text = path.read_text()
        assert '"/sys' not in text and '"/proc' not in text, path.name


def test_audit_hook_is_armed():
    # the pure() guard of tests/conftest.py is active for this folder
    with pytest.raises(PermissionError):
        open("/proc/self/status").close()


def test_the_collector_is_paused_during_a_run_and_restored_after():
    import gc

    from ksmdiff.model import run as R
    seen = []
    real = R.Interpreter.run

    def spy(self):
        seen.append(gc.isenabled())
        return real(self)

    R.Interpreter.run = spy
    try:
        assert gc.isenabled()
        run_model(scenario("A: mmap buf 2\nA: fill buf 0x11\n"), V("6.8"))
        assert seen == [False] and gc.isenabled()
        gc.disable()
        try:
            run_model(scenario("A: mmap buf 2\n"), V("6.8"))
            assert not gc.isenabled()               # left as it was
        finally:
            gc.enable()
    finally:
        R.Interpreter.run = real
