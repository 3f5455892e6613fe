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


# Per compiled model: instance number -> its transition formula alone (guard, and every
# cell's next value: the instance's own, or unchanged).  The compiled model's step
# formula is the disjunction of these over ``sel``; a query whose steps are known needs
# only theirs, which Z3 solves in milliseconds where the whole step takes a second.
_INSTANCE_T: dict = {}


def _instance_step(ts, u: Unroller, n: int, t: int):
    """Step ``t`` of the unrolling ``u`` runs instance ``n``: exactly ``u.step(t)`` with
    ``sel(t) == n``, without the other instances' terms."""
    cache = _INSTANCE_T.setdefault(id(ts), (ts, {}))
    if cache[0] is not ts:
        cache = _INSTANCE_T[id(ts)] = (ts, {})
    e = cache[1].get(n)
    if e is None:
        inst = ts.instances[n]
        e = cache[1][n] = z3.And([inst.guard] + [
            u.nxt[k] == inst.next.get(k, ts.cur[k]) for k in ts.keys])
    return z3.And(u.sel(t) == n, u.step_expr(e, t))


def _instance_label(ts, n: int, label: str):
    """The formula under which instance ``n`` fires ``label`` (False: never)."""
    parts = [e for (_owner, name), e in ts.instances[n].labels.items() if name == label]
    return z3.Or(parts) if parts else None


def _known_label(ts, label) -> None:
    if not any(name == label for (_owner, name) in ts.step_labels):
        raise KeyError(f"no branch label {label} in the compiled model of {ts.era.value}")


def confirm_witness(model, era, steps, label) -> bool:
    """Does the compiled model run exactly the instances ``steps`` from its initial state
    and fire ``label`` in the last one?"""
    ts = _compiled(model, era)
    _known_label(ts, label)
    if not steps:
        return False
    lab = _instance_label(ts, steps[-1], label)
    if lab is None:
        return False
    u = Unroller(ts)
    d = len(steps)
    cons = [u.init(), u.at(ts.types, 0)]
    cons += [_instance_step(ts, u, n, t) for t, n in enumerate(steps)]
    cons.append(u.step_expr(lab, d - 1))
    return _check(cons)


def excluded_by_invariants(model, era, label) -> bool:
    """True when no state satisfying every invariant can fire ``label`` in one step: for
    no instance that carries the label (one query each; their disjunction is the step)."""
    ts = _compiled(model, era)
    _known_label(ts, label)
    u = Unroller(ts)
    base = [u.at(ts.types, 0)] + [u.at(inv, 0) for inv in ts.invariants.values()]
    for n in range(len(ts.instances)):
        lab = _instance_label(ts, n, label)
        if lab is None:
            continue
        if _check(base + [_instance_step(ts, u, n, 0), u.step_expr(lab, 0)]):
            return False
    return True
