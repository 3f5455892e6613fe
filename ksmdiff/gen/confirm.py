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

from ksmdiff.kspec.internal.tscache import compiled as _compiled
from ksmdiff.kspec.internal.prove import Unroller

# Z3's resource limit bounds a query deterministically (the same answer for a seed on a
# loaded machine as on an idle one); on this kind of query Z3 spends about 4-70 million
# units per CPU second.  The timeouts only stop a runaway query and are far above it.
CONFIRM_RLIMIT = 1_000_000_000
CONFIRM_TIMEOUT_MS = 600000
DISTINCT_RLIMIT = 300_000_000    # one query for another shape; unknown: no answer
DISTINCT_TIMEOUT_MS = 300000
DISTINCT_EXTRA_DEPTH = 2         # look for other shapes this many steps past the shortest


class Reach(enum.Enum):
    REACHED = "reached"                      # a trace reaches it, confirmed by Z3
    UNREACHABLE = "unreachable"              # no invariant-satisfying state fires it
    NOT_REACHED = "not reached"              # not found within the bound, not excluded


def _check(cons, timeout=CONFIRM_TIMEOUT_MS, rlimit=CONFIRM_RLIMIT):
    s = z3.Solver()
    s.set("rlimit", rlimit)
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


_UNROLLER: dict = {}


def _unroller(ts) -> Unroller:
    """One Unroller per compiled model for the confirmation queries: its state constants
    and its whole-step term (``Unroller.T``, every cell of every instance) are made once,
    not per query; a query only adds terms over them to a solver of its own."""
    hit = _UNROLLER.get(id(ts))
    if hit is None or hit[0] is not ts:
        hit = _UNROLLER[id(ts)] = (ts, Unroller(ts))
    return hit[1]


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
    u = _unroller(ts)
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
    u = _unroller(ts)
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


class DistinctSolver:
    """Z3 over one era's compiled model for traces with other shapes, for every label of a
    ``generate`` run: the initial state and the unrolled steps are made (and translated
    into this object's own context) once, and every query of the run reuses them.  Each
    query is a new solver over those terms plus its own (the label at the last step, one
    blocking clause per shape found, the traces refused): a solver with push/pop or
    assumptions would keep what Z3 learnt, but Z3 then skips its preprocessing, and the
    unrolling of the whole step relation is out of reach without it (minutes per query
    instead of seconds).

    Deterministic for a seed: the context is this object's own, its terms are made in the
    order of the queries, and the queries of a run come in the same order every time (a
    new DistinctSolver per run)."""

    def __init__(self, model, era, *, seed: int = 0, allowed=None,
                 proc_domain: str = "Proc", page_domain: str = "Page",
                 timeout_ms: int = DISTINCT_TIMEOUT_MS, rlimit: int = DISTINCT_RLIMIT):
        self.ts = ts = _compiled(model, era)
        self.era = era
        self.seed = seed
        n_inst = len(ts.instances)
        self.allowed = sorted(set(range(n_inst)) if allowed is None else set(allowed))
        names = sorted({ts.instances[n].name for n in self.allowed})
        self.by_name = {nm: [n for n in self.allowed if ts.instances[n].name == nm]
                        for nm in names}
        self.doms = {}
        for n in self.allowed:
            for _p, dom, code in ts.instances[n].args:
                if dom in (proc_domain, page_domain):
                    self.doms.setdefault((dom, code), []).append(n)
        self.proc_domain, self.page_domain = proc_domain, page_domain
        self.timeout_ms = timeout_ms
        self.rlimit = rlimit
        self.ctx = z3.Context()
        self.u = Unroller(ts)
        self.base = z3.And(self.u.init(), self.u.at(ts.types, 0)).translate(self.ctx)
        self.sels = []          # sel@t in this context
        self.steps = []         # step t (an allowed instance) in this context

    def _depth(self, d: int) -> None:
        while len(self.steps) < d:
            t = len(self.steps)
            sel = self.u.sel(t)
            step = z3.And(self.u.step(t), z3.Or([sel == n for n in self.allowed]))
            self.steps.append(step.translate(self.ctx))
            self.sels.append(sel.translate(self.ctx))

    def _is_one(self, t, ns):
        return (z3.Or([self.sels[t] == n for n in ns]) if ns
                else z3.BoolVal(False, self.ctx))

    def _count(self, dom, d):
        used = [z3.Or([self._is_one(t, ns) for t in range(d)])
                for (dm, _c), ns in sorted(self.doms.items()) if dm == dom]
        return (z3.Sum([z3.If(x, 1, 0) for x in used]) if used
                else z3.IntVal(0, self.ctx))

    def solve(self, label, found: list, *, bound: int, accept=None, max_tries: int = 8,
              extra_depth: int = DISTINCT_EXTRA_DEPTH):
        """As :func:`solve_distinct`."""
        ts = self.ts
        _known_label(ts, label)
        lab = z3.Or([e for (_o, name), e in ts.step_labels.items() if name == label])
        shapes = {}
        for steps in found:
            sh = witness_shape_in(ts, steps, self.proc_domain, self.page_domain)
            shapes.setdefault(len(steps), set()).add(sh)
        start = min((len(st) for st in found), default=1)
        for d in range(start, min(bound, start + extra_depth) + 1):
            self._depth(d)
            cons = [self.base] + self.steps[:d]
            cons.append(self.u.step_expr(lab, d - 1).translate(self.ctx))
            nprocs, npages = self._count(self.proc_domain, d), self._count(self.page_domain, d)
            for order, np_, npg in sorted(shapes.get(d, ())):
                cons.append(z3.Not(z3.And([self._is_one(t, self.by_name.get(order[t], []))
                                           for t in range(d)] + [nprocs == np_, npages == npg])))
            for _ in range(max_tries):
                s = z3.Solver(ctx=self.ctx)
                s.set("rlimit", self.rlimit)
                s.set("timeout", self.timeout_ms)
                s.set("random_seed", self.seed)
                s.add(*cons)
                r = s.check()
                if r == z3.unknown:
                    raise NoAnswer(f"Z3 gave no answer within {self.rlimit:,} resource units "
                                   f"or {self.timeout_ms / 1000:g} s for a trace of {d} "
                                   f"steps ({s.reason_unknown()})")
                if r == z3.unsat:
                    break
                m = s.model()
                steps = [m.eval(self.sels[t], model_completion=True).as_long()
                         for t in range(d)]
                if accept is None or accept(steps):
                    return steps
                cons.append(z3.Not(z3.And([self.sels[t] == n for t, n in enumerate(steps)])))
        return None


def solve_distinct(model, era, label, found: list, *, bound: int, seed: int = 0,
                   allowed=None, proc_domain: str = "Proc", page_domain: str = "Page",
                   accept=None, max_tries: int = 8,
                   timeout_ms: int = DISTINCT_TIMEOUT_MS,
                   extra_depth: int = DISTINCT_EXTRA_DEPTH, solver: "DistinctSolver" = None):
    """A trace of at most ``bound`` steps firing ``label`` at its last step whose shape
    (``witness_shape_in``: the actions' order, the number of processes, of pages) differs
    from that of every trace in ``found`` (lists of instance numbers): Z3 over the
    compiled model's unrolling with one blocking clause per shape found, shortest first.
    ``accept(steps)``: a further check (the explicit replay, whose choices are fixed); a
    refused trace is blocked exactly and the query asked again, at most ``max_tries``
    times per depth.  Depths from the shortest trace found to ``extra_depth`` more (at
    most ``bound``).  Returns the instance numbers, or None when no such trace exists at
    those depths (or every candidate was refused); :class:`NoAnswer` when Z3 ran out of
    ``timeout_ms`` at a depth before any answer.  ``solver``: a :class:`DistinctSolver` of
    the same model, era, seed and ``allowed`` to reuse (a run asks once per label)."""
    if solver is None:
        solver = DistinctSolver(model, era, seed=seed, allowed=allowed,
                                proc_domain=proc_domain, page_domain=page_domain,
                                timeout_ms=timeout_ms)
    return solver.solve(label, found, bound=bound, accept=accept, max_tries=max_tries,
                        extra_depth=extra_depth)


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
