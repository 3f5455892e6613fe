"""Name resolution and type checking of a kspec model (every error names FILE:LINE:COL).

Types: ``BOOL``, ``Int(lo, hi)`` (``lo``/``hi`` None for computed ints), ``Dom(name)``.  A
domain declared as a range (``domain Page = 0..1``) is an int type too; an enum domain's
values are only comparable with the same domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ksmdiff.errors import InputError, Location
from ksmdiff.kspec.internal import ast as A
from ksmdiff.versions import ERA_INFO, FACTS, Era, KernelVersion, VersionSet, era_span, has_fact

# ----------------------------------------------------------------------------- eras

# Lowest, representative and highest version of every era (for `when kernel in ...`),
# from the kernel fact table.
ERA_SPAN = {e: tuple(str(v) for v in era_span(e)) for e in Era}
ERAS = tuple(Era)
ERA_SLUG = {e: ERA_INFO[e].slug for e in Era}


def era_contains(vs: Optional[VersionSet], era: Era) -> bool:
    if vs is None:
        return True
    return vs.contains(KernelVersion.parse(ERA_SPAN[era][1]))


def eras_of(vs: VersionSet) -> list[Era]:
    return [e for e in ERAS if era_contains(vs, e)]


def era_has(fact: str, era: Era) -> bool:
    """``kernel has FACT`` in ``era``: the answer of the era's representative version (the
    version ``ksmdiff run`` runs the era as).  Where the fact's first version lies inside
    the era, the versions of the era on the other side are outside the spec's world:
    :func:`fact_gaps` names them."""
    hit = _ERA_HAS.get((fact, era))
    if hit is not None and hit[0] is FACTS.get(fact):
        return hit[1]
    got = bool(has_fact(KernelVersion.parse(ERA_SPAN[era][1]), fact))
    _ERA_HAS[(fact, era)] = (FACTS.get(fact), got)
    return got


# (fact, era) -> (the Fact row asked about, answer): the explicit engine asks per step
_ERA_HAS: dict = {}


def fact_gaps(facts, era: Era, version: KernelVersion) -> list[str]:
    """The facts of ``facts`` (read by a model through ``kernel has``) on which ``version``
    differs from the representative of its era ``era``: the spec's world of that era does
    not describe ``version`` there."""
    out = []
    for name in sorted(facts):
        got = has_fact(version, name)
        if got is None or got != era_has(name, era):
            rep = ERA_SPAN[era][1]
            out.append(f"the spec's {era.value} world follows {rep}, which "
                       + ("has" if era_has(name, era) else "lacks") + f" {name} ("
                       + FACTS[name].commit + f"); {version} "
                       + ("may or may not have it" if got is None
                          else "has it" if got else "does not"))
    return out


def split_facts(facts, era: Era) -> list[str]:
    """The facts of ``facts`` whose answer changes inside ``era`` (between its lowest and
    highest checked version): the era is proved as its representative there only."""
    out = []
    for name in sorted(facts):
        got = {has_fact(KernelVersion.parse(v), name) for v in ERA_SPAN[era]}
        if len(got) > 1:
            out.append(name)
    return out


def check_era_split(vs: Optional[VersionSet], loc) -> None:
    if vs is None:
        return
    for era, (lo, mid, hi) in ERA_SPAN.items():
        got = {vs.contains(KernelVersion.parse(v)) for v in (lo, mid, hi)}
        if len(got) > 1:
            raise InputError(f"version condition '{vs}' splits the era {era.value}", loc,
                             "version bounds at era boundaries ("
                             + ", ".join(e.value for e in ERAS) + ")")


# ----------------------------------------------------------------------------- types

@dataclass(frozen=True)
class Bool:
    def __str__(self):
        return "bool"


@dataclass(frozen=True)
class Int:
    lo: Optional[int] = None
    hi: Optional[int] = None

    def __str__(self):
        return "int" if self.lo is None else f"{self.lo}..{self.hi}"


@dataclass(frozen=True)
class Dom:
    name: str

    def __str__(self):
        return self.name


BOOL = Bool()
INT = Int()


@dataclass
class Domain:
    name: str
    values: tuple
    is_enum: bool

    def index_of(self, v) -> int:
        return self.values.index(v)

    @property
    def size(self) -> int:
        return len(self.values)

    def enc(self, i: int) -> int:
        """The integer that encodes the i-th value (enums: i; ranges: the value)."""
        return i if self.is_enum else self.values[i]

    def encodings(self) -> list[int]:
        return [self.enc(i) for i in range(self.size)]

    def show(self, code: int) -> str:
        if self.is_enum:
            return str(self.values[code]) if 0 <= code < self.size else f"?{code}"
        return str(code)


@dataclass
class VarInfo:
    name: str
    type: object              # Bool | Int(lo,hi) | Dom
    keys: tuple               # domain names
    init: Optional[A.Expr]
    ghost: bool
    loc: Optional[Location]


@dataclass
class Model:
    name: str
    files: list = field(default_factory=list)
    domains: dict = field(default_factory=dict)
    enum_values: dict = field(default_factory=dict)      # value name -> (domain, code)
    consts: dict = field(default_factory=dict)           # name -> (type, python value)
    vars: dict = field(default_factory=dict)
    procs: dict = field(default_factory=dict)            # name -> [ProcDecl]
    actions: list = field(default_factory=list)
    threads: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    prelude: list = field(default_factory=list)
    invariants: list = field(default_factory=list)
    observes: dict = field(default_factory=dict)
    equivs: list = field(default_factory=list)
    facts: set = field(default_factory=set)              # read by `kernel has FACT`
    mutant: Optional[A.MutantDecl] = None
    width: int = 0            # bits of every int word (word_width): set by build_model

    # -- era views
    def procs_at(self, name: str, era: Era):
        return [p for p in self.procs.get(name, ()) if era_contains(p.when, era)]

    def actions_at(self, era: Era):
        return [a for a in self.actions if era_contains(a.when, era)]

    def threads_at(self, era: Era):
        return [t for t in self.threads if era_contains(t.when, era)]

    def property_names(self) -> list[str]:
        names: list[str] = []
        for inv in self.invariants:
            if inv.name not in names:
                names.append(inv.name)
        for n in self.assert_names():
            if n not in names:
                names.append(n)
        for e in self.equivs:
            if e.name not in names:
                names.append(e.name)
        return names

    def assert_names(self) -> list[str]:
        out: list[str] = []

        def walk(stmts):
            for s in stmts:
                if isinstance(s, A.Assert) and s.prop not in out:
                    out.append(s.prop)
                for sub in _substmts(s):
                    walk(sub)
        for ps in self.procs.values():
            for p in ps:
                walk(p.body)
        for a in self.actions:
            walk(a.body)
        for t in self.threads:
            for st in t.steps:
                walk(st.body)
        for i in self.inits:
            walk(i.body)
        return out

    def branch_labels(self) -> list[tuple[str, str, str]]:
        """(era slug, owner, label) for every ``branch`` reachable in every era."""
        out = []
        for era in ERAS:
            seen = set()

            def walk(owner, stmts, depth=0):
                for s in stmts:
                    if isinstance(s, A.BranchLabel) and (owner, s.name) not in seen:
                        seen.add((owner, s.name))
                        out.append((ERA_SLUG[era], owner, s.name))
                    if isinstance(s, A.Call) and depth < 20:
                        for p in self.procs_at(s.name, era):
                            walk(p.name, p.body, depth + 1)
                    for sub in _substmts(s):
                        walk(owner, sub, depth)
            for a in self.actions_at(era):
                walk(a.name, a.body)
            for t in self.threads_at(era):
                for st in t.steps:
                    walk(f"{t.name}.{st.label}", st.body)
        return out


def _substmts(s):
    if isinstance(s, A.If):
        for _, body in s.arms:
            yield body
        if s.other is not None:
            yield s.other
    elif isinstance(s, A.Either):
        yield from s.arms
    elif isinstance(s, A.Foreach):
        yield s.body


# ----------------------------------------------------------------------------- checker

class Checker:
    def __init__(self, model: Model):
        self.m = model

    def err(self, msg, loc, expected=None):
        raise InputError(msg, loc or Location("<spec>", 1, 1), expected)

    # -- declarations
    def declare(self, decls) -> None:
        m = self.m
        for d in decls:
            if isinstance(d, A.DomainDecl):
                self._fresh(d.name, d.loc)
                m.domains[d.name] = Domain(d.name, d.values, d.is_enum)
                if d.is_enum:
                    if len(set(d.values)) != len(d.values):
                        self.err(f"domain {d.name} lists a value twice", d.loc)
                    for i, v in enumerate(d.values):
                        self._fresh(v, d.loc)
                        m.enum_values[v] = (d.name, i)
        for d in decls:
            if isinstance(d, A.ConstDecl):
                self._fresh(d.name, d.loc)
                t = self.expr(d.value, {})
                m.consts[d.name] = (t, self.const_value(d.value))
        for d in decls:
            if isinstance(d, A.VarDecl):
                self._fresh(d.name, d.loc)
                keys, vt = (), d.type
                if isinstance(vt, A.TMap):
                    keys = vt.keys
                    for k in keys:
                        if k not in m.domains:
                            self.err(f"unknown domain {k!r}", vt.loc, "a declared domain")
                    vt = vt.value
                    if isinstance(vt, A.TMap):
                        self.err("a map of maps; use map[D1, D2] of T", d.loc)
                t = self.type_of(vt, d.loc)
                m.vars[d.name] = VarInfo(d.name, t, tuple(keys), d.init, d.ghost, d.loc)
        for d in decls:
            if isinstance(d, A.ProcDecl):
                check_era_split(d.when, d.loc)
                m.procs.setdefault(d.name, []).append(d)
            elif isinstance(d, A.ActionDecl):
                check_era_split(d.when, d.loc)
                m.actions.append(d)
            elif isinstance(d, A.ThreadDecl):
                check_era_split(d.when, d.loc)
                m.threads.append(d)
            elif isinstance(d, A.InitDecl):
                m.inits.append(d)
            elif isinstance(d, A.PreludeDecl):
                m.prelude.extend(d.lines)
            elif isinstance(d, A.InvariantDecl):
                m.invariants.append(d)
            elif isinstance(d, A.ObserveDecl):
                if d.name in m.observes:
                    self.err(f"observable {d.name!r} declared twice", d.loc)
                m.observes[d.name] = d
            elif isinstance(d, A.EquivDecl):
                m.equivs.append(d)

    def _fresh(self, name, loc):
        m = self.m
        if name in m.domains or name in m.enum_values or name in m.consts or name in m.vars:
            self.err(f"{name!r} is declared twice", loc, "a new name")

    def type_of(self, t, loc):
        if isinstance(t, A.TBool):
            return BOOL
        if isinstance(t, A.TRange):
            if t.lo > t.hi:
                self.err(f"empty range {t.lo}..{t.hi}", t.loc or loc, "LO..HI with LO <= HI")
            return Int(t.lo, t.hi)
        if isinstance(t, A.TNamed):
            if t.name not in self.m.domains:
                self.err(f"unknown type {t.name!r}", t.loc or loc,
                         "bool, LO..HI, a domain or map[D, ...] of T")
            return Dom(t.name)
        self.err("bad type", loc)

    def const_value(self, e):
        if isinstance(e, A.IntLit):
            return e.value
        if isinstance(e, A.BoolLit):
            return e.value
        if isinstance(e, A.Unary) and e.op == "-":
            return -self.const_value(e.arg)
        if isinstance(e, A.Name) and e.id in self.m.consts:
            return self.m.consts[e.id][1]
        if isinstance(e, A.Name) and e.id in self.m.enum_values:
            return self.m.enum_values[e.id][1]
        if isinstance(e, A.Binary) and e.op in "+-":
            a, b = self.const_value(e.left), self.const_value(e.right)
            return a + b if e.op == "+" else a - b
        self.err("a constant must be a literal or a sum of constants", e.loc)

    # -- compatibility
    def is_int(self, t):
        return isinstance(t, Int) or (isinstance(t, Dom) and not self.m.domains[t.name].is_enum)

    def compatible(self, want, got):
        if isinstance(want, Bool) or isinstance(got, Bool):
            return isinstance(want, Bool) and isinstance(got, Bool)
        if isinstance(want, Dom) and self.m.domains[want.name].is_enum:
            return got == want
        if isinstance(got, Dom) and self.m.domains[got.name].is_enum:
            return False
        return True

    # -- expressions
    def expr(self, e, scope) -> object:
        m = self.m
        if isinstance(e, A.IntLit):
            return INT
        if isinstance(e, A.BoolLit):
            return BOOL
        if isinstance(e, A.KernelIn):
            return BOOL
        if isinstance(e, A.KernelHas):
            if e.fact not in FACTS:
                raise InputError(f"unknown kernel fact '{e.fact}'", e.loc,
                                 "a fact of the kernel fact table (ksmdiff/kernel_facts.py): "
                                 + ", ".join(FACTS))
            m.facts.add(e.fact)
            return BOOL
        if isinstance(e, A.Name):
            if e.id in scope:
                return scope[e.id]
            if e.id in m.consts:
                return m.consts[e.id][0]
            if e.id in m.enum_values:
                return Dom(m.enum_values[e.id][0])
            if e.id in m.vars:
                v = m.vars[e.id]
                if v.keys:
                    self.err(f"map {e.id!r} needs an index", e.loc,
                             f"{e.id}[{', '.join(v.keys)}]")
                return v.type
            self.err(f"unknown name {e.id!r}", e.loc, "a variable, constant, parameter or value")
        if isinstance(e, A.Index):
            if e.name in m.observes:
                ob = m.observes[e.name]
                self._args(e.name, [p.domain for p in ob.params], e.args, scope, e.loc)
                return self.expr(ob.value, {p.name: Dom(p.domain) for p in ob.params})
            if e.name not in m.vars:
                self.err(f"unknown map {e.name!r}", e.loc, "a declared map variable")
            v = m.vars[e.name]
            if not v.keys:
                self.err(f"{e.name!r} is not a map", e.loc, e.name)
            self._args(e.name, v.keys, e.args, scope, e.loc)
            return v.type
        if isinstance(e, A.Unary):
            t = self.expr(e.arg, scope)
            if e.op == "not":
                self._want_bool(t, e.arg)
                return BOOL
            if not self.is_int(t):
                self.err(f"'-' needs an int, got {t}", e.loc)
            return INT
        if isinstance(e, A.Binary):
            lt, rt = self.expr(e.left, scope), self.expr(e.right, scope)
            if e.op in ("and", "or", "=>"):
                self._want_bool(lt, e.left)
                self._want_bool(rt, e.right)
                return BOOL
            if e.op in ("==", "!="):
                if not (self.compatible(lt, rt) and self.compatible(rt, lt)):
                    self.err(f"cannot compare {lt} with {rt}", e.loc, f"two values of one type")
                return BOOL
            if not (self.is_int(lt) and self.is_int(rt)):
                self.err(f"'{e.op}' needs ints, got {lt} and {rt}", e.loc, "int operands")
            return BOOL if e.op in ("<", "<=", ">", ">=") else INT
        if isinstance(e, A.Ite):
            self._want_bool(self.expr(e.cond, scope), e.cond)
            a, b = self.expr(e.then, scope), self.expr(e.other, scope)
            if not (self.compatible(a, b) and self.compatible(b, a)):
                self.err(f"the arms of if-then-else differ: {a} and {b}", e.loc)
            return a if not isinstance(a, Int) else INT
        if isinstance(e, A.Quant):
            inner = dict(scope)
            for b in e.binders:
                if b.domain not in m.domains:
                    self.err(f"unknown domain {b.domain!r}", b.loc, "a declared domain")
                inner[b.name] = Dom(b.domain)
            self._want_bool(self.expr(e.body, inner), e.body)
            return INT if e.kind == "count" else BOOL
        self.err(f"unsupported expression {type(e).__name__}", getattr(e, "loc", None))

    def _want_bool(self, t, e):
        if not isinstance(t, Bool):
            self.err(f"expected a bool, got {t}", getattr(e, "loc", None) or _first_loc(e),
                     "a condition")

    def _args(self, name, domains, args, scope, loc):
        if len(args) != len(domains):
            self.err(f"{name} takes {len(domains)} argument(s), got {len(args)}", loc,
                     f"{name}[{', '.join(domains)}]")
        for d, a in zip(domains, args):
            t = self.expr(a, scope)
            if not self.compatible(Dom(d), t):
                self.err(f"argument of {name} should be a {d}, got {t}",
                         getattr(a, "loc", None) or loc, f"a value of {d}")

    # -- statements
    def stmts(self, body, scope, ctx):
        scope = dict(scope)
        for s in body:
            self.stmt(s, scope, ctx)

    def stmt(self, s, scope, ctx):
        m = self.m
        if isinstance(s, A.Assign):
            if s.name in scope:
                self.err(f"cannot assign to {s.name!r}: it is a parameter or let", s.loc,
                         "a state variable")
            if s.name not in m.vars:
                self.err(f"unknown variable {s.name!r}", s.loc, "a declared var")
            v = m.vars[s.name]
            if s.index is None and v.keys:
                self.err(f"map {s.name!r} needs an index", s.loc, f"{s.name}[...] := ...")
            if s.index is not None:
                if not v.keys:
                    self.err(f"{s.name!r} is not a map", s.loc)
                self._args(s.name, v.keys, s.index, scope, s.loc)
            t = self.expr(s.value, scope)
            if not self.compatible(v.type, t):
                self.err(f"cannot assign a {t} to {s.name} of type {v.type}",
                         getattr(s.value, "loc", None) or s.loc, f"a {v.type}")
            lit = isinstance(s.value, A.IntLit) or (
                isinstance(s.value, A.Unary) and s.value.op == "-"
                and isinstance(s.value.arg, A.IntLit))
            if lit and self.is_int(v.type):
                c = self.const_value(s.value)
                vt = v.type
                vals = range(vt.lo, vt.hi + 1) if isinstance(vt, Int) else \
                    m.domains[vt.name].encodings()
                if c not in vals:
                    self.err(f"{c} is outside the range of {s.name} ({vt})",
                             getattr(s.value, "loc", None) or s.loc, f"a value in {vt}")
        elif isinstance(s, (A.Require,)):
            self._want_bool(self.expr(s.cond, scope), s.cond)
        elif isinstance(s, A.Assert):
            self._want_bool(self.expr(s.cond, scope), s.cond)
        elif isinstance(s, A.Let):
            t = self.expr(s.value, scope)
            scope[s.name] = t
        elif isinstance(s, A.If):
            for c, body in s.arms:
                self._want_bool(self.expr(c, scope), c)
                self.stmts(body, scope, ctx)
            if s.other is not None:
                self.stmts(s.other, scope, ctx)
        elif isinstance(s, A.BranchLabel):
            pass
        elif isinstance(s, A.Either):
            for body in s.arms:
                self.stmts(body, scope, ctx)
        elif isinstance(s, A.Choose):
            for b in s.binders:
                if b.domain not in m.domains:
                    self.err(f"unknown domain {b.domain!r}", b.loc, "a declared domain")
                scope[b.name] = Dom(b.domain)
            if s.where is not None:
                self._want_bool(self.expr(s.where, scope), s.where)
        elif isinstance(s, A.Foreach):
            inner = dict(scope)
            for b in s.binders:
                if b.domain not in m.domains:
                    self.err(f"unknown domain {b.domain!r}", b.loc, "a declared domain")
                inner[b.name] = Dom(b.domain)
            self.stmts(s.body, inner, ctx)
        elif isinstance(s, A.Call):
            if s.name not in m.procs:
                self.err(f"unknown procedure {s.name!r}", s.loc, "a declared proc")
            p = m.procs[s.name][0]
            self._args(s.name, [x.domain for x in p.params], s.args, scope, s.loc)
        elif isinstance(s, A.Goto):
            labels = ctx.get("labels")
            if labels is None:
                self.err("goto outside a thread", s.loc, "a thread step")
            if s.label not in labels and s.label != "done":
                self.err(f"unknown label {s.label!r}", s.loc,
                         "one of " + ", ".join(sorted(labels | {"done"})))
        elif isinstance(s, A.Skip):
            pass

    def check_all(self) -> None:
        m = self.m
        for v in m.vars.values():
            if v.init is not None:
                t = self.expr(v.init, {})
                if not self.compatible(v.type, t):
                    self.err(f"initial value of {v.name} is a {t}, not a {v.type}",
                             getattr(v.init, "loc", None) or v.loc)
                if isinstance(v.type, Int) and (isinstance(v.init, A.IntLit) or (
                        isinstance(v.init, A.Unary) and v.init.op == "-"
                        and isinstance(v.init.arg, A.IntLit))):
                    c = self.const_value(v.init)
                    if not v.type.lo <= c <= v.type.hi:
                        self.err(f"initial value {c} of {v.name} is outside {v.type}",
                                 getattr(v.init, "loc", None) or v.loc,
                                 f"a value in {v.type}")
        for name, ps in m.procs.items():
            sig = [x.domain for x in ps[0].params]
            for p in ps:
                if [x.domain for x in p.params] != sig:
                    self.err(f"variants of proc {name} have different parameters", p.loc,
                             f"({', '.join(sig)})")
                self._params(p.params)
                self.stmts(p.body, {x.name: Dom(x.domain) for x in p.params}, {})
        for a in m.actions:
            self._params(a.params)
            self.stmts(a.body, {x.name: Dom(x.domain) for x in a.params}, {})
        for t in m.threads:
            labels = {st.label for st in t.steps}
            if len(labels) != len(t.steps):
                self.err(f"thread {t.name} has a label twice", t.loc)
            for st in t.steps:
                self.stmts(st.body, {}, {"labels": labels})
        for i in m.inits:
            self.stmts(i.body, {}, {})
        for inv in m.invariants:
            self._want_bool(self.expr(inv.cond, {}), inv.cond)
        for ob in m.observes.values():
            self._params(ob.params)
            self.expr(ob.value, {x.name: Dom(x.domain) for x in ob.params})
        for eq in m.equivs:
            for o in eq.observables:
                if o not in m.observes:
                    self.err(f"unknown observable {o!r}", eq.loc, "a declared observe")
            if eq.after is not None and not any(a.name == eq.after for a in m.actions):
                self.err(f"unknown action {eq.after!r}", eq.loc, "a declared action")
        # at most one variant of a proc / action / thread per era
        for era in ERAS:
            seen = {}
            for a in m.actions_at(era):
                if a.name in seen:
                    self.err(f"two variants of action {a.name} apply to era {era.value}", a.loc,
                             "disjoint 'when kernel in' conditions")
                seen[a.name] = a
            for name in m.procs:
                ps = m.procs_at(name, era)
                if len(ps) > 1:
                    self.err(f"two variants of proc {name} apply to era {era.value}", ps[1].loc,
                             "disjoint 'when kernel in' conditions")
            ts = {}
            for t in m.threads_at(era):
                if t.name in ts:
                    self.err(f"two variants of thread {t.name} apply to era {era.value}", t.loc)
                ts[t.name] = t

    def _params(self, params):
        names = set()
        for p in params:
            if p.domain not in self.m.domains:
                self.err(f"unknown domain {p.domain!r}", p.loc, "a declared domain")
            if p.name in names:
                self.err(f"parameter {p.name!r} twice", p.loc)
            names.add(p.name)


def _first_loc(e):
    for v in getattr(e, "__dict__", {}).values():
        loc = getattr(v, "loc", None)
        if loc is not None:
            return loc
    return None


def build_model(name: str, files, mutant_files=()) -> Model:
    """Merge the declarations of ``files`` (all ``model NAME``) and apply mutant overlays."""
    m = Model(name)
    decls = []
    for f in files:
        m.files.append(f.path)
        decls.extend(d for d in f.decls if not isinstance(d, (A.ModelDecl, A.MutantDecl)))
    for f in mutant_files:
        mdecl = next(d for d in f.decls if isinstance(d, A.MutantDecl))
        m.mutant = mdecl
        decls = apply_overlay(decls, [d for d in f.decls if not isinstance(d, A.MutantDecl)])
    ck = Checker(m)
    ck.declare(decls)
    ck.check_all()
    m.width = word_width(m)
    return m


# ----------------------------------------------------------------------------- word width

MAX_WIDTH = 24


def word_width(m: Model) -> int:
    """The bits of the two's-complement word every int of ``m`` is computed in: enough
    for every declared range, domain code, literal, ``count`` and every ``+``/``-`` of
    in-range operands (interval analysis over every expression).  A step whose arithmetic
    leaves the word anyway (a cell already out of its range within the step) is a
    ``bounds`` violation in both engines, never a silent wrap."""
    w = _Widths(m)
    w.run()
    width = max(2, w.mag.bit_length() + 1)
    if width > MAX_WIDTH:
        raise InputError(f"values up to {w.mag} need {width}-bit words", w.where,
                         f"ranges and literals within +-{(1 << (MAX_WIDTH - 1)) - 1}")
    return width


class _Widths:
    def __init__(self, m: Model):
        self.m = m
        self.mag = 1
        self.where = None

    def see(self, r, loc=None):
        if r is not None:
            big = max(abs(r[0]), abs(r[1]))
            if big > self.mag:
                self.mag, self.where = big, loc or self.where
        return r

    def of_type(self, t):
        if isinstance(t, Int) and t.lo is not None:
            return (t.lo, t.hi)
        if isinstance(t, Dom):
            enc = self.m.domains[t.name].encodings()
            return (min(enc), max(enc))
        return None

    def dom(self, name):
        enc = self.m.domains[name].encodings()
        return (min(enc), max(enc))

    def run(self):
        m = self.m
        for d in m.domains.values():
            self.see(self.dom(d.name))
        for name, (t, v) in m.consts.items():
            if not isinstance(t, Bool):
                self.see((v, v))
        for v in m.vars.values():
            self.see(self.of_type(v.type), v.loc)
            if v.init is not None:
                self.expr(v.init, {})
        for ps in m.procs.values():
            for p in ps:
                self.body(p.body, {x.name: self.dom(x.domain) for x in p.params})
        for a in m.actions:
            self.body(a.body, {x.name: self.dom(x.domain) for x in a.params})
        for t in m.threads:
            self.see((0, len(t.steps)), t.loc)
            for st in t.steps:
                self.body(st.body, {})
        for i in m.inits:
            self.body(i.body, {})
        for inv in m.invariants:
            self.expr(inv.cond, {})
        for ob in m.observes.values():
            self.expr(ob.value, {x.name: self.dom(x.domain) for x in ob.params})

    def body(self, stmts, scope):
        scope = dict(scope)
        for s in stmts:
            if isinstance(s, A.Assign):
                for a in s.index or ():
                    self.expr(a, scope)
                self.expr(s.value, scope)
            elif isinstance(s, (A.Require, A.Assert)):
                self.expr(s.cond, scope)
            elif isinstance(s, A.Let):
                scope[s.name] = self.expr(s.value, scope)
            elif isinstance(s, A.If):
                for c, b in s.arms:
                    self.expr(c, scope)
                    self.body(b, scope)
                if s.other is not None:
                    self.body(s.other, scope)
            elif isinstance(s, A.Either):
                for b in s.arms:
                    self.body(b, scope)
            elif isinstance(s, A.Choose):
                for b in s.binders:
                    scope[b.name] = self.dom(b.domain)
                if s.where is not None:
                    self.expr(s.where, scope)
            elif isinstance(s, A.Foreach):
                inner = dict(scope)
                for b in s.binders:
                    inner[b.name] = self.dom(b.domain)
                self.body(s.body, inner)
            elif isinstance(s, A.Call):
                for a in s.args:
                    self.expr(a, scope)

    def expr(self, e, scope):
        """The interval of an int expression (None: a bool), recording its magnitude."""
        m = self.m
        loc = getattr(e, "loc", None)
        if isinstance(e, A.IntLit):
            return self.see((e.value, e.value), loc)
        if isinstance(e, (A.BoolLit, A.KernelIn, A.KernelHas)):
            return None
        if isinstance(e, A.Name):
            if e.id in scope:
                return scope[e.id]
            if e.id in m.consts:
                t, v = m.consts[e.id]
                return None if isinstance(t, Bool) else (v, v)
            if e.id in m.enum_values:
                c = m.enum_values[e.id][1]
                return (c, c)
            return self.of_type(m.vars[e.id].type)
        if isinstance(e, A.Index):
            for a in e.args:
                self.expr(a, scope)
            if e.name in m.observes:
                ob = m.observes[e.name]
                return self.expr(ob.value, {p.name: self.dom(p.domain) for p in ob.params})
            return self.of_type(m.vars[e.name].type)
        if isinstance(e, A.Unary):
            r = self.expr(e.arg, scope)
            if e.op == "not" or r is None:
                return None
            return self.see((-r[1], -r[0]), loc)
        if isinstance(e, A.Binary):
            a, b = self.expr(e.left, scope), self.expr(e.right, scope)
            if e.op == "+" and a and b:
                return self.see((a[0] + b[0], a[1] + b[1]), loc)
            if e.op == "-" and a and b:
                return self.see((a[0] - b[1], a[1] - b[0]), loc)
            return None
        if isinstance(e, A.Ite):
            self.expr(e.cond, scope)
            a, b = self.expr(e.then, scope), self.expr(e.other, scope)
            if a and b:
                return (min(a[0], b[0]), max(a[1], b[1]))
            return a or b
        if isinstance(e, A.Quant):
            inner = dict(scope)
            n = 1
            for b in e.binders:
                inner[b.name] = self.dom(b.domain)
                n *= m.domains[b.domain].size
            self.expr(e.body, inner)
            return self.see((0, n), loc) if e.kind == "count" else None
        return None


def _key(d):
    if isinstance(d, (A.ProcDecl, A.ActionDecl, A.ThreadDecl)):
        return (type(d).__name__, d.name, str(d.when))
    if isinstance(d, A.InvariantDecl):
        return None
    return None


def apply_overlay(decls, overlay):
    """A mutant overlay replaces, by kind, name and `when`, the procs, actions and threads it
    redefines; ``step T.L`` replaces one labelled step of thread T; other declarations
    (new procs, vars, invariants) are added."""
    decls = list(decls)
    for od in overlay:
        if isinstance(od, A.StepDecl):
            hit = False
            for i, d in enumerate(decls):
                if isinstance(d, A.ThreadDecl) and d.name == od.thread and \
                        (od.when is None or str(od.when) == str(d.when)):
                    steps = list(d.steps)
                    for j, st in enumerate(steps):
                        if st.label == od.label:
                            steps[j] = A.ThreadStep(st.label, od.body, loc=od.loc)
                            hit = True
                    decls[i] = A.ThreadDecl(d.name, d.when, tuple(steps), loc=d.loc)
            if not hit:
                raise InputError(f"no step {od.thread}.{od.label} to replace", od.loc,
                                 "a labelled step of a thread of the base model")
            continue
        k = _key(od)
        if k is not None:
            idx = [i for i, d in enumerate(decls) if _key(d) == k]
            if not idx:
                raise InputError(f"the mutant redefines {k[1]} (when {k[2]}), which the base "
                                 "model does not define", od.loc,
                                 "the name and 'when' of a base declaration")
            decls[idx[0]] = od
            continue
        if isinstance(od, A.ModelDecl):
            continue
        decls.append(od)
    return decls
