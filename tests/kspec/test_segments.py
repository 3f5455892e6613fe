"""1-induction of an action segment by segment (compile._segments, prove._segments_hold):
a shortcut that proves a long atomic step from small queries, and never turns a step that
breaks an invariant into a proof."""

import z3

from ksmdiff.kspec.internal import compile as C
from ksmdiff.kspec.internal.check import build_model
from ksmdiff.kspec.internal.parse import parse_text
from ksmdiff.kspec.internal.prove import (_joint_invariant, _kind_step, _segments_hold,
                                          counterexample_to_induction, property_names)
from ksmdiff.versions import Era

ERA = Era.V5_1_TO_5_8

BASE = """model m
domain I = 0..1
var a: map[I] of 0..1 = 0
var n: 0..2 = 0
"""


def _ts(text):
    return C.compile_ts(build_model("m", [parse_text(BASE + text, "t.kspec")]), ERA)


def _inst(ts, name):
    [inst] = [i for i in ts.instances if i.name == name]
    return inst


def _joint_step_holds(ts):
    s = z3.SolverFor("QF_BV")
    _kind_step(ts, property_names(ts), 1, s)
    return s.check() == z3.unsat


def test_an_action_is_cut_at_its_top_level_foreach_iterations():
    ts = _ts("""action clear() prints "clear" { require n == 0  foreach i: I { a[i] := 0 }  n := 0 }
action one() prints "one" { a[0] := 1 }
invariant small: forall i: I . a[i] <= 1
""")
    clear = _inst(ts, "clear")
    assert [s.name for s in clear.segments] == ["clear#0", "clear#1", "clear#2", "clear#3"]
    assert _inst(ts, "one").segments == []              # nothing to cut
    props = property_names(ts)
    assert _segments_hold(ts, _joint_invariant(ts, props), clear, props)
    assert counterexample_to_induction(ts, props) is None
    assert _joint_step_holds(ts)


def test_a_let_before_the_foreach_keeps_the_action_whole():
    ts = _ts("""action f() prints "f" { let k = n  foreach i: I { a[i] := 0 } }
invariant small: n <= 2
""")
    assert _inst(ts, "f").segments == []


def test_a_segment_breaking_what_the_action_restores_falls_back_to_the_whole_step():
    # each iteration alone breaks `counted`; the whole action keeps it
    ts = _ts("""action fillall() prints "fill" { require n == 0  foreach i: I { a[i] := 1 }  n := 2 }
invariant counted: n == (count i: I . a[i] == 1)
""")
    props = property_names(ts)
    assert not _segments_hold(ts, _joint_invariant(ts, props), _inst(ts, "fillall"), props)
    assert counterexample_to_induction(ts, props) is None
    assert _joint_step_holds(ts)


def test_a_step_that_breaks_an_invariant_is_never_proved():
    ts = _ts("""action fillall() prints "fill" { require n == 0  foreach i: I { a[i] := 1 }  n := 1 }
invariant counted: n == (count i: I . a[i] == 1)
""")
    props = property_names(ts)
    cti = counterexample_to_induction(ts, props)
    assert cti is not None and cti.instance.name == "fillall" and cti.broken == ["counted"]
    assert not _joint_step_holds(ts)


def test_a_segment_leaving_its_range_is_no_proof_even_when_bounds_is_not_asked():
    # n goes to 2 + 2 = 4 between the iterations and comes back: the next segment may not
    # assume a typed state, so the shortcut fails; the whole step keeps n in range
    ts = _ts("""action wobble() prints "w" {
  foreach i: I { if i == 0 { n := n + 2 } else { n := n - 2 } }
}
invariant small: n <= 2
""")
    inst = _inst(ts, "wobble")
    assert len(inst.segments) == 2
    assert not _segments_hold(ts, _joint_invariant(ts, ["small"]), inst, ["small"])
    assert counterexample_to_induction(ts, property_names(ts)) is None


def test_a_parameterless_proc_and_a_kernel_only_if_are_cut_like_the_body():
    # ``settle`` runs ``full_scan()`` once, and again where the kernel has a fact: each
    # foreach iteration inside is a segment of its own, in the era's order
    ts = _ts("""proc scan() { foreach i: I { a[i] := 0 } }
action twice() prints "twice" {
  scan()
  if kernel in 5.1..5.8 { scan() }
  if kernel in >=6.7 { n := 1 } else { n := 0 }
}
action once() prints "once" { scan()  if kernel in >=6.7 { scan() } }
invariant small: forall i: I . a[i] <= 1
""")
    assert [s.name for s in _inst(ts, "twice").segments] == [
        "twice#0", "twice#1", "twice#2", "twice#3", "twice#4"]
    assert [s.name for s in _inst(ts, "once").segments] == ["once#0", "once#1"]
    props = property_names(ts)
    assert counterexample_to_induction(ts, props) is None


def test_an_if_on_state_is_not_unfolded():
    # a condition on the state is not the era's to decide: the if stays one piece, and
    # the action with one foreach after it is cut before it
    ts = _ts("""proc scan() { foreach i: I { a[i] := 0 } }
action f() prints "f" { if n == 0 { scan() }  foreach i: I { a[i] := 1 } }
invariant small: forall i: I . a[i] <= 1
""")
    assert [s.name for s in _inst(ts, "f").segments] == ["f#0", "f#1", "f#2"]
