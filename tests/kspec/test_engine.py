"""The prover's engines on small models: BMC when paths end early, the per-instance
1-induction step against the joint one, the explicit search against the Z3 formulas."""

import itertools

import pytest
import z3

from ksmdiff.kspec import load_spec
from ksmdiff.kspec.internal import compile as C
from ksmdiff.kspec.internal import explicit as X
from ksmdiff.kspec.internal.check import build_model
from ksmdiff.kspec.internal.parse import parse_text
from ksmdiff.kspec.internal.prove import (Unroller, _kind_step, bmc, confirm,
                                          induction_step_1, longest_execution,
                                          property_names, smt2_bmc)
from ksmdiff.versions import Era

ERA = Era.V5_1_TO_5_8

COUNTER = """model m
var x: 0..3 = 0
var y: bool = false
action inc() prints "inc" {
  require x < 3
  x := x + 1
}
action flip() prints "flip" {
  y := not y
}
"""

THREAD = """model m
var a: 0..3 = 0
thread t {
  s1: a := 1
  s2: a := 2
}
invariant never2: a != 2
"""


def ts_of(text):
    return C.compile_ts(build_model("m", [parse_text(text, "t.kspec")]), ERA)


def test_bmc_sees_a_violation_on_a_path_that_ends_before_the_bound():
    ts = ts_of(THREAD)                    # two steps, then no step is enabled (no stutter)
    found = bmc(ts, ["never2"], 6)
    assert found["never2"] is not None and len(found["never2"].steps) == 2
    assert found["never2"].steps[-1].instance.name == "t.s2"
    assert bmc(ts, ["never2"], 6, incremental=True)["never2"].steps[-1].instance.name == "t.s2"
    assert longest_execution(ts, 6) == 2
    s = z3.Solver()
    s.from_string(smt2_bmc(ts, "never2", 6))
    assert s.check() == z3.sat            # the emitted query says the same


@pytest.mark.parametrize("inv,inductive", [("x <= 3", True), ("x <= 2", False),
                                           ("x != 3 or y", False)])
def test_per_instance_induction_step_agrees_with_the_joint_query(inv, inductive):
    ts = ts_of(COUNTER + f"invariant p: {inv}\n")
    props = property_names(ts)
    s = z3.SolverFor("QF_BV")
    _kind_step(ts, props, 1, s)
    assert (s.check() == z3.unsat) == inductive
    assert induction_step_1(ts, props) == inductive


def test_bounds_is_not_assumed_away_in_the_induction_step():
    # x + 2 can leave 0..3: the step must show it (types are not assumed after the step)
    ts = ts_of(COUNTER.replace("x := x + 1", "x := x + 2") + "invariant p: x >= 0\n")
    assert not induction_step_1(ts, property_names(ts))
    s = z3.SolverFor("QF_BV")
    _kind_step(ts, property_names(ts), 1, s)
    assert s.check() == z3.sat


def test_word_width_follows_the_declared_ranges():
    assert build_model("m", [parse_text(COUNTER, "t.kspec")]).width == 4     # x + 1 <= 4
    wide = COUNTER.replace("0..3", "0..20")
    m = build_model("m", [parse_text(wide, "t.kspec")])
    assert m.width == 6 and X.Machine(m, ERA).hi == 31


OVERFLOW = """model m
var x: 0..7 = 7
action bump() prints "bump" {
  x := x + 7                  # 14: the word (5 bits, for x + 7 <= 14) holds it
  x := x + 7                  # 21: leaves the word within the step
  x := 0                      # back in range: only the overflow check sees it
}
"""


def test_arithmetic_leaving_the_word_is_a_bounds_violation_in_both_engines():
    m = build_model("m", [parse_text(OVERFLOW, "t.kspec")])
    ts = C.compile_ts(m, ERA)
    assert bmc(ts, ["bounds"], 1)["bounds"] is not None
    ex = X.explore(m, ERA, ["bounds"], max_depth=1)
    assert ex.found["bounds"] is not None
    fixed = build_model("m", [parse_text(OVERFLOW.replace("x := x + 7 ", "x := x - 7 "),
                                          "t.kspec")])
    assert bmc(C.compile_ts(fixed, ERA), ["bounds"], 1)["bounds"] is None
    assert X.explore(fixed, ERA, ["bounds"], max_depth=1).found["bounds"] is None


def _z3_successors(ts, state):
    """Every next state of ``state`` under the compiled step relation (all-SAT)."""
    u = Unroller(ts)
    s = z3.SolverFor("QF_BV")
    s.add(u.step(0))
    for k in ts.keys:
        v = state[k]
        s.add(u.state(0)[k] == (z3.BoolVal(v) if ts.sort[k] == "bool" else C.IV(v, ts.width)))
    out = set()
    while s.check() == z3.sat:
        m = s.model()
        vals = []
        for k in ts.keys:
            e = m.eval(u.state(1)[k], model_completion=True)
            vals.append(z3.is_true(e) if ts.sort[k] == "bool" else e.as_signed_long())
        out.add(tuple(vals))
        s.add(z3.Or([u.state(1)[k] != (z3.BoolVal(v) if ts.sort[k] == "bool" else C.IV(v, ts.width))
                     for k, v in zip(ts.keys, vals)]))
    return out


@pytest.mark.parametrize("model", ["race", "user"])
def test_explicit_successors_match_the_z3_step_relation(model):
    """The two semantics of the spec agree on every successor of every state up to depth 2
    (race: from both initial modes; user: a sample of depth-2 states)."""
    m = load_spec().models[model]
    ts = C.compile_ts(m, ERA)
    mc = X.Machine(m, ERA)
    assert mc.keys == ts.keys
    assert [(i.name, i.args) for i in mc.instances] == [(i.name, i.args) for i in ts.instances]
    level = mc.initial()
    states = list(level)
    for _ in range(2):
        level = list(dict.fromkeys(t for s in level for _, _, t, _ in mc.successors(s)))
        states += level
    sample = states if model == "race" else states[:: max(1, len(states) // 12)]
    for s in sample:
        mine = {t for _, _, t, _ in mc.successors(s)}
        assert mine == _z3_successors(ts, mc.unpack(s)), mc.unpack(s)


def test_confirm_rejects_a_sequence_that_does_not_violate():
    ts = ts_of(THREAD)
    assert confirm(ts, [0, 1], "never2") is not None
    assert confirm(ts, [0], "never2") is None
    assert confirm(ts, [0, None], "never2") is not None


def test_explicit_search_is_exhaustive_on_a_finite_model():
    m = build_model("m", [parse_text(COUNTER + "invariant p: x <= 3\n", "t.kspec")])
    ex = X.explore(m, ERA, ["p"])
    assert ex.complete and ex.states == 8 and ex.found == {"p": None}
    m = build_model("m", [parse_text(COUNTER + "invariant p: x <= 1\n", "t.kspec")])
    ex = X.explore(m, ERA, ["p"], stop_at_first=True)
    depth, steps, _ = ex.found["p"]
    assert depth == 2 and [s.instance.name for s in steps] == ["inc", "inc"]


def test_explicit_reports_an_index_outside_its_domain():
    text = """model m
domain D = 0..1
var a: map[D] of 0..3 = 0
var i: 0..3 = 0
action go() prints "go" {
  i := 2
  a[i] := 1
}
"""
    m = build_model("m", [parse_text(text, "t.kspec")])
    with pytest.raises(X.ExplicitError) as e:
        X.explore(m, ERA, [])
    assert e.value.location.line == 7


def test_a_true_but_not_inductive_invariant_is_proved_by_search_with_its_cti(tmp_path):
    """x never reaches 3, but from the unreachable x = 1 the step would: the prover names
    the step, writes the state to strengthen against, and proves the property by visiting
    every reachable state (not a shallow BMC called a proof)."""
    from ksmdiff.kspec import load_spec, prove
    f = tmp_path / "m.kspec"
    f.write_text("""model user
var x: 0..3 = 0
action jump() prints "jump" {
  require x < 2
  x := x + 2
}
invariant p: x != 3
""")
    rs = prove(load_spec(f), eras=[ERA], out=tmp_path / "out")
    [r] = [r for r in rs if r.prop == "p"]
    assert r.status == "proved" and r.method == "explicit"
    assert "1-induction does not close: jump breaks p" in r.describe()
    assert "every reachable state visited" in r.describe()
    cti = (tmp_path / "out" / "user-5.1-5.8.cti").read_text()
    assert "x = 1  ->  3" in cti


def test_choose_first_takes_the_lowest_value_in_both_engines():
    text = """model m
domain F = 0..2
var used: map[F] of bool = false
var last: F = 0
action take() prints "take" {
  choose first g: F where not used[g]
  used[g] := true
  last := g
}
invariant never2: last != 2
"""
    m = build_model("m", [parse_text(text, "t.kspec")])
    ts = C.compile_ts(m, ERA)
    tr = bmc(ts, ["never2"], 4)["never2"]
    assert tr is not None and len(tr.steps) == 3         # 0, then 1, then 2: no choice
    assert X.explore(m, ERA, ["never2"]).found["never2"][0] == 3
    assert X.explore(m, ERA, []).states == 4             # one state per number taken
