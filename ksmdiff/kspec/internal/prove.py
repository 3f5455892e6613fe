"""Bounded model checking, k-induction and equivalence checking of compiled models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import z3

from ksmdiff.kspec.internal.compile import TS, IVar, SVar, key_name
from ksmdiff.status import ProofStatus


KIND_TIMEOUT_MS = 180000     # per query; the user-level settle step takes ~10-20 s


@dataclass
class Step:
    instance: object          # compile.Instance
    choices: dict             # binder name -> code
    state: dict               # key -> python value (after the step)


@dataclass
class Trace:
    initial: dict
    steps: list
    prop: str
    era: object
    mutant: Optional[str]
    final: dict = field(default_factory=dict)   # extra values (observables) at the end


Status = ProofStatus


@dataclass
class Result:
    model: str
    era: object
    prop: str
    status: Status
    method: str               # "bmc" | "k-induction" | "complete" | "explicit" | "vacuity"
    bound: int
    k: Optional[int] = None
    trace: Optional[Trace] = None
    seconds: float = 0.0
    mutant: Optional[str] = None
    file: Optional[str] = None
    note: str = ""
    steps: Optional[list] = None      # the counterexample as data (cex.to_steps)
    initial: Optional[dict] = None    # its initial state

    def describe(self) -> str:
        if self.status == Status.FAILED:
            where = self.file or "(counterexample not written; use --out DIR)"
            return f"FAILED  counterexample at depth {len(self.trace.steps)}: {where}"
        if self.status == Status.VACUOUS:
            return f"VACUOUS {self.note}"
        if self.method == "vacuity":
            return f"ok      {self.note}"
        if self.status == Status.BOUNDED:
            return (f"bounded (no violation to depth {self.bound}; NOT proved)"
                    + (f"; {self.note}" if self.note else ""))
        if self.method == "explicit":
            return (f"proved  (unbounded: every reachable state visited, {self.bound} steps "
                    "deep)" + (f"; {self.note}" if self.note else ""))
        if self.method == "k-induction":
            return f"proved  (unbounded: {self.k}-induction, base checked to depth {self.bound})"
        if self.method == "complete":
            return (f"proved  (unbounded: every execution ends within {self.bound} steps, "
                    "all checked)")
        return f"proved  (bounded: depth {self.bound})" + (f"; {self.note}" if self.note else "")

    def to_json(self) -> dict:
        return {"model": self.model, "era": self.era.value, "property": self.prop,
                "status": self.status.value, "method": self.method, "bound": self.bound,
                "k": self.k, "seconds": round(self.seconds, 3), "mutant": self.mutant,
                "counterexample": self.file, "note": self.note,
                "trace": None if self.steps is None else
                {"depth": len(self.steps), "initial": self.initial, "steps": self.steps}}


class Unroller:
    def __init__(self, ts: TS, prefix: str = "", share_sel: Optional[list] = None):
        self.ts = ts
        self.prefix = prefix
        self.S = []
        self.sels = share_sel if share_sel is not None else []
        self.own_sel = share_sel is None
        self.chs = []
        nxt = {k: z3.Const(key_name(k) + "'", ts.cur[k].sort()) for k in ts.keys}
        self.nxt = nxt
        self.T = z3.And(ts.step_guard, z3.And([nxt[k] == ts.step_next[k] for k in ts.keys]))

    def state(self, t):
        while len(self.S) <= t:
            i = len(self.S)
            self.S.append({k: z3.Const(f"{self.prefix}{key_name(k)}@{i}", self.ts.cur[k].sort())
                           for k in self.ts.keys})
        return self.S[t]

    def sel(self, t):
        while len(self.sels) <= t:
            self.sels.append(SVar(f"{self.prefix}sel@{len(self.sels)}"))
        return self.sels[t]

    def ch(self, t):
        while len(self.chs) <= t:
            i = len(self.chs)
            self.chs.append([IVar(f"{self.prefix}ch{j}@{i}", self.ts.width) for j in range(len(self.ts.slots))])
        return self.chs[t]

    def at(self, e, t):
        S = self.state(t)
        return z3.substitute(e, *[(self.ts.cur[k], S[k]) for k in self.ts.keys])

    def _step_subst(self, e, t):
        S, S1 = self.state(t), self.state(t + 1)
        pairs = [(self.ts.cur[k], S[k]) for k in self.ts.keys]
        pairs += [(self.nxt[k], S1[k]) for k in self.ts.keys]
        pairs.append((self.ts.sel, self.sel(t)))
        pairs += list(zip(self.ts.slots, self.ch(t)))
        return z3.substitute(e, *pairs)

    def step(self, t):
        return self._step_subst(self.T, t)

    def step_assert(self, prop, t):
        e = self.ts.step_asserts.get(prop)
        return None if e is None else self._step_subst(e, t)

    def step_expr(self, e, t):
        return self._step_subst(e, t)

    def init(self):
        return self.at(self.ts.init, 0)

    def violation(self, prop, t):
        """Violation of ``prop`` at state t (invariants) or in step t-1 (asserts)."""
        parts = []
        inv = self.ts.invariants.get(prop)
        if inv is not None:
            parts.append(z3.Not(self.at(inv, t)))
        if t >= 1:
            a = self.step_assert(prop, t - 1)
            if a is not None:
                parts.append(a)
        return z3.Or(parts) if parts else None

    # -- counterexamples
    def trace(self, model, depth, prop, mutant) -> Trace:
        def val(e):
            v = model.eval(e, model_completion=True)
            if z3.is_true(v):
                return True
            if z3.is_false(v):
                return False
            return v.as_signed_long()
        ts = self.ts
        states = [{k: val(self.state(t)[k]) for k in ts.keys} for t in range(depth + 1)]
        steps = []
        for t in range(depth):
            i = val(self.sel(t))
            if i >= len(ts.instances):
                continue                      # a stutter step
            inst = ts.instances[i]
            chs = self.ch(t)
            choices = {name: val(chs[slot]) for slot, name, _d in inst.choices}
            steps.append(Step(inst, choices, states[t + 1]))
        return Trace(states[0], steps, prop, ts.era, mutant)


def property_names(ts: TS) -> list[str]:
    names = list(ts.model.property_names())
    if any("bounds" in i.asserts for i in ts.instances) and "bounds" not in names:
        names.append("bounds")
    return [n for n in names if n in ts.invariants or n in ts.step_asserts]


def bmc(ts: TS, props, bound: int, mutant=None, shortest: bool = True,
        incremental: bool = False):
    """Returns {prop: Trace or None}: a violation of each property within ``bound`` steps
    (with ``shortest``, one of minimal depth).

    Queries are fresh and non-incremental: Z3 solves QF_BV by bit-blasting to its SAT solver
    only when a solver is used once; push/pop or assumptions switch it to the incremental
    SMT core, 5-10x slower on these formulas.  One query over every depth proves all the
    properties at once; only a satisfiable one is taken apart per property and depth.

    ``incremental``: one solver, deepened step by step (the shortest violation by
    construction).  Faster for thread models, whose steps are small: the race model's
    proof takes 1.2 s this way and 8 s as one query."""
    if incremental:
        return _bmc_incremental(ts, props, bound, mutant)
    u = Unroller(ts)
    found = {p: None for p in props}
    base = [u.init(), u.at(ts.types, 0)]
    if _check(base + [_any_violation(u, ts, props, bound)]) is None:
        return found
    for p in props:
        m = _check(base + [_any_violation(u, ts, [p], bound)])
        if m is None:
            continue
        depth = next(t for t in range(bound + 1)
                     if z3.is_true(m.eval(_reach_violation(u, ts, [p], t), model_completion=True)))
        if shortest:
            for d in range(depth):
                v = u.violation(p, d)
                if v is None:
                    continue
                m2 = _check(base + [u.step(i) for i in range(d)] + [v])
                if m2 is not None:
                    m, depth = m2, d
                    break
        found[p] = u.trace(m, depth, p, mutant)
    return found


def _bmc_incremental(ts: TS, props, bound: int, mutant=None):
    u = Unroller(ts)
    s = z3.SolverFor("QF_BV")
    s.add(u.init(), u.at(ts.types, 0))
    found = {p: None for p in props}
    open_ = list(props)
    for t in range(bound + 1):
        viols = {p: u.violation(p, t) for p in open_}
        viols = {p: v for p, v in viols.items() if v is not None}
        if viols and _sat(s, z3.Or(list(viols.values()))):
            for p, v in viols.items():
                s.push()
                s.add(v)
                if s.check() == z3.sat:
                    found[p] = u.trace(s.model(), t, p, mutant)
                    open_.remove(p)
                s.pop()
        if not open_:
            break
        s.add(u.step(t))
    return found


def longest_execution(ts: TS, bound: int):
    """The length of the longest execution if every execution ends within ``bound`` steps
    (then BMC to it is a proof), else None.  Incremental: for thread models."""
    u = Unroller(ts)
    s = z3.SolverFor("QF_BV")
    s.add(u.init(), u.at(ts.types, 0))
    for t in range(bound + 1):
        s.add(u.step(t))
        if s.check() == z3.unsat:
            return t
    return None


def _reach_violation(u, ts, props, t):
    """Steps 0..t-1 happen and some property of ``props`` is violated at t."""
    vs = [v for v in (u.violation(p, t) for p in props) if v is not None]
    if not vs:
        return z3.BoolVal(False)
    return z3.And([u.step(i) for i in range(t)] + [z3.Or(vs)])


def _any_violation(u, ts, props, bound):
    """Some property is violated at some depth <= bound (paths may end early: no stutter)."""
    return z3.Or([_reach_violation(u, ts, props, t) for t in range(bound + 1)])


def _check(assertions, timeout_ms=None):
    """A model when the conjunction is satisfiable, else None (fresh QF_BV solver)."""
    s = z3.SolverFor("QF_BV")
    if timeout_ms:
        s.set("timeout", timeout_ms)
    s.add(*assertions)
    r = s.check()
    if r == z3.unknown:
        raise TimeoutError(s.reason_unknown())
    return s.model() if r == z3.sat else None


def confirm(ts: TS, instances: list, prop: str, mutant=None):
    """The Z3 trace that runs exactly these instance numbers (None: any instance) and
    violates ``prop`` at the end, or None: how a counterexample found by the explicit
    engine is checked against the compiled formulas (and printed from them)."""
    u = Unroller(ts)
    d = len(instances)
    v = u.violation(prop, d)
    if v is None:
        return None
    cons = [u.init(), u.at(ts.types, 0)] + [u.step(t) for t in range(d)]
    cons += [u.sel(t) == n for t, n in enumerate(instances) if n is not None] + [v]
    m = _check(cons)
    return None if m is None else u.trace(m, d, prop, mutant)


def _sat(s, e) -> bool:
    s.push()
    s.add(e)
    r = s.check()
    s.pop()
    return r == z3.sat


def _kind_step(ts: TS, props, k: int, s: z3.Solver) -> z3.Solver:
    """The k-induction step query: k steps from any typed state in which ``props`` held
    (invariants and step assertions) and a violation at step k.  unsat: the step holds."""
    u = Unroller(ts)
    for t in range(k):              # not at k: an out-of-range step is the bounds violation
        s.add(u.at(ts.types, t))
    for t in range(k):
        s.add(u.step(t))
        for p in props:
            inv = ts.invariants.get(p)
            if inv is not None:
                s.add(u.at(inv, t))
            if t >= 1:
                a = u.step_assert(p, t - 1)
                if a is not None:
                    s.add(z3.Not(a))
    s.add(z3.Or([v for v in (u.violation(p, k) for p in props) if v is not None]))
    return s


def kinduction(ts: TS, props, kmax: int):
    """Joint k-induction of all ``props``; returns the k that closes, or None."""
    for k in range(1, kmax + 1):
        if k == 1:
            if induction_step_1(ts, props):
                return 1
            continue
        s = z3.SolverFor("QF_BV")
        s.set("timeout", KIND_TIMEOUT_MS)
        _kind_step(ts, props, k, s)
        if s.check() == z3.unsat:
            return k
    return None


# query ids -> (unsat?, CTI or None, query): 1-induction steps already decided.  Z3
# hash-conses terms, so an instance whose formulas are the same in two eras (settle, fork,
# munmap, ... at user level) is proved once; the ASTs are kept so their ids stay valid.
_STEP_CACHE: dict = {}


def induction_step_1(ts: TS, props) -> bool:
    """The 1-induction step, one action instance at a time: from any typed state where
    every invariant of ``props`` holds, no instance reaches a state violating one or
    violates a step assertion.  Equivalent to ``_kind_step(ts, props, 1)`` (the step
    relation is the disjunction of the instances), but each query is small, fresh (Z3's
    fast non-incremental QF_BV path) and shared between eras."""
    return counterexample_to_induction(ts, props) is None


def _step_query(ts: TS, inv, inst, props, segment: bool = False):
    """(pairs, [assertions]) of the 1-induction step of one instance (or segment): a
    typed state where the invariant ``inv`` holds, its guard, and a broken invariant after
    it or a broken step assertion of ``props`` (unsat: the step holds).  A segment must
    also keep every cell within its range (the next segment assumes a typed state), whether
    or not ``bounds`` is among ``props``."""
    pairs = [(ts.cur[k], v) for k, v in inst.next.items()]
    post = z3.substitute(inv, *pairs) if pairs else inv
    bad = [z3.Not(post)] + [a for p, a in inst.asserts.items()
                            if p in props or (segment and p == "bounds")]
    return pairs, [ts.types, inv, inst.guard, z3.Or(bad)]


def _joint_invariant(ts: TS, props):
    invs = [ts.invariants[p] for p in props if p in ts.invariants]
    return z3.And(invs) if invs else z3.BoolVal(True)


def _step_queries(ts: TS, props):
    """Yield (instance, pairs, [assertions]) for the 1-induction step of each instance
    (see _step_query)."""
    inv = _joint_invariant(ts, props)
    for inst in ts.instances:
        pairs, query = _step_query(ts, inv, inst, props)
        yield inst, pairs, query


def _decide(query):
    """(unsat?, model or None) of a fresh QF_BV query, cached by the terms' ids."""
    key = tuple(e.get_id() for e in query)
    hit = _STEP_CACHE.get(key)
    if hit is None:
        s = z3.SolverFor("QF_BV")
        s.set("timeout", KIND_TIMEOUT_MS)
        s.add(*query)
        r = s.check()
        hit = (r == z3.unsat, s.model() if r == z3.sat else None, query)
        _STEP_CACHE[key] = hit
    return hit


def _segments_hold(ts: TS, inv, inst, props) -> bool:
    """Every segment of ``inst`` (compile._segments) keeps the invariant and its ranges
    from any typed state where it holds, and breaks no step assertion: then so does the
    whole step (its intermediate states are states where the invariant holds).  False says
    only that this shortcut does not apply (a segment may break an invariant the rest of
    the step restores), never that the step fails."""
    if not inst.segments:
        return False
    return all(_decide(_step_query(ts, inv, seg, props, segment=True)[1])[0]
               for seg in inst.segments)


def counterexample_to_induction(ts: TS, props):
    """None when the 1-induction step holds, else a :class:`CTI`: a state satisfying every
    invariant of ``props`` and an instance whose step breaks one (what to strengthen).
    An instance cut into segments is tried segment by segment first (see _segments_hold);
    the whole step is queried only when that does not prove it."""
    inv = _joint_invariant(ts, props)
    for inst in ts.instances:
        if _segments_hold(ts, inv, inst, props):
            continue
        pairs, query = _step_query(ts, inv, inst, props)
        unsat, m, _q = _decide(query)
        if not unsat:
            return _cti(ts, inst, props, pairs, m)
    return None


@dataclass
class CTI:
    instance: object
    broken: list              # property names the step breaks
    before: dict              # key -> value (cells that are not false/0, or that change)
    after: dict

    def describe(self) -> str:
        args = ", ".join(str(c) for _p, _d, c in self.instance.args)
        lines = [f"# counterexample to induction: {self.instance.name}({args}) breaks "
                 f"{', '.join(self.broken) or 'the step (solver gave up)'}",
                 "# from a state where every invariant holds (cells not false/0 shown):"]
        for k, v in self.before.items():
            ch = f"  ->  {self.after[k]}" if self.after.get(k, v) != v else ""
            lines.append(f"{key_name(k)} = {v}{ch}")
        return "\n".join(lines) + "\n"


def _cti(ts, inst, props, pairs, m):
    if m is None:
        return CTI(inst, [], {}, {})

    def val(e):
        v = m.eval(e, model_completion=True)
        return True if z3.is_true(v) else False if z3.is_false(v) else v.as_signed_long()
    before = {k: val(ts.cur[k]) for k in ts.keys}
    after = {k: val(inst.next.get(k, ts.cur[k])) for k in ts.keys}
    broken = []
    for p in props:
        inv = ts.invariants.get(p)
        if inv is not None and not val(z3.substitute(inv, *pairs) if pairs else inv):
            broken.append(p)
        a = inst.asserts.get(p)
        if a is not None and val(a):
            broken.append(p)
    shown = {k: v for k, v in before.items() if v not in (False, 0) or after[k] != v}
    return CTI(inst, broken, shown, {k: after[k] for k in shown})


# ----------------------------------------------------------------------------- equivalence

def equivalence(ts_l: TS, ts_r: TS, eq, bound: int, mutant=None, known_l=None,
                known_r=None):
    """BMC of an observational-equivalence claim: both eras run the same action instances;
    the observables must agree after every step (or only after ``eq.after``).

    ``known_l``/``known_r``: invariants already *proved* of each era (every reachable
    state satisfies them), assumed at every depth of the product: they prune nothing
    reachable and help the solver.  One fresh query per depth, shallowest first (the
    first difference is then a shortest one): at depth 3 of the user model these take a
    third of the CPU of one query over every depth."""
    names_l = [(i.name, i.args) for i in ts_l.instances]
    names_r = [(i.name, i.args) for i in ts_r.instances]
    if names_l != names_r:
        raise ValueError(f"{eq.name}: the two eras do not offer the same actions")
    ul = Unroller(ts_l, "L.")
    ur = Unroller(ts_r, "R.", share_sel=ul.sels)
    base = [ul.init(), ur.init(), ul.at(ts_l.types, 0), ur.at(ts_r.types, 0)]
    obs_l = [e for name in eq.observables for e in ts_l.observable(name)]
    obs_r = [e for name in eq.observables for e in ts_r.observable(name)]
    after = None
    if eq.after is not None:
        after = [i for i, inst in enumerate(ts_l.instances) if inst.name == eq.after]

    def known(t):
        out = []
        for i in range(t + 1):
            if known_l is not None:
                out.append(ul.at(known_l, i))
            if known_r is not None:
                out.append(ur.at(known_r, i))
        return out

    def differs(t):
        diff = z3.Or([ul.at(a, t) != ur.at(b, t) for (_, a), (_, b) in zip(obs_l, obs_r)])
        if after is not None:
            diff = z3.And(diff, z3.BoolVal(False) if t == 0 else
                          z3.Or([ul.sel(t - 1) == i for i in after]))
        steps = [x for i in range(t) for x in (ul.step(i), ur.step(i))]
        return z3.And(steps + [diff])

    for t in range(bound + 1):
        m = _check(base + known(t) + [differs(t)])
        if m is None:
            continue
        tr = ul.trace(m, t, eq.name, mutant)
        tr_r = ur.trace(m, t, eq.name, mutant)
        diffs = []
        for (na, a), (_, b) in zip(obs_l, obs_r):
            va = m.eval(ul.at(a, t), model_completion=True)
            vb = m.eval(ur.at(b, t), model_completion=True)
            if not z3.is_true(z3.simplify(va == vb)):
                diffs.append(f"{na}: {va} vs {vb}")
        tr.final = {"differences": diffs, "other_era": ts_r.era.value, "right": tr_r}
        return tr
    return None


# ----------------------------------------------------------------------------- SMT-LIB2

def smt2_bmc(ts: TS, prop: str, bound: int) -> str:
    """One self-contained query: is ``prop`` violated within ``bound`` steps?"""
    u = Unroller(ts)
    s = z3.Solver()
    s.add(u.init(), u.at(ts.types, 0), _any_violation(u, ts, [prop], bound))
    return _smt2(s, f"BMC of {prop} to depth {bound}")


def smt2_kind(ts: TS, props, k: int) -> str:
    s = _kind_step(ts, props, k, z3.Solver())
    return _smt2(s, f"{k}-induction step of {', '.join(props)}")


def smt2_step1(ts: TS, props) -> list:
    """[(instance, text)]: the 1-induction step as the per-instance queries
    :func:`counterexample_to_induction` discharges (all unsat = the step holds)."""
    out = []
    inv = _joint_invariant(ts, props)
    for inst in ts.instances:
        args = ",".join(str(c) for _p, _d, c in inst.args)
        parts = [(inst, "")]
        if _segments_hold(ts, inv, inst, props):
            parts = [(seg, f"#{i}") for i, seg in enumerate(inst.segments)]
        for x, cut in parts:
            s = z3.Solver()
            s.add(*_step_query(ts, inv, x, props, segment=bool(cut))[1])
            what = f"{inst.name}({args}){cut}"
            out.append((what, _smt2(s, f"1-induction step of {what}"
                                    + (" (one segment of the step)" if cut else ""))))
    return out


def _smt2(s: z3.Solver, title: str) -> str:
    body = s.to_smt2()
    return f"; ksmdiff kspec: {title}\n(set-logic ALL)\n" + body


def write_smt2(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
