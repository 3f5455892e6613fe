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
DISTINCT_TIMEOUT_MS = 20000      # one query for another shape; unknown: no answer
DISTINCT_EXTRA_DEPTH = 2         # look for other shapes this many steps past the shortest


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


# ---------------------------------------------------------------------- distinct witnesses

class NoAnswer(Exception):
    """Z3 gave no answer for another shape within DISTINCT_TIMEOUT_MS."""


def solve_distinct(model, era, label, found: list, *, bound: int, seed: int = 0,
                   allowed=None, proc_domain: str = "Proc", page_domain: str = "Page",
                   accept=None, max_tries: int = 8,
                   timeout_ms: int = DISTINCT_TIMEOUT_MS,
                   extra_depth: int = DISTINCT_EXTRA_DEPTH):
    """A trace of at most ``bound`` steps firing ``label`` at its last step whose shape
    (``witness_shape_in``: the actions' order, the number of processes, of pages) differs
    from that of every trace in ``found`` (lists of instance numbers): Z3 over the
    compiled model's unrolling with one blocking clause per shape found, shortest first.
    ``accept(steps)``: a further check (the explicit replay, whose choices are fixed); a
    refused trace is blocked exactly and the query asked again, at most ``max_tries``
    times per depth.  Depths from the shortest trace found to ``extra_depth`` more (at
    most ``bound``).  Returns the instance numbers, or None when no such trace exists at
    those depths (or every candidate was refused); :class:`NoAnswer` when Z3 ran out of
    ``timeout_ms`` at a depth before any answer."""
    ts = _compiled(model, era)
    _known_label(ts, label)
    lab = z3.Or([e for (_o, name), e in ts.step_labels.items() if name == label])
    n_inst = len(ts.instances)
    allowed = sorted(set(range(n_inst)) if allowed is None else set(allowed))
    names = sorted({ts.instances[n].name for n in allowed})
    by_name = {nm: [n for n in allowed if ts.instances[n].name == nm] for nm in names}
    doms = {}
    for n in allowed:
        for _p, dom, code in ts.instances[n].args:
            if dom in (proc_domain, page_domain):
                doms.setdefault((dom, code), []).append(n)
    shapes = {}
    for steps in found:
        sh = witness_shape_in(ts, steps, proc_domain, page_domain)
        shapes.setdefault(len(steps), set()).add(sh)
    start = min((len(s) for s in found), default=1)
    for d in range(start, min(bound, start + extra_depth) + 1):
        u = Unroller(ts)
        sels = [u.sel(t) for t in range(d)]

        def is_one(t, ns):
            return z3.Or([sels[t] == n for n in ns]) if ns else z3.BoolVal(False)

        def count(dom):
            used = [z3.Or([is_one(t, ns) for t in range(d)])
                    for (dm, _c), ns in sorted(doms.items()) if dm == dom]
            return z3.Sum([z3.If(x, 1, 0) for x in used]) if used else z3.IntVal(0)
        nprocs, npages = count(proc_domain), count(page_domain)
        cons = [u.init(), u.at(ts.types, 0)] + [u.step(t) for t in range(d)]
        cons += [is_one(t, allowed) for t in range(d)]
        cons.append(u.step_expr(lab, d - 1))
        for order, np_, npg in sorted(shapes.get(d, ())):
            cons.append(z3.Not(z3.And([is_one(t, by_name.get(order[t], []))
                                       for t in range(d)] + [nprocs == np_, npages == npg])))
        for _ in range(max_tries):
            # A fresh context per query: Z3's answer among several traces depends on the
            # order its terms were made in, and in the shared context that order depends
            # on what was made and freed before; a translated copy is made in the same
            # order each time, so the answer depends on the query and the seed alone.
            ctx = z3.Context()
            s = z3.Solver(ctx=ctx)
            s.set("timeout", timeout_ms)
            s.set("random_seed", seed)
            s.add(z3.And(cons).translate(ctx))
            r = s.check()
            if r == z3.unknown:
                raise NoAnswer(f"Z3 gave no answer within {timeout_ms / 1000:g} s for a "
                               f"trace of {d} steps ({s.reason_unknown()})")
            if r == z3.unsat:
                break
            m = s.model()
            steps = [m.eval(sels[t].translate(ctx), model_completion=True).as_long()
                     for t in range(d)]
            if accept is None or accept(steps):
                return steps
            cons.append(z3.Not(z3.And([sels[t] == n for t, n in enumerate(steps)])))
    return None


def witness_shape_in(ts, steps, proc_domain: str = "Proc", page_domain: str = "Page") -> tuple:
    """What makes two witnesses of a label different scenarios: the order of the actions
    (their names, step by step), how many processes and how many pages they name."""
    procs, pages = set(), set()
    for n in steps:
        for _name, dom, code in ts.instances[n].args:
            if dom == proc_domain:
                procs.add(code)
            elif dom == page_domain:
                pages.add(code)
    return (tuple(ts.instances[n].name for n in steps), len(procs), len(pages))
