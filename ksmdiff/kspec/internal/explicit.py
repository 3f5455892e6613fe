"""Explicit-state exploration of a kspec model (TLC-style): breadth-first over every
reachable state of one era.

The Z3 path (``compile`` + ``prove``) is symbolic; BMC of the user-level model grows by a
factor 5-7 per step and cannot reach the depth-8 counterexamples some mutants need.  The
user-level model is small and finite, so this engine enumerates its reachable states: when
the search exhausts them, every invariant and step assertion is proved for *all* depths
(an unbounded proof, like TLC's), and a violation comes with a shortest trace.

The semantics are the compiler's, statement for statement (``compile._Exec``): ``require``
prunes, ``assert`` records a violation, ``choose``/``either`` branch into several worlds,
``if``/``foreach``/calls restore the caller's ``let`` scope, a ``goto`` ends the atomic step,
integers are words of the model's width (``model.width``) and arithmetic leaving the word
within a step is a ``bounds`` violation, as is a changed cell outside its range after the
step.  A test checks the two engines agree on every state up to
a small depth.

Where the compiler quietly ignores an index outside a domain (it can only happen under a
false path condition there), this engine raises :class:`ExplicitError`: on a concrete path
it is a spec bug.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Optional

from ksmdiff.errors import InputError
from ksmdiff.kspec.internal import ast as A
from ksmdiff.kspec.internal.check import Bool, Dom, Int, Model, era_contains, era_has
from ksmdiff.versions import Era

MAX_CALL_DEPTH = 32
MAX_INIT_STATES = 4096


class ExplicitError(InputError):
    """A spec error only a concrete execution shows (an index outside its domain)."""


@dataclass
class XInstance:
    """One grounded action or thread step (the compiler's ``Instance``, without formulas)."""
    kind: str                 # "action" | "step"
    name: str
    args: tuple               # ((param, domain, code), ...)
    prints: Optional[str]
    decl: object = None       # ActionDecl | ThreadStep
    pc: Optional[tuple] = None          # (pc key, index, {label: index}) for thread steps


class _World:
    __slots__ = ("st", "scope", "done", "viol", "dirty", "picks")

    def __init__(self, st, scope):
        self.st = st
        self.scope = scope
        self.done = False
        self.viol = set()
        self.dirty = set()
        self.picks = []

    def copy(self) -> "_World":
        w = _World(dict(self.st), dict(self.scope))
        w.done = self.done
        w.viol = set(self.viol)
        w.dirty = set(self.dirty)
        w.picks = list(self.picks)
        return w


class Machine:
    """The model of one era as an explicit transition system over tuples of cell values."""

    def __init__(self, model: Model, era: Era, facts: Optional[dict] = None):
        self.m = model
        self.era = era
        # `kernel has FACT`: the era's representative version, or these answers (a version
        # of the era on the other side of a fact's first version: fact_gaps)
        self.facts = dict(facts or {})
        self.lo, self.hi = -(1 << (model.width - 1)), (1 << (model.width - 1)) - 1
        self.keys: list = []
        self.rng: dict = {}
        for v in model.vars.values():
            doms = [model.domains[k] for k in v.keys]
            for t in itertools.product(*[d.encodings() for d in doms]):
                key = (v.name, tuple(t))
                self.keys.append(key)
                if isinstance(v.type, Bool):
                    self.rng[key] = None
                elif isinstance(v.type, Int):
                    self.rng[key] = (v.type.lo, v.type.hi)
                else:
                    enc = model.domains[v.type.name].encodings()
                    self.rng[key] = (min(enc), max(enc))
        self.threads = {}
        for t in model.threads_at(era):
            pk = (f"pc.{t.name}", ())
            self.keys.append(pk)
            self.rng[pk] = (0, len(t.steps))
            self.threads[t.name] = (pk, [st.label for st in t.steps])
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.instances: list[XInstance] = []
        for a in model.actions_at(era):
            doms = [model.domains[p.domain] for p in a.params]
            for codes in itertools.product(*[d.encodings() for d in doms]):
                self.instances.append(XInstance(
                    "action", a.name,
                    tuple((p.name, p.domain, c) for p, c in zip(a.params, codes)),
                    a.prints, a))
        for t in model.threads_at(era):
            pk, labels = self.threads[t.name]
            idx = {lab: i for i, lab in enumerate(labels)}
            idx["done"] = len(labels)
            for i, st in enumerate(t.steps):
                self.instances.append(XInstance("step", f"{t.name}.{st.label}", (), None, st,
                                                (pk, i, idx)))
        self.invariants: dict = {}
        for inv in model.invariants:
            self.invariants.setdefault(inv.name, []).append(inv.cond)
        self._thread = None
        self._depth = 0
        self._owner = ""
        self.hits: set = set()          # (owner, label) of every branch taken so far

    # ------------------------------------------------------------------ states
    def pack(self, st: dict) -> tuple:
        return tuple(st[k] for k in self.keys)

    def unpack(self, t: tuple) -> dict:
        return dict(zip(self.keys, t))

    def initial(self) -> list[tuple]:
        m = self.m
        st = {}
        free = []
        w0 = _World(st, {})
        for v in m.vars.values():
            for key in self.keys:
                if key[0] != v.name:
                    continue
                if v.init is not None:
                    st[key] = self.ev(v.init, w0)
                else:
                    free.append(key)
        for pk, _ in self.threads.values():
            st[pk] = 0
        combos = 1
        for key in free:
            lo, hi = self.rng[key] or (0, 1)
            combos *= hi - lo + 1
        if combos > MAX_INIT_STATES:
            raise InputError(f"{len(free)} variables have no initial value "
                             f"({combos} initial states)", None,
                             "an initial value ('= ...') on every variable")
        out = []
        for vals in itertools.product(*[
                ([False, True] if self.rng[k] is None else range(self.rng[k][0],
                                                                 self.rng[k][1] + 1))
                for k in free]):
            s = dict(st)
            s.update(zip(free, vals))
            ws = [_World(s, {})]
            for init in m.inits:
                ws = [r for w in ws for r in self.run(init.body, w)]
            for w in ws:
                if self._in_range(w.st):
                    out.append(self.pack(w.st))
        return list(dict.fromkeys(out))

    def _in_range(self, st) -> bool:
        for k, r in self.rng.items():
            if r is not None and not (r[0] <= st[k] <= r[1]):
                return False
        return True

    # ------------------------------------------------------------------ steps
    def successors(self, state: tuple, only=None):
        """Yield (instance number, picks, next state, step violations); ``only``: just
        these instance numbers."""
        base = self.unpack(state)
        for n, inst in enumerate(self.instances):
            if only is not None and n not in only:
                continue
            if inst.kind == "step":
                pk, i, idx = inst.pc
                if base[pk] != i:
                    continue
                w = _World(dict(base), {})
                w.st[pk] = i + 1
                w.dirty.add(pk)
                self._thread = (pk, idx)
                self._owner = inst.name
                ws = self.run(inst.decl.body, w)
                self._thread = None
            else:
                w = _World(dict(base), {p: c for p, _d, c in inst.args})
                self._owner = inst.name
                ws = self.run(inst.decl.body, w)
            for r in ws:
                viol = set(r.viol)
                for k in r.dirty:
                    rg = self.rng.get(k)
                    if rg is not None and not (rg[0] <= r.st[k] <= rg[1]):
                        viol.add("bounds")
                yield n, r.picks, self.pack(r.st), viol

    def violated(self, state: tuple, props) -> set:
        st = self.unpack(state)
        w = _World(st, {})
        out = set()
        for p in props:
            for cond in self.invariants.get(p, ()):
                if not self.ev(cond, w):
                    out.add(p)
                    break
        return out

    # ------------------------------------------------------------------ statements
    def run(self, body, w: _World) -> list[_World]:
        ws = [w]
        for s in body:
            nws = []
            for x in ws:
                if x.done:
                    nws.append(x)
                else:
                    nws.extend(self.stmt(s, x))
            ws = nws
            if not ws:
                break
        return ws

    def _scoped(self, body, w, scope):
        """Run ``body`` in ``w`` and give every resulting world the scope ``scope`` back."""
        res = self.run(body, w)
        for r in res:
            r.scope = dict(scope)
        return res

    def stmt(self, s, w: _World) -> list[_World]:
        if isinstance(s, A.Assign):
            val = self.ev(s.value, w)
            if s.index is None:
                key = (s.name, ())
            else:
                key = (s.name, tuple(self.ev(a, w) for a in s.index))
                if key not in w.st:
                    raise ExplicitError(f"{s.name}{list(key[1])}: index outside the domain",
                                        s.loc, "an index inside the map's domains")
            w.st[key] = val
            w.dirty.add(key)
            return [w]
        if isinstance(s, A.Require):
            return [w] if self.ev(s.cond, w) else []
        if isinstance(s, A.Assert):
            if not self.ev(s.cond, w):
                w.viol.add(s.prop)
            return [w]
        if isinstance(s, A.Let):
            w.scope[s.name] = self.ev(s.value, w)
            return [w]
        if isinstance(s, A.BranchLabel):
            self.hits.add((self._owner, s.name))
            return [w]
        if isinstance(s, A.Skip):
            return [w]
        if isinstance(s, A.Goto):
            pk, idx = self._thread
            w.st[pk] = idx[s.label]
            w.dirty.add(pk)
            w.done = True
            return [w]
        if isinstance(s, A.If):
            saved = dict(w.scope)
            for cond, body in s.arms:
                if self.ev(cond, w):
                    return self._scoped(body, w, saved)
            return self._scoped(s.other or (), w, saved)
        if isinstance(s, A.Either):
            saved = dict(w.scope)
            out = []
            for i, body in enumerate(s.arms):
                x = w.copy() if i < len(s.arms) - 1 else w
                x.picks.append(("either", i))
                out += self._scoped(body, x, saved)
            return out
        if isinstance(s, A.Choose) and s.first:
            b = s.binders[0]
            for c in self.m.domains[b.domain].encodings():
                w.scope[b.name] = c
                if s.where is None or self.ev(s.where, w):
                    return [w]
            return []
        if isinstance(s, A.Choose):
            doms = [self.m.domains[b.domain] for b in s.binders]
            options = []
            for codes in itertools.product(*[d.encodings() for d in doms]):
                x = w.copy()
                for b, c in zip(s.binders, codes):
                    x.scope[b.name] = c
                if s.where is None or self.ev(s.where, x):
                    x.picks.extend((b.name, c) for b, c in zip(s.binders, codes))
                    options.append(x)
            return options
        if isinstance(s, A.Foreach):
            saved = dict(w.scope)
            ws = [w]
            doms = [self.m.domains[b.domain] for b in s.binders]
            for codes in itertools.product(*[d.encodings() for d in doms]):
                nws = []
                for x in ws:
                    if x.done:
                        nws.append(x)
                        continue
                    x.scope = dict(saved)
                    for b, c in zip(s.binders, codes):
                        x.scope[b.name] = c
                    nws.extend(self.run(s.body, x))
                ws = nws
            for x in ws:
                x.scope = dict(saved)
            return ws
        if isinstance(s, A.Call):
            procs = self.m.procs_at(s.name, self.era)
            if not procs:
                raise InputError(f"proc {s.name} has no variant for era {self.era.value}",
                                 s.loc, "a proc whose 'when' covers this era")
            p = procs[0]
            args = [self.ev(a, w) for a in s.args]
            saved = w.scope
            w.scope = {x.name: a for x, a in zip(p.params, args)}
            self._depth += 1
            if self._depth > MAX_CALL_DEPTH:
                self._depth = 0
                raise InputError(f"calls nested deeper than {MAX_CALL_DEPTH} (recursion?)",
                                 s.loc, "no recursive procs")
            owner, self._owner = self._owner, p.name
            try:
                return self._scoped(p.body, w, saved)
            finally:
                self._depth -= 1
                self._owner = owner
        raise AssertionError(s)

    # ------------------------------------------------------------------ expressions
    def _word(self, v: int, w: _World) -> int:
        """The compiler's two's-complement word: a result outside it is a ``bounds``
        violation of the step (the compiler's overflow check) and wraps."""
        if self.lo <= v <= self.hi:
            return v
        w.viol.add("bounds")
        span = self.hi - self.lo + 1
        return ((v - self.lo) % span) + self.lo

    def ev(self, e, w: _World):
        m = self.m
        if isinstance(e, A.IntLit):
            return e.value
        if isinstance(e, A.BoolLit):
            return e.value
        if isinstance(e, A.Name):
            if e.id in w.scope:
                return w.scope[e.id]
            if e.id in m.consts:
                return m.consts[e.id][1]
            if e.id in m.enum_values:
                return m.enum_values[e.id][1]
            return w.st[(e.id, ())]
        if isinstance(e, A.Index):
            if e.name in m.observes:
                ob = m.observes[e.name]
                inner = _World(w.st, {p.name: self.ev(a, w) for p, a in zip(ob.params, e.args)})
                inner.viol = w.viol           # an overflow in the observable is the step's
                return self.ev(ob.value, inner)
            key = (e.name, tuple(self.ev(a, w) for a in e.args))
            try:
                return w.st[key]
            except KeyError:
                raise ExplicitError(f"{e.name}{list(key[1])}: index outside the domain",
                                    e.loc, "an index inside the map's domains") from None
        if isinstance(e, A.Binary):
            op = e.op
            if op == "and":
                return bool(self.ev(e.left, w)) and bool(self.ev(e.right, w))
            if op == "or":
                return bool(self.ev(e.left, w)) or bool(self.ev(e.right, w))
            if op == "=>":
                return (not self.ev(e.left, w)) or bool(self.ev(e.right, w))
            v = A.ARITH[op](self.ev(e.left, w), self.ev(e.right, w))
            return self._word(v, w) if op in ("+", "-") else v
        if isinstance(e, A.Unary):
            a = self.ev(e.arg, w)
            return (not a) if e.op == "not" else self._word(-a, w)
        if isinstance(e, A.Ite):
            return self.ev(e.then, w) if self.ev(e.cond, w) else self.ev(e.other, w)
        if isinstance(e, A.Quant):
            doms = [m.domains[b.domain] for b in e.binders]
            saved = w.scope
            n = 0
            try:
                for codes in itertools.product(*[d.encodings() for d in doms]):
                    w.scope = dict(saved)
                    for b, c in zip(e.binders, codes):
                        w.scope[b.name] = c
                    v = self.ev(e.body, w)
                    if e.kind == "forall" and not v:
                        return False
                    if e.kind == "exists" and v:
                        return True
                    if v:
                        n += 1
            finally:
                w.scope = saved
            return {"forall": True, "exists": False}.get(e.kind, n)
        if isinstance(e, A.KernelIn):
            return era_contains(e.versions, self.era)
        if isinstance(e, A.KernelHas):
            got = self.facts.get(e.fact)
            return era_has(e.fact, self.era) if got is None else got
        raise AssertionError(e)


# ---------------------------------------------------------------------- exploration

@dataclass
class XStep:
    instance: XInstance
    choices: dict
    state: dict


@dataclass
class Exploration:
    states: int
    depth: int                          # the deepest BFS level reached
    complete: bool                      # every reachable state was visited
    found: dict                         # prop -> (depth, [XStep], initial dict) | None
    seconds: float
    reason: str = ""                    # why the search stopped early


class _Stop(Exception):
    pass


def explore(model: Model, era: Era, props, *, max_states: int = 2_000_000,
            max_depth: Optional[int] = None, stop_when_all_found: bool = True,
            stop_at_first: bool = False, deadline: Optional[float] = None) -> Exploration:
    """Breadth-first search of the reachable states; a violation of each property in
    ``props`` is reported with a shortest trace.  ``stop_at_first``: end at the first
    violation of any property (one of the shallowest: BFS order).  ``deadline`` is a
    ``time.monotonic()`` value."""
    t0 = time.monotonic()
    mc = Machine(model, era)
    props = list(props)
    inv_props = [p for p in props if p in mc.invariants]
    parent: dict = {}
    found: dict = {p: None for p in props}
    frontier: list = []
    level = [0]

    def trace(s, last=None):
        steps = []
        cur = s
        if last is not None:
            steps.append(last)
        while parent[cur] is not None:
            prev, n, picks = parent[cur]
            steps.append((n, picks, cur))
            cur = prev
        steps.reverse()
        return [XStep(mc.instances[n], dict(p), mc.unpack(st)) for n, p, st in steps], \
            mc.unpack(cur)

    def note(p, s, last=None):
        if p in found and found[p] is None:
            steps, init = trace(s, last)
            found[p] = (len(steps), steps, init)
            if stop_at_first:
                raise _Stop

    def levels() -> str:
        nonlocal frontier
        for s in mc.initial():
            if s not in parent:
                parent[s] = None
                frontier.append(s)
        for s in frontier:
            for p in mc.violated(s, inv_props):
                note(p, s)
        while frontier:
            if stop_when_all_found and found and all(v is not None for v in found.values()):
                return "every property has a counterexample"
            if max_depth is not None and level[0] >= max_depth:
                return f"depth bound {max_depth}"
            nxt = []
            for s in frontier:
                if deadline is not None and time.monotonic() > deadline:
                    return "time limit"
                for n, picks, t, viol in mc.successors(s):
                    for p in sorted(viol):
                        note(p, s, (n, picks, t))
                    if t in parent:
                        continue
                    parent[t] = (s, n, tuple(picks))
                    nxt.append(t)
                    for p in mc.violated(t, inv_props):
                        note(p, t)
                if len(parent) > max_states:
                    return f"more than {max_states} states"
            if nxt:
                level[0] += 1
            frontier = nxt
        return ""

    try:
        reason = levels()
    except _Stop:
        reason = "a counterexample"
    complete = reason == ""
    if complete:
        reason = "every reachable state visited"
    return Exploration(len(parent), level[0], complete, found,
                       time.monotonic() - t0, reason)


# ---------------------------------------------------------------------- coverage

@dataclass
class Coverage:
    """What a breadth-first search to ``depth`` saw: the action/step names that fired, the
    branches taken ((owner, label)), and whether it visited every reachable state."""
    fired: set
    hits: set
    states: int
    depth: int
    complete: bool


def coverage(model: Model, era: Era, depth: int, max_states: int = 200_000) -> Coverage:
    mc = Machine(model, era)
    seen = set(mc.initial())
    frontier = list(seen)
    fired: set = set()
    level = 0
    complete = False
    while True:
        if not frontier:
            complete = True
            break
        if level >= depth or len(seen) > max_states:
            break
        nxt = []
        for s in frontier:
            for n, _picks, t, _viol in mc.successors(s):
                fired.add(mc.instances[n].name)
                if t not in seen:
                    seen.add(t)
                    nxt.append(t)
        frontier = nxt
        level += 1
    return Coverage(fired, set(mc.hits), len(seen), level, complete)


def run_sequence(model: Model, era: Era, steps) -> tuple[list, set]:
    """Run the instances ``steps`` ([(name, (arg code, ...))]) from the initial states,
    every choice explored: returns the states after the last step (empty: the sequence
    cannot run) and the branches the last step took."""
    mc = Machine(model, era)
    states = mc.initial()
    hits: set = set()
    for i, (name, codes) in enumerate(steps):
        want = [n for n, x in enumerate(mc.instances)
                if x.name == name and tuple(c for _p, _d, c in x.args) == tuple(codes)]
        if not want:
            raise ValueError(f"no instance {name}{tuple(codes)}")
        if i == len(steps) - 1:
            mc.hits = set()
        nxt = []
        for s in states:
            for _n, _picks, t, _viol in mc.successors(s, only=want):
                nxt.append(t)
        states = list(dict.fromkeys(nxt))
        if i == len(steps) - 1:
            hits = set(mc.hits) if states else set()
    return states, hits
