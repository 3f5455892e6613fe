"""kspec parser and type checker: errors carry FILE:LINE:COL."""

import pytest

from ksmdiff.errors import InputError
from ksmdiff.kspec import branch_labels, load_spec
from ksmdiff.kspec.internal.check import build_model
from ksmdiff.kspec.internal.parse import parse_text

BASE = """model m
domain Proc = {A, B}
domain Frame = 0..2
var rc: map[Frame] of 0..3 = 0
var ok: bool = true
"""


def build(text, name="t.kspec"):
    return build_model("m", [parse_text(BASE + text, name)])


def err(text):
    with pytest.raises(InputError) as e:
        build(text)
    return e.value


def test_syntax_error_has_position_and_expected():
    e = err("action a() { rc[0] := }\n")
    assert e.location.file == "t.kspec" and e.location.line == 6
    assert e.location.column > 1 and e.expected


def test_unknown_name():
    e = err("action a() { require nope }\n")
    assert "unknown name 'nope'" in e.message and e.location.line == 6


def test_type_mismatch_bool_int():
    e = err("action a() { ok := 3 }\n")
    assert "cannot assign" in e.message and e.location.line == 6


def test_enum_vs_int_comparison():
    e = err("action a(p: Proc) { require p == 1 }\n")
    assert "cannot compare" in e.message


def test_wrong_index_arity():
    e = err("action a() { rc[0, 1] := 1 }\n")
    assert "takes 1 argument" in e.message


def test_goto_outside_thread():
    e = err("action a() { goto x }\n")
    assert "goto outside a thread" in e.message


def test_era_variants_overlap():
    e = err("proc f() when kernel in 5.1..5.8 { skip }\nproc f() when kernel in >=5.4 { skip }\n")
    assert "splits the era" in e.message or "two variants" in e.message


def test_version_splitting_an_era_is_rejected():
    e = err("proc f() when kernel in <5.4 { skip }\n")
    assert "splits the era" in e.message


def test_shipped_spec_loads_with_models_and_mutants():
    spec = load_spec()
    assert set(spec.models) == {"user", "race"}
    assert set(spec.mutants) == {"no-freeze", "freeze-at-2", "no-swapcache-check",
                                 "no-stable-node-check", "reuse-mapcount-2"}


def test_branch_labels_cover_every_era_decision():
    labels = branch_labels(load_spec())
    by_era = {}
    for model, era, owner, label in labels:
        by_era.setdefault(era, set()).add(label)
    assert {"early_copy", "reuse", "freeze_failed_copy", "no_stable_node_copy"} <= by_era["5.1-5.8"]
    for era in ("le-5.0", "5.9-5.17", "5.18", "5.19-6.6", "ge-6.7"):
        assert "ksm_copy" in by_era[era] and "reuse" not in by_era[era]
    assert {"race_reuse", "race_freeze_failed", "gkp_frozen_stale"} <= by_era["5.1-5.8"]


def test_mutant_must_redefine_something_that_exists(tmp_path):
    (tmp_path / "a.kspec").write_text(BASE + "proc f() { skip }\naction a() { f() }\n")
    (tmp_path / "mutants").mkdir()
    (tmp_path / "mutants" / "x.kspec").write_text(
        'mutant "x" of m "nothing"\nproc g() when kernel in 5.1..5.8 { skip }\n')
    with pytest.raises(InputError) as e:
        load_spec(tmp_path)
    assert "does not define" in e.value.message
