"""Compile a checked kspec model, for one era, to a Z3 transition system.

Actions are grounded over their parameters (one *instance* per parameter tuple); thread
steps are instances guarded by the thread's program counter.  Each instance is executed
symbolically once over generic state constants; ``if`` merges the arms with ``If``;
``require`` adds a guard; ``choose``/``either`` read choice constants (``ch0``, ``ch1``, ...,
shared by the instances because one step runs one instance).  A step picks its instance
with the selector ``sel``.  BMC copies the generic formulas per step with ``substitute``.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Optional

import z3

from ksmdiff.errors import InputError
from ksmdiff.kspec.internal import ast as A
from ksmdiff.kspec.internal.check import BOOL, Bool, Dom, Int, Model, era_contains, era_has
from ksmdiff.versions import Era, KernelVersion
from ksmdiff.kspec.internal.check import ERA_SPAN

MAX_CALL_DEPTH = 32
# Every int and domain value of a model is a two's-complement bit-vector of the model's
# word width (check.word_width: wide enough for every declared range, literal and in-range
# sum); arithmetic that leaves the word within a step is a ``bounds`` violation.


def IV(v: int, w: int):
    lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
    if not lo <= v <= hi:
        raise ValueError(f"{v} does not fit a {w}-bit word")
    return z3.BitVecVal(v, w)


def IVar(name: str, w: int):
    return z3.BitVec(name, w)


SEL_W = 16     # the selector (instance number) has its own width


def SVar(name: str):
    return z3.BitVec(name, SEL_W)


@dataclass
class Instance:
    kind: str                 # "action" | "step"
    name: str                 # action name, or THREAD.LABEL
    args: tuple               # ((param, domain, code), ...)
    prints: Optional[str]
    choices: list             # [(slot, binder name, domain name or None)]
    guard: object = None
    next: dict = field(default_factory=dict)
    asserts: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    # the same step cut at the iterations of its top-level ``foreach`` statements: each
    # segment (an Instance of kind "segment") runs from generic state constants (see
    # _segments); [] when the body has no such cut
    segments: list = field(default_factory=list)


@dataclass
class TS:
    model: Model
    era: Era
    keys: list
    sort: dict                # key -> "bool" | "int"
    rng: dict                 # key -> (lo, hi) | None
    cur: dict                 # key -> z3 const
    sel: object
    slots: list               # choice constants ch0..
    instances: list
    step_guard: object = None
    step_next: dict = field(default_factory=dict)
    step_asserts: dict = field(default_factory=dict)
    step_labels: dict = field(default_factory=dict)
    init: object = None
    init_slots: list = field(default_factory=list)
    types: object = None
    invariants: dict = field(default_factory=dict)
    threads: dict = field(default_factory=dict)   # thread -> (pc key, [labels])
    split: set = field(default_factory=set)       # domains whose symbolic values are split
    width: int = 5                                # bits of an int word (model.width)

    def observable(self, name: str) -> list:
        """[(args text, z3 expr over cur)] for every instance of ``observe name``."""
        ob = self.model.observes[name]
        out = []
        doms = [self.model.domains[p.domain] for p in ob.params]
        for codes in itertools.product(*[d.encodings() for d in doms]):
            ex = _Exec(self, None)
            scope = {p.name: IV(c, self.width) for p, c in zip(ob.params, codes)}
            env = _Env(dict(self.cur), scope, z3.BoolVal(True))
            text = ", ".join(d.show(c) for d, c in zip(doms, codes))
            out.append((f"{name}({text})", ex.ev(ob.value, env)))
        return out


def key_name(key) -> str:
    var, idx = key
    return var if not idx else f"{var}[{','.join(map(str, idx))}]"


class _Env:
    __slots__ = ("st", "scope", "pc", "doms")

    def __init__(self, st, scope, pc, doms=None):
        self.st, self.scope, self.pc = st, scope, pc
        self.doms = doms if doms is not None else {}

    def fork(self, cond):
        pc = cond if z3.is_true(self.pc) else (self.pc if z3.is_true(cond) else z3.And(self.pc, cond))
        if z3.is_false(cond):
            pc = cond
        return _Env(dict(self.st), dict(self.scope), pc, dict(self.doms))


def _has_goto(s) -> bool:
    if isinstance(s, A.Goto):
        return True
    if isinstance(s, A.If):
        return any(_has_goto(x) for _, b in s.arms for x in b) or \
            any(_has_goto(x) for x in (s.other or ()))
    if isinstance(s, A.Either):
        return any(_has_goto(x) for b in s.arms for x in b)
    return False


# z3.simplify of a term, by the term's id: a compile simplifies the same (often large)
# path conditions and cell values many times, and each z3.simplify walks the whole term
# anew.  The term is kept with its result, so its id is not reused while cached.
_SIMPLIFIED: dict = {}


def _simplify(e):
    hit = _SIMPLIFIED.get(e.get_id())
    if hit is None:
        hit = (e, z3.simplify(e))
        _SIMPLIFIED[e.get_id()] = hit
    return hit[1]


def _concrete(e):
    if z3.is_bv_value(e):
        return e.as_signed_long()
    if z3.is_true(e):
        return True
    if z3.is_false(e):
        return False
    s = _simplify(e)
    if z3.is_bv_value(s):
        return s.as_signed_long()
    if z3.is_true(s):
        return True
    if z3.is_false(s):
        return False
    return None


class _Acc:
    def __init__(self, slot_prefix="ch", steps=True):
        self.steps = steps        # a step's accumulator (asserts count), not init's
        self.guards = []
        self.asserts = {}
        self.labels = {}
        self.nslots = 0
        self.choices = []
        self.prefix = slot_prefix


class _Exec:
    def __init__(self, ts: TS, acc: Optional[_Acc], owner: str = "", thread=None):
        self.ts = ts
        self.m = ts.model
        self.acc = acc
        self.owner = owner
        self.thread = thread      # (pc key, {label: index}) for thread steps
        self.depth = 0
        self.W = ts.width
        self._cur_ids = None

    # -- choice slots
    def slot(self, name, domain):
        k = self.acc.nslots
        self.acc.nslots += 1
        self.acc.choices.append((k, name, domain))
        return IVar(f"{self.acc.prefix}{k}", self.W)

    def _clean(self, t) -> bool:
        """``t`` is a literal of the model or a cell of the state before the step (or a
        choice among such cells), never a value computed in this step: within its
        declared range, so the word width (check.word_width) already holds any sum of
        two of them.  (A cell out of range before the step is a ``bounds`` violation of
        an earlier step, reported there.)  Only other operands need the overflow check."""
        if z3.is_bv_value(t):
            return True
        if self._cur_ids is None:
            self._cur_ids = {c.get_id() for c in self.ts.cur.values()}
        if t.get_id() in self._cur_ids:
            return True
        if z3.is_app_of(t, z3.Z3_OP_ITE):
            return self._clean(t.arg(1)) and self._clean(t.arg(2))
        return False

    def _under(self, env, cond):
        """``env`` on the path where ``cond`` holds too (for overflow checks only)."""
        if self.acc is None or not self.acc.steps:
            return env
        return _Env(env.st, env.scope, z3.And(env.pc, cond), env.doms)

    def _overflow(self, cond, env) -> None:
        """Arithmetic that leaves the word on this path is a ``bounds`` violation of the
        step (only within actions and thread steps: elsewhere every operand is in its
        range and the word width covers the result)."""
        if self.acc is None or not self.acc.steps:
            return
        # not simplified: the path condition is often a large term, shared with the rest
        # of the step's formulas as it is (a simplified copy would share nothing)
        if not z3.is_false(env.pc):
            self.acc.asserts.setdefault("bounds", []).append(z3.And(env.pc, cond))

    # -- expressions
    def ev(self, e, env: _Env):
        m = self.m
        if isinstance(e, A.IntLit):
            return IV(e.value, self.W)
        if isinstance(e, A.BoolLit):
            return z3.BoolVal(e.value)
        if isinstance(e, (A.KernelIn, A.KernelHas)):
            return z3.BoolVal(_static_kernel(e, self.ts.era))
        if isinstance(e, A.Name):
            if e.id in env.scope:
                return env.scope[e.id]
            if e.id in m.consts:
                t, v = m.consts[e.id]
                return z3.BoolVal(v) if isinstance(t, Bool) else IV(v, self.W)
            if e.id in m.enum_values:
                return IV(m.enum_values[e.id][1], self.W)
            return env.st[(e.id, ())]
        if isinstance(e, A.Index):
            if e.name in m.observes:
                ob = m.observes[e.name]
                scope = {p.name: self.ev(a, env) for p, a in zip(ob.params, e.args)}
                return self.ev(ob.value, _Env(env.st, scope, env.pc))
            args = [self.ev(a, env) for a in e.args]
            return self.read(e.name, args, env)
        if isinstance(e, A.Unary):
            a = self.ev(e.arg, env)
            if e.op == "not":
                return z3.Not(a)
            self._overflow(z3.Not(z3.BVSNegNoOverflow(a)), env)
            return -a
        if isinstance(e, A.Binary):
            op = e.op
            a = self.ev(e.left, env)
            if op in ("and", "or", "=>"):
                # the right operand is evaluated where the explicit engine evaluates it
                # (short-circuit): its overflow checks hold only on that path
                b = self.ev(e.right, self._under(env, z3.Not(a) if op == "or" else a))
                return {"and": z3.And, "or": z3.Or, "=>": z3.Implies}[op](a, b)
            b = self.ev(e.right, env)
            if op in ("+", "-") and not (self._clean(a) and self._clean(b)):
                if op == "+":
                    self._overflow(z3.Not(z3.And(z3.BVAddNoOverflow(a, b, True),
                                                 z3.BVAddNoUnderflow(a, b))), env)
                else:
                    self._overflow(z3.Not(z3.And(z3.BVSubNoOverflow(a, b),
                                                 z3.BVSubNoUnderflow(a, b, True))), env)
            return A.ARITH[op](a, b)
        if isinstance(e, A.Ite):
            c = self.ev(e.cond, env)
            cc = _concrete(c)
            if cc is True:
                return self.ev(e.then, env)
            if cc is False:
                return self.ev(e.other, env)
            return z3.If(c, self.ev(e.then, self._under(env, c)),
                         self.ev(e.other, self._under(env, z3.Not(c))))
        if isinstance(e, A.Quant):
            parts = []
            doms = [m.domains[b.domain] for b in e.binders]
            for codes in itertools.product(*[d.encodings() for d in doms]):
                scope = dict(env.scope)
                for b, c in zip(e.binders, codes):
                    scope[b.name] = IV(c, self.W)
                # forall/exists stop at the first false/true instance (as explicit does)
                pc = env.pc
                if parts and e.kind != "count":
                    pc = z3.And(pc, z3.And(parts) if e.kind == "forall"
                                else z3.Not(z3.Or(parts)))
                parts.append(self.ev(e.body, _Env(env.st, scope, pc)))
            if e.kind == "forall":
                return z3.And(parts) if parts else z3.BoolVal(True)
            if e.kind == "exists":
                return z3.Or(parts) if parts else z3.BoolVal(False)
            return z3.Sum([z3.If(p, IV(1, self.W), IV(0, self.W)) for p in parts]) \
                if parts else IV(0, self.W)
        raise AssertionError(e)

    def _tuples(self, var):
        v = self.m.vars[var]
        doms = [self.m.domains[k] for k in v.keys]
        return list(itertools.product(*[d.encodings() for d in doms]))

    def read(self, var, args, env):
        codes = [_concrete(a) for a in args]
        if all(c is not None for c in codes):
            key = (var, tuple(codes))
            if key not in env.st:
                # out of the domain: only reachable under a false path condition
                return env.st[(var, self._tuples(var)[0])]
            return env.st[key]
        tuples = self._tuples(var)
        out = env.st[(var, tuples[-1])]
        for t in reversed(tuples[:-1]):
            cond = z3.And([a == IV(c, self.W) for a, c in zip(args, t)])
            out = z3.If(cond, env.st[(var, t)], out)
        return out

    def write(self, var, args, value, env):
        codes = [_concrete(a) for a in args]
        if all(c is not None for c in codes):
            key = (var, tuple(codes))
            if key in env.st:
                env.st[key] = value
            return
        for t in self._tuples(var):
            cond = z3.And([a == IV(c, self.W) for a, c in zip(args, t)])
            env.st[(var, t)] = z3.If(cond, value, env.st[(var, t)])

    # -- statements
    def run(self, body, env: _Env) -> _Env:
        for i, s in enumerate(body):
            if z3.is_false(env.pc):
                return env
            if isinstance(s, (A.Let, A.Choose)) and getattr(s, "first", True):
                if isinstance(s, A.Let):
                    name, dom, val = s.name, self.dom_of(s.value, env), self.ev(s.value, env)
                else:
                    name, dom = s.binders[0].name, s.binders[0].domain
                    val, env = self._choose_first(s, env)
                if dom in self.ts.split and _concrete(val) is None:
                    rest = body[i + 1:]

                    def k(e, c, name=name, rest=rest, dom=dom):
                        e.scope[name] = IV(c, self.W)
                        e.doms[name] = dom
                        return self.run(rest, e)
                    return self.split(env, val, dom, k)
                env.scope[name] = val
                env.doms[name] = dom
                continue
            if isinstance(s, A.Goto):
                return self.stmt(s, env)          # a goto ends the atomic step
            if isinstance(s, (A.If, A.Either)) and _has_goto(s):
                # the rest of the step runs inside every arm that does not jump away
                rest = tuple(body[i + 1:])
                if isinstance(s, A.If):
                    s = A.If(tuple((c, tuple(b) + rest) for c, b in s.arms),
                             tuple(s.other or ()) + rest, loc=s.loc)
                else:
                    s = A.Either(tuple(tuple(b) + rest for b in s.arms), loc=s.loc)
                return self.stmt(s, env)
            env = self.stmt(s, env)
        return env

    def _choose_first(self, s, env):
        """``choose first x: D where c``: the lowest value of D satisfying c (the step is
        impossible when none does); its value is an if-chain, split like a ``let``."""
        b = s.binders[0]
        codes = self.m.domains[b.domain].encodings()
        conds = []
        seen = z3.BoolVal(False)
        for c in codes:
            e = _Env(env.st, dict(env.scope), env.pc, dict(env.doms))
            e.scope[b.name] = IV(c, self.W)
            e.doms[b.name] = b.domain
            cond = z3.BoolVal(True) if s.where is None else \
                self.ev(s.where, self._under(e, z3.Not(seen)))
            conds.append(cond)
            seen = z3.Or(seen, cond)
        guard = _simplify(z3.Or(conds))
        self.acc.guards.append(z3.Implies(env.pc, guard))
        env.pc = z3.And(env.pc, guard)
        val = IV(codes[-1], self.W)
        for c, cond in zip(reversed(codes[:-1]), reversed(conds[:-1])):
            val = z3.If(cond, IV(c, self.W), val)
        return _simplify(val), env

    def _split_many(self, env, names, rest):
        if not names:
            return self.run(rest, env)
        name = names[0]
        val = env.scope[name]
        dom = env.doms[name]

        def k(e, c):
            e.scope[name] = IV(c, self.W)
            return self._split_many(e, names[1:], rest)
        return self.split(env, val, dom, k)

    def split(self, env, val, dom, k) -> _Env:
        outs = []
        for c in self.m.domains[dom].encodings():
            cond = _simplify(val == IV(c, self.W))
            if z3.is_false(cond):
                continue
            e = env.fork(cond)
            # what the path knows: the state cells holding this very value are constant
            for key, v in e.st.items():
                if v.eq(val):
                    e.st[key] = IV(c, self.W)
            outs.append((cond, k(e, c)))
        return self.join(env, outs)

    def dom_of(self, e, env):
        m = self.m
        if isinstance(e, A.Name):
            if e.id in env.scope:
                return env.doms.get(e.id)
            v = m.vars.get(e.id)
            if v is not None and isinstance(v.type, Dom):
                return v.type.name
            return None
        if isinstance(e, A.Index) and e.name in m.vars:
            t = m.vars[e.name].type
            return t.name if isinstance(t, Dom) else None
        return None

    def stmt(self, s, env: _Env) -> _Env:
        acc = self.acc
        if isinstance(s, A.Assign):
            val = self.ev(s.value, env)
            if s.index is None:
                env.st[(s.name, ())] = val
            else:
                self.write(s.name, [self.ev(a, env) for a in s.index], val, env)
            return env
        if isinstance(s, A.Require):
            c = self.ev(s.cond, env)
            acc.guards.append(z3.Implies(env.pc, c))
            env.pc = z3.And(env.pc, c)
            return env
        if isinstance(s, A.Assert):
            c = self.ev(s.cond, env)
            acc.asserts.setdefault(s.prop, []).append(z3.And(env.pc, z3.Not(c)))
            return env
        if isinstance(s, A.Let):
            env.scope[s.name] = self.ev(s.value, env)
            return env
        if isinstance(s, A.BranchLabel):
            key = (self.owner, s.name)
            acc.labels.setdefault(key, []).append(env.pc)
            return env
        if isinstance(s, A.Skip):
            return env
        if isinstance(s, A.Goto):
            pc_key, index = self.thread
            env.st[pc_key] = IV(index[s.label], self.W)
            return env
        if isinstance(s, A.If):
            arms = []
            notprev = z3.BoolVal(True)
            for cond, body in s.arms:
                c = self.ev(cond, env)
                cc = _concrete(c)
                if cc is False:
                    continue
                if cc is True:
                    arms.append((notprev, body))
                    notprev = z3.BoolVal(False)
                    break
                arms.append((z3.And(notprev, c), body))
                notprev = z3.And(notprev, z3.Not(c))
            if _concrete(notprev) is not False:
                arms.append((notprev, s.other or ()))
            return self.merge(env, [(c, b) for c, b in arms])
        if isinstance(s, A.Either):
            k = self.slot("either", None)
            n = len(s.arms)
            acc.guards.append(z3.Implies(env.pc, z3.And(k >= 0, k < n)))
            return self.merge(env, [(k == i, b) for i, b in enumerate(s.arms)])
        if isinstance(s, A.Choose):
            conds = []
            for b in s.binders:
                d = self.m.domains[b.domain]
                ch = self.slot(b.name, b.domain)
                enc = d.encodings()
                conds.append(z3.And(ch >= min(enc), ch <= max(enc)))
                env.scope[b.name] = ch
                env.doms[b.name] = b.domain
            if s.where is not None:
                conds.append(self.ev(s.where, env))
            c = z3.And(conds)
            acc.guards.append(z3.Implies(env.pc, c))
            env.pc = z3.And(env.pc, c)
            return env
        if isinstance(s, A.Foreach):
            doms = [self.m.domains[b.domain] for b in s.binders]
            for codes in itertools.product(*[d.encodings() for d in doms]):
                inner = _Env(env.st, dict(env.scope), env.pc, dict(env.doms))
                for b, c in zip(s.binders, codes):
                    inner.scope[b.name] = IV(c, self.W)
                inner = self.run(s.body, inner)
                env = _Env(inner.st, env.scope, inner.pc, env.doms)
            return env
        if isinstance(s, A.Call):
            procs = self.m.procs_at(s.name, self.ts.era)
            if not procs:
                raise InputError(f"proc {s.name} has no variant for era {self.ts.era.value}",
                                 s.loc, "a proc whose 'when' covers this era")
            p = procs[0]
            if self.depth > MAX_CALL_DEPTH:
                raise InputError(f"calls nested deeper than {MAX_CALL_DEPTH} (recursion?)",
                                 s.loc, "no recursive procs")
            args = [self.ev(a, env) for a in s.args]
            for j, (x, a) in enumerate(zip(p.params, args)):
                if x.domain in self.ts.split and _concrete(a) is None:
                    def k(e, c, j=j):
                        lits = list(s.args)
                        lits[j] = A.IntLit(c)
                        return self.stmt(A.Call(s.name, tuple(lits), loc=s.loc), e)
                    return self.split(env, a, x.domain, k)
            inner = _Env(env.st, {x.name: a for x, a in zip(p.params, args)}, env.pc,
                         {x.name: x.domain for x in p.params})
            self.depth += 1
            old_owner = self.owner
            self.owner = p.name
            try:
                inner = self.run(p.body, inner)
            finally:
                self.depth -= 1
                self.owner = old_owner
            return _Env(inner.st, env.scope, inner.pc, env.doms)
        raise AssertionError(s)

    def merge(self, env, arms) -> _Env:
        if not arms:
            return env
        outs = []
        for cond, body in arms:
            e = env.fork(cond)
            e = self.run(body, e)
            outs.append((cond, e))
        return self.join(env, outs)

    def join(self, env, outs) -> _Env:
        if not outs:
            return _Env(env.st, env.scope, z3.BoolVal(False), env.doms)
        if len(outs) == 1:
            cond, e = outs[0]
            return _Env(e.st, env.scope, env.pc if _concrete(cond) is True else e.pc, env.doms)
        st = {}
        for key in env.st:
            vals = [e.st[key] for _, e in outs]
            first = vals[0]
            if all(v.eq(first) for v in vals[1:]):
                st[key] = first
                continue
            out = vals[-1]
            for (cond, _), v in zip(reversed(outs[:-1]), reversed(vals[:-1])):
                out = z3.If(cond, v, out)
            st[key] = out
        # the path condition after the merge: some arm was taken (its requires held)
        pc = z3.Or([e.pc for _, e in outs])
        return _Env(st, env.scope, pc, env.doms)


# An action's instances, by model, action and era signature (era_signature): the same
# formulas in every era where the action runs the same proc variants and every
# ``kernel in`` test it reaches has the same value (fork, munmap, settle, ... at user
# level).  The model and action are kept with them, so their ids are not reused while
# cached.  clear_instances() forgets them (benchmarks measure cold runs).
_INSTANCES: dict = {}


def clear_instances() -> None:
    _INSTANCES.clear()


def _instances_cached(m, a, ckey):
    hit = _INSTANCES.get((id(m), a.name, ckey))
    if hit is None or hit[0] is not m or hit[1] is not a:
        return None
    return hit[2]


def era_signature(m: Model, body, era: Era) -> tuple:
    """What of ``era`` the compiled formulas of ``body`` depend on: the variant of every
    proc it calls (transitively) and the value of every ``kernel in`` test it reaches
    (in its expressions, the observables it reads and the procs it calls), in the order
    the walk meets them.  Two eras with equal signatures compile ``body`` to the same
    formulas: the compiler reads the era nowhere else."""
    sig: list = []
    seen: set = set()

    def walk(x):
        if isinstance(x, (tuple, list)):
            for y in x:
                walk(y)
            return
        if not dataclasses.is_dataclass(x) or isinstance(x, type):
            return
        if isinstance(x, A.KernelIn):
            sig.append(("in", era_contains(x.versions, era)))
            return
        if isinstance(x, A.KernelHas):
            sig.append(("has", x.fact, era_has(x.fact, era)))
            return
        if isinstance(x, A.Call):
            procs = m.procs_at(x.name, era)
            sig.append(("call", x.name, id(procs[0]) if procs else None))
            if procs and id(procs[0]) not in seen:
                seen.add(id(procs[0]))
                walk(procs[0].body)
        if isinstance(x, A.Index) and x.name in m.observes and ("obs", x.name) not in seen:
            seen.add(("obs", x.name))
            walk(m.observes[x.name].value)
        for f in dataclasses.fields(x):
            if f.name != "loc":
                walk(getattr(x, f.name))

    walk(body)
    return tuple(sig)


def compile_ts(model: Model, era: Era) -> TS:
    try:
        return _compile_ts(model, era)
    finally:
        _SIMPLIFIED.clear()


def _compile_ts(model: Model, era: Era) -> TS:
    m = model
    W = m.width
    keys, sort, rng, cur = [], {}, {}, {}
    for v in m.vars.values():
        doms = [m.domains[k] for k in v.keys]
        for t in itertools.product(*[d.encodings() for d in doms]):
            key = (v.name, tuple(t))
            keys.append(key)
            if isinstance(v.type, Bool):
                sort[key] = "bool"
                rng[key] = None
                cur[key] = z3.Bool(key_name(key))
            else:
                sort[key] = "int"
                if isinstance(v.type, Int):
                    rng[key] = (v.type.lo, v.type.hi)
                else:
                    enc = m.domains[v.type.name].encodings()
                    rng[key] = (min(enc), max(enc))
                cur[key] = IVar(key_name(key), W)
    threads = {}
    for t in m.threads_at(era):
        pk = (f"pc.{t.name}", ())
        keys.append(pk)
        sort[pk] = "int"
        rng[pk] = (0, len(t.steps))
        cur[pk] = IVar(key_name(pk), W)
        threads[t.name] = (pk, [st.label for st in t.steps])
    ts = TS(m, era, keys, sort, rng, cur, SVar("sel"), [], [], width=W)
    ts.split = {k for v in m.vars.values() for k in v.keys if m.domains[k].size <= 8}
    ts.threads = threads

    # -- instances
    instances = []
    for a in m.actions_at(era):
        doms = [m.domains[p.domain] for p in a.params]
        ckey = (era_signature(m, a.body, era), tuple(keys), tuple(rng[k] for k in keys), W,
                frozenset(ts.split))
        cached = _instances_cached(m, a, ckey)
        if cached is not None:
            instances += cached
            continue
        mine = []
        for codes in itertools.product(*[d.encodings() for d in doms]):
            inst = Instance("action", a.name,
                            tuple((p.name, p.domain, c) for p, c in zip(a.params, codes)),
                            a.prints, [])
            acc = _Acc()
            ex = _Exec(ts, acc, a.name)
            env = _Env(dict(cur), {p.name: IV(c, W) for p, c in zip(a.params, codes)},
                       z3.BoolVal(True))
            env = ex.run(a.body, env)
            _finish(ts, inst, acc, env)
            inst.segments = _segments(ts, a, inst)
            mine.append(inst)
        _INSTANCES[(id(m), a.name, ckey)] = (m, a, mine)
        instances += mine
    for t in m.threads_at(era):
        pk, labels = threads[t.name]
        index = {lab: i for i, lab in enumerate(labels)}
        index["done"] = len(labels)
        for i, st in enumerate(t.steps):
            inst = Instance("step", f"{t.name}.{st.label}", (), None, [])
            acc = _Acc()
            ex = _Exec(ts, acc, f"{t.name}.{st.label}", (pk, index))
            env = _Env(dict(cur), {}, z3.BoolVal(True))
            acc.guards.append(cur[pk] == i)
            env.pc = cur[pk] == i
            env.st[pk] = IV(i + 1, W)
            env = ex.run(st.body, env)
            _finish(ts, inst, acc, env)
            instances.append(inst)
    ts.instances = instances
    nslots = max([len(i.choices) for i in instances] + [0])
    ts.slots = [IVar(f"ch{k}", W) for k in range(nslots)]

    sel = ts.sel
    n = len(instances)
    # sel == n is the stutter step (nothing changes): every path can be extended, so one
    # query over all depths sees violations at every depth up to the bound
    guard = [sel >= 0, sel < n]
    for i, inst in enumerate(instances):
        guard.append(z3.Implies(sel == i, inst.guard))
    ts.step_guard = z3.And(guard)
    for key in keys:
        out = cur[key]
        for i in reversed(range(n)):
            nv = instances[i].next.get(key)
            if nv is not None:
                out = z3.If(sel == i, nv, out)
        ts.step_next[key] = out
    props = {}
    for i, inst in enumerate(instances):
        for p, v in inst.asserts.items():
            props.setdefault(p, []).append(z3.And(sel == i, v))
    ts.step_asserts = {p: z3.Or(vs) for p, vs in props.items()}
    labels = {}
    for i, inst in enumerate(instances):
        for lab, v in inst.labels.items():
            labels.setdefault(lab, []).append(z3.And(sel == i, v))
    ts.step_labels = {lab: z3.Or(vs) for lab, vs in labels.items()}

    # -- types (ranges) of a state
    tparts = []
    for key in keys:
        if rng[key] is not None:
            lo, hi = rng[key]
            tparts.append(z3.And(cur[key] >= lo, cur[key] <= hi))
    ts.types = z3.And(tparts) if tparts else z3.BoolVal(True)

    # -- initial states
    acc = _Acc("ich", steps=False)
    ex = _Exec(ts, acc, "init")
    st = dict(cur)
    env0 = _Env(st, {}, z3.BoolVal(True))
    for v in m.vars.values():
        if v.init is not None:
            val = ex.ev(v.init, env0)
            for key in keys:
                if key[0] == v.name:
                    st[key] = val
    for pk, _ in threads.values():
        st[pk] = IV(0, W)
    env = _Env(st, {}, z3.BoolVal(True))
    for init in m.inits:
        env = ex.run(init.body, env)
    parts = list(acc.guards)
    for key in keys:
        if not env.st[key].eq(cur[key]):
            parts.append(cur[key] == env.st[key])
    ts.init = z3.And(parts) if parts else z3.BoolVal(True)
    ts.init_slots = [IVar(f"ich{k}", W) for k in range(acc.nslots)]

    # -- invariants
    for inv in m.invariants:
        ex = _Exec(ts, _Acc(steps=False), "invariant")
        e = ex.ev(inv.cond, _Env(dict(cur), {}, z3.BoolVal(True)))
        ts.invariants.setdefault(inv.name, []).append(e)
    ts.invariants = {k: z3.And(v) for k, v in ts.invariants.items()}
    return ts


def _static_kernel(e, era) -> Optional[bool]:
    """The value of a condition that names only the kernel (``kernel in V``, ``kernel has
    FACT``) in ``era``; None for any other condition."""
    if isinstance(e, A.KernelIn):
        return era_contains(e.versions, era)
    if isinstance(e, A.KernelHas):
        return era_has(e.fact, era)
    return None


def _top_level(m: Model, era, body, depth: int = 0) -> list:
    """``body`` with its top-level calls of parameterless procs replaced by their bodies,
    and its top-level ``if``s whose every condition names only the kernel replaced by the
    arm the era takes: the same statements in the same order, so that a foreach inside
    (``settle``: ``full_scan()``, twice where the kernel scans twice) is a place to cut."""
    out = []
    for s in body:
        if isinstance(s, A.Call) and not s.args and depth < MAX_CALL_DEPTH:
            procs = m.procs_at(s.name, era)
            if procs and not procs[0].params:
                out += _top_level(m, era, procs[0].body, depth + 1)
                continue
        if isinstance(s, A.If):
            vals = [_static_kernel(c, era) for c, _b in s.arms]
            if all(v is not None for v in vals):
                taken = next((b for v, (_c, b) in zip(vals, s.arms) if v), s.other or ())
                out += _top_level(m, era, taken, depth)
                continue
        out.append(s)
    return out


def _units(body):
    """The top-level pieces of an action body at which it may be cut: every iteration of a
    top-level ``foreach`` on its own (binder, code tuple), the statements between them
    together (None, [statements]).  None when a top-level ``let``/``choose`` binds a name
    the rest of the body reads (no cut can then start from the state alone)."""
    units, run = [], []
    for s in body:
        if isinstance(s, (A.Let, A.Choose)):
            return None
        if isinstance(s, A.Foreach):
            if run:
                units.append((None, run))
                run = []
            units.append((s, None))
        else:
            run.append(s)
    if run:
        units.append((None, run))
    return units


def _segments(ts: TS, a, inst: Instance) -> list:
    """The action instance as a sequence of segments, each a transition of its own from
    generic state constants: the statements before a top-level ``foreach``, each of its
    iterations, the statements after it.  Running them one after another from a state is
    running the action (the body's top-level path condition is true again after every
    top-level statement of an enabled step), so when every segment keeps an inductive
    invariant, so does the action: the induction step of a long atomic action (``ksm
    settle``: a lookup of every stable node, then a scan of every page) is then a few small
    queries instead of one that Z3 does not decide within minutes."""
    units = _units(_top_level(ts.model, ts.era, a.body))
    if units is None:
        return []
    W = ts.width
    params = {name: IV(c, W) for name, _d, c in inst.args}
    pieces = []
    for fe, stmts in units:
        if fe is None:
            pieces.append(({}, {}, list(stmts)))
            continue
        doms = [ts.model.domains[b.domain] for b in fe.binders]
        for codes in itertools.product(*[d.encodings() for d in doms]):
            scope = {b.name: IV(c, W) for b, c in zip(fe.binders, codes)}
            pieces.append((scope, {b.name: b.domain for b in fe.binders}, list(fe.body)))
    if len(pieces) < 2:
        return []
    segs = []
    for i, (scope, doms, body) in enumerate(pieces):
        seg = Instance("segment", f"{inst.name}#{i}", inst.args, None, [])
        acc = _Acc()
        ex = _Exec(ts, acc, a.name)
        env = _Env(dict(ts.cur), {**params, **scope}, z3.BoolVal(True),
                   {**{name: d for name, d, _c in inst.args}, **doms})
        env = ex.run(body, env)
        _finish(ts, seg, acc, env)
        segs.append(seg)
    return segs


def _finish(ts: TS, inst: Instance, acc: _Acc, env: _Env) -> None:
    inst.guard = z3.And(acc.guards) if acc.guards else z3.BoolVal(True)
    inst.choices = acc.choices
    bounds = []
    for key, val in env.st.items():
        if val.eq(ts.cur[key]):
            continue
        inst.next[key] = val
        r = ts.rng.get(key)
        if r is not None:
            bounds.append(z3.Or(val < r[0], val > r[1]))
    if bounds:
        acc.asserts.setdefault("bounds", []).extend(bounds)
    asserts = {p: z3.Or(v) for p, v in acc.asserts.items()}
    inst.asserts = asserts
    inst.labels = {lab: z3.Or(v) for lab, v in acc.labels.items()}
