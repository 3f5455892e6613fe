"""Equivalence claims (prove.equivalence): one fresh BMC query per depth of the product of
two eras, with the invariants each era already proved assumed at every depth.  Neither
shortcut may hide a difference: a difference at depth d is found at d (not later, not
never), and only invariants a run *proved* are assumed."""

from ksmdiff.kspec.internal import compile as C
from ksmdiff.kspec.internal import engine as E
from ksmdiff.kspec.internal.check import build_model
from ksmdiff.kspec.internal.parse import parse_text
from ksmdiff.kspec.internal.prove import Result, Status, equivalence
from ksmdiff.versions import Era

TEXT = """model m
domain I = 0..0
var x: 0..3 = 0
var y: 0..1 = 0
proc bump() when kernel in <=5.0 { y := 0 }
proc bump() when kernel in 5.1..5.8 { if x == AT { y := 1 } }
proc bump() when kernel in >=5.9 { y := 0 }
action step() prints "step" { require x < 3  x := x + 1  bump() }
observe seen(i: I) = y == 1
invariant small: x <= 3
equiv same: 5.1..5.8 ~ <=5.0 on seen
"""


def _pair(at):
    m = build_model("m", [parse_text(TEXT.replace("AT", str(at)), "t.kspec")])
    C.clear_instances()
    return m, C.compile_ts(m, Era.V5_1_TO_5_8), C.compile_ts(m, Era.LE_5_0)


def test_a_difference_is_found_at_its_depth_and_not_before():
    m, tl, tr = _pair(2)
    [eq] = m.equivs
    assert equivalence(tl, tr, eq, 1) is None
    tr2 = equivalence(tl, tr, eq, 3)
    assert tr2 is not None and len(tr2.steps) == 2
    assert tr2.final["differences"] == ["seen(0): True vs False"]


def test_proved_invariants_assumed_hide_no_difference():
    m, tl, tr = _pair(3)
    [eq] = m.equivs
    tr3 = equivalence(tl, tr, eq, 3, known_l=tl.invariants["small"],
                      known_r=tr.invariants["small"])
    assert tr3 is not None and len(tr3.steps) == 3


def test_only_proved_invariants_are_assumed():
    m, tl, _tr = _pair(2)

    def res(status, method="k-induction"):
        return [Result("m", Era.V5_1_TO_5_8, "small", status, method, 1)]
    assert E._proved_invariant(tl, res(Status.PROVED), "m") is not None
    assert E._proved_invariant(tl, res(Status.BOUNDED, "bmc"), "m") is None
    assert E._proved_invariant(tl, res(Status.FAILED, "bmc"), "m") is None
    assert E._proved_invariant(tl, res(Status.PROVED), "other") is None
    other_era = [Result("m", Era.LE_5_0, "small", Status.PROVED, "k-induction", 1)]
    assert E._proved_invariant(tl, other_era, "m") is None
