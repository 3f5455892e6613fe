"""Z3's word on what the explicit search found.

* a witness trace is replayed through the compiled transition system (ksmdiff/kspec's
  formulas, not the explicit engine's interpreter): it must be enabled step for step and
  fire its label at the last step;
* a label the search did not reach is checked against the model's invariants: when no
  state satisfying every invariant (``ksmdiff prove`` proves them inductive) can take a
  step that fires the label, the label is unreachable at any depth.
"""

from __future__ import annotations

import enum

import z3

from ksmdiff.kspec.internal.engine import _compiled
from ksmdiff.kspec.internal.prove import Unroller

CONFIRM_TIMEOUT_MS = 60000


class Reach(enum.Enum):
    REACHED = "reached"                      # a trace reaches it, confirmed by Z3
    UNREACHABLE = "unreachable"              # no invariant-satisfying state fires it
    NOT_REACHED = "not reached"              # not found within the bound, not excluded


def _check(cons, timeout=CONFIRM_TIMEOUT_MS):
    s = z3.Solver()
    s.set("timeout", timeout)
    s.add(*cons)
    r = s.check()
    if r == z3.unknown:
        raise TimeoutError(f"Z3: {s.reason_unknown()}")
    return r == z3.sat


def _label(ts, label):
    """The step formula of a branch label (keyed by (owner, label) in the compiled model)."""
    parts = [e for (_owner, name), e in ts.step_labels.items() if name == label]
    if not parts:
        raise KeyError(f"no branch label {label} in the compiled model of {ts.era.value}")
    return z3.Or(parts)


def confirm_witness(model, era, steps, label) -> bool:
    """Does the compiled model run exactly the instances ``steps`` from its initial state
    and fire ``label`` in the last one?"""
    ts = _compiled(model, era)
    lab = _label(ts, label)
    if not steps:
        return False
    u = Unroller(ts)
    d = len(steps)
    cons = [u.init(), u.at(ts.types, 0)] + [u.step(t) for t in range(d)]
    cons += [u.sel(t) == n for t, n in enumerate(steps)]
    cons.append(u.step_expr(lab, d - 1))
    return _check(cons)


def excluded_by_invariants(model, era, label) -> bool:
    """True when no state satisfying every invariant can fire ``label`` in one step."""
    ts = _compiled(model, era)
    lab = _label(ts, label)
    u = Unroller(ts)
    cons = [u.at(ts.types, 0), u.step(0), u.step_expr(lab, 0)]
    cons += [u.at(inv, 0) for inv in ts.invariants.values()]
    return not _check(cons)
