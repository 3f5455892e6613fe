"""User constraints of ``ksmdiff generate``: which situations the generated scenarios must
show (docs/constraints.md).

A constraint is a kspec expression (the spec's own syntax, grammars/kspec.lark) behind an
anchor saying which state of the trace it holds in::

    at LABEL: EXPR        the state before a step that fires LABEL (a branch label or an
                          action name); the action's parameters (p, v, ...) are bound
    after LABEL: EXPR     the state after such a step
    eventually EXPR       some state of the trace
    finally EXPR          the last state
    always EXPR           every state
    EXPR                  trace counts only (generate.toml [constraints.counts]), e.g.
                          ``processes == 3``: a count is its largest value on the trace

Each constraint is checked against the spec's declared names and types, then compiled
twice: into a predicate over the explicit engine's states (the beam search steers by it
and keeps only traces that satisfy every constraint) and into a Z3 formula over the
compiled transition system's unrolling (the confirmation query), so a returned scenario
provably has an execution of the spec that satisfies it.
"""

from __future__ import annotations

import enum
import functools
import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import lark
import z3

from ksmdiff.errors import InputError, Location
from ksmdiff.internal.grammar import TERMINAL_WORDS, decode_source, grammar_dir
from ksmdiff.kspec.internal import ast as A
from ksmdiff.kspec.internal.check import INT, Checker, Dom
from ksmdiff.kspec.internal.explicit import _World
from ksmdiff.kspec.internal.parse import _Build
from ksmdiff.versions import Era

MAX_FILE_BYTES = 1 << 16
KSPEC_PREFIX = "kspec__"          # lark's namespace for the rules imported from kspec.lark
ANCHOR_WORDS = "at LABEL:, after LABEL:, eventually, finally or always"


class Anchor(enum.Enum):
    AT = "at"                   # the state before a step firing the label
    AFTER = "after"             # the state after it
    EVENTUALLY = "eventually"
    FINALLY = "finally"
    ALWAYS = "always"
    TRACE = "trace"             # counts over the whole trace


@dataclass(frozen=True)
class Constraint:
    anchor: Anchor
    expr: object                # kspec AST expression
    text: str                   # as the user wrote it (for headers and reports)
    loc: Location
    label: Optional[str] = None
    label_loc: Optional[Location] = None
    binds: tuple = ()           # (name, domain) bound by the anchoring step


# ----------------------------------------------------------------------------- parsing

def _grammar_dir() -> Path:
    return grammar_dir("constraint")


@functools.lru_cache(maxsize=None)
def _parser() -> lark.Lark:
    d = _grammar_dir()
    return lark.Lark((d / "constraint.lark").read_text(), parser="lalr", lexer="contextual",
                     propagate_positions=True, maybe_placeholders=False,
                     import_paths=[str(d)])


def _words(names) -> str:
    by_name = {t.name: t for t in _parser().terminals}
    words = set()
    for n in names:
        base = n[len(KSPEC_PREFIX):] if n.startswith(KSPEC_PREFIX) else n
        if base in TERMINAL_WORDS:
            words.add(TERMINAL_WORDS[base])
        elif n in by_name and isinstance(by_name[n].pattern, lark.lexer.PatternStr):
            words.add(repr(by_name[n].pattern.value))
        else:
            words.add(base.lower())
    words = sorted(words)
    if len(words) > 12:
        words = words[:12] + ["..."]
    return " or ".join(words) if len(words) < 3 else "one of " + ", ".join(words)


def _loc(source: str, line: int, col: int) -> Location:
    return Location(source, line, col)


def _syntax_error(err, source) -> InputError:
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        return InputError(f"unexpected character {err.char!r}",
                          _loc(source, err.line, err.column),
                          _words(err.allowed or ()))
    if isinstance(err, lark.exceptions.UnexpectedToken):
        tok = err.token
        what = ("unexpected end of the constraint" if tok.type == "$END"
                else f"unexpected {str(tok)!r}")
        line = getattr(tok, "line", None) or err.line or 1
        col = getattr(tok, "column", None) or err.column or 1
        if line == -1 or col == -1:
            line, col = 1, 1
        return InputError(what, _loc(source, line, col), _words(err.expected or ()))
    if isinstance(err, lark.exceptions.UnexpectedEOF):
        return InputError("unexpected end of the constraint", Location(source, 1, 1),
                          _words(err.expected or ()))
    return InputError(str(err), Location(source, 1, 1))


def parse_constraints(text: str | bytes, source: str = "<constraints>") -> list[Constraint]:
    """Constraints of ``text`` (syntax only: :func:`check_constraints` checks names)."""
    text = decode_source(text, source, MAX_FILE_BYTES)
    try:
        tree = _parser().parse(text)
    except lark.exceptions.LarkError as err:
        raise _syntax_error(err, source) from None
    for t in tree.iter_subtrees():
        if isinstance(t.data, str) and t.data.startswith(KSPEC_PREFIX):
            t.data = type(t.data)(t.data[len(KSPEC_PREFIX):]) \
                if isinstance(t.data, lark.Token) else t.data[len(KSPEC_PREFIX):]
    build = _Build(source)
    lines = text.split("\n")
    out = []
    for node in tree.children:
        kind = node.data
        m = node.meta
        snippet = _span(lines, m)
        loc = Location(source, m.line, m.column)
        try:
            if kind in ("at_step", "after_step"):
                lab = node.children[0]
                e = build.transform(node.children[1])
                out.append(Constraint(Anchor.AT if kind == "at_step" else Anchor.AFTER, e,
                                      snippet, loc, str(lab),
                                      Location(source, lab.line, lab.column)))
            else:
                sub = node.children[0]
                e = build.transform(sub)
                anchor = {"eventually": Anchor.EVENTUALLY, "finally_": Anchor.FINALLY,
                          "always": Anchor.ALWAYS, "trace": Anchor.TRACE}[kind]
                out.append(Constraint(anchor, e, snippet, loc))
        except lark.exceptions.VisitError as err:
            if isinstance(err.orig_exc, InputError):
                raise err.orig_exc from None
            raise
    return out


def _span(lines, meta) -> str:
    if meta.line == meta.end_line:
        s = lines[meta.line - 1][meta.column - 1: meta.end_column - 1]
    else:
        s = " ".join([lines[meta.line - 1][meta.column - 1:]] +
                     [x.strip() for x in lines[meta.line: meta.end_line - 1]] +
                     [lines[meta.end_line - 1][: meta.end_column - 1].strip()])
    return " ".join(s.split())


def parse_where(text: str, index: int = 1) -> list[Constraint]:
    """One ``--where`` argument: errors name it and the column."""
    return parse_constraints(text, f"--where #{index}")


def load_constraints(path) -> list[Constraint]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", Location(str(p), 1, 1)) from None
    return parse_constraints(data, str(p))


# ----------------------------------------------------------------------------- checking

@dataclass
class Counts:
    """Trace counts (generate.toml [constraints.counts]): name -> kspec expression whose
    largest value on the trace the name stands for."""
    exprs: dict = field(default_factory=dict)

    @staticmethod
    def load(path: Optional[Path] = None) -> "Counts":
        from ksmdiff.gen.specmap import CONFIG_NAME
        from ksmdiff.kspec import spec_dir
        path = Path(path) if path is not None else spec_dir() / CONFIG_NAME
        data = tomllib.loads(path.read_text())
        out = Counts()
        for name, text in data.get("constraints", {}).get("counts", {}).items():
            cs = parse_constraints(text, f"{path}:constraints.counts.{name}")
            if len(cs) != 1 or cs[0].anchor is not Anchor.TRACE:
                raise InputError(f"constraints.counts.{name}: not one expression",
                                 Location(str(path), 1, 1), "a kspec int expression")
            out.exprs[name] = cs[0].expr
        return out


def _firing_actions(model) -> dict:
    """label -> {action name -> params} for every era (a label fires in an action when
    the action's body, through its calls, takes the branch)."""
    from ksmdiff.kspec.internal.check import ERAS, _substmts
    out: dict = {}
    for era in ERAS:
        for act in model.actions_at(era):
            seen = set()

            def walk(stmts, depth=0):
                for s in stmts:
                    if isinstance(s, A.BranchLabel):
                        out.setdefault(s.name, {})[act.name] = act.params
                    if isinstance(s, A.Call) and depth < 20 and s.name not in seen:
                        seen.add(s.name)
                        for p in model.procs_at(s.name, era):
                            walk(p.body, depth + 1)
                    for sub in _substmts(s):
                        walk(sub, depth)
            walk(act.body)
    return out


def _binds(model, label: str, loc) -> tuple:
    firing = _firing_actions(model)
    actions = {a.name: a.params for a in model.actions}
    if label in actions:
        return tuple((p.name, p.domain) for p in actions[label])
    if label not in firing:
        labels = sorted(firing)
        raise InputError(f"unknown label or action {label!r}", loc,
                         "a branch label of the spec (" + ", ".join(labels) +
                         ") or an action (" + ", ".join(sorted(actions)) + ")")
    common = None
    for params in firing[label].values():
        ps = {(p.name, p.domain) for p in params}
        common = ps if common is None else common & ps
    order = [(p.name, p.domain) for ps in firing[label].values() for p in ps]
    return tuple(x for x in dict.fromkeys(order) if x in (common or set()))


def _names(e):
    if isinstance(e, A.Name):
        yield e
    elif isinstance(e, A.Index):
        yield e
        for a in e.args:
            yield from _names(a)
    elif isinstance(e, A.Unary):
        yield from _names(e.arg)
    elif isinstance(e, A.Binary):
        yield from _names(e.left)
        yield from _names(e.right)
    elif isinstance(e, A.Ite):
        for x in (e.cond, e.then, e.other):
            yield from _names(x)
    elif isinstance(e, A.Quant):
        yield from _names(e.body)


def check_constraints(model, constraints, counts: Optional[Counts] = None) -> list[Constraint]:
    """Name and type check against ``model``; returns the constraints with their bound
    parameters filled in."""
    counts = counts or Counts()
    ck = Checker(model)
    out = []
    for c in constraints:
        if c.anchor is Anchor.TRACE:
            for n in _names(c.expr):
                nm = n.id if isinstance(n, A.Name) else n.name
                if nm in counts.exprs:
                    continue
                if nm in model.vars or nm in model.observes:
                    raise InputError(f"{nm!r} is spec state: say in which state it holds",
                                     n.loc, f"an anchor before the expression ({ANCHOR_WORDS})")
                raise InputError(f"unknown name {nm!r}", n.loc,
                                 "a trace count (" + ", ".join(sorted(counts.exprs)) +
                                 f") or an anchored spec expression ({ANCHOR_WORDS})")
            scope = {k: INT for k in counts.exprs}
            ck._want_bool(ck.expr(c.expr, scope), c.expr)
            out.append(c)
            continue
        binds = ()
        if c.anchor in (Anchor.AT, Anchor.AFTER):
            binds = _binds(model, c.label, c.label_loc)
        scope = {n: Dom(d) for n, d in binds}
        for n in _names(c.expr):
            nm = n.id if isinstance(n, A.Name) else n.name
            if nm in counts.exprs and nm not in scope and nm not in model.vars:
                raise InputError(f"{nm!r} is a trace count: give it as a constraint of its "
                                 f"own", n.loc, f"'{nm} == N' without an anchor")
        try:
            t = ck.expr(c.expr, scope)
        except InputError as e:
            if c.anchor in (Anchor.AT, Anchor.AFTER) and "unknown name" in e.message:
                bound = ", ".join(f"{n}: {d}" for n, d in binds) or "none"
                raise InputError(e.message, e.location,
                                 f"{e.expected} (the step of {c.label} binds {bound})") from None
            raise
        ck._want_bool(t, c.expr)
        out.append(Constraint(c.anchor, c.expr, c.text, c.loc, c.label, c.label_loc, binds))
    return out


def symmetric_in(model, constraints, domain: str) -> bool:
    """False when a constraint names a value of ``domain`` by a literal (then states may
    not be identified up to a renaming of that domain's values)."""
    ck = Checker(model)

    def lit(e):
        return isinstance(e, A.IntLit) or (isinstance(e, A.Unary) and isinstance(e.arg, A.IntLit))

    def walk(e, scope):
        if isinstance(e, A.Index) and e.name in model.vars:
            for k, a in zip(model.vars[e.name].keys, e.args):
                if k == domain and lit(a):
                    return False
        if isinstance(e, A.Index) and e.name in model.observes:
            for p, a in zip(model.observes[e.name].params, e.args):
                if p.domain == domain and lit(a):
                    return False
        if isinstance(e, A.Binary) and e.op in ("==", "!=", "<", "<=", ">", ">="):
            for x, y in ((e.left, e.right), (e.right, e.left)):
                if lit(y):
                    try:
                        if ck.expr(x, scope) == Dom(domain):
                            return False
                    except InputError:
                        pass
        if isinstance(e, A.Quant):
            scope = dict(scope, **{b.name: Dom(b.domain) for b in e.binders})
        for sub in _children(e):
            if not walk(sub, scope):
                return False
        return True
    return all(walk(c.expr, {n: Dom(d) for n, d in c.binds}) for c in constraints)


def _children(e):
    if isinstance(e, A.Index):
        return e.args
    if isinstance(e, A.Unary):
        return (e.arg,)
    if isinstance(e, A.Binary):
        return (e.left, e.right)
    if isinstance(e, A.Ite):
        return (e.cond, e.then, e.other)
    if isinstance(e, A.Quant):
        return (e.body,)
    return ()


# ----------------------------------------------------------------------------- explicit

class Tracker:
    """The constraints over the explicit engine's states: a trace's progress is a tuple
    (per constraint: satisfied so far; per count: its largest value so far)."""

    def __init__(self, world, constraints, counts: Counts):
        self.world = world
        self.mc = world.mc
        self.cs = list(constraints)
        self.counts = counts
        self.count_names = sorted({n.id for c in self.cs if c.anchor is Anchor.TRACE
                                   for n in _names(c.expr) if isinstance(n, A.Name)
                                   and n.id in counts.exprs})
        self.labels = set()
        for _era, _owner, lab in world.model.branch_labels():
            self.labels.add(lab)
        self.actions = {a.name for a in world.model.actions_at(world.era)}

    def missing_labels(self, era_labels) -> list[Constraint]:
        """Anchoring labels the era has no branch (nor action) of."""
        return [c for c in self.cs if c.anchor in (Anchor.AT, Anchor.AFTER)
                and c.label not in era_labels and c.label not in self.actions]

    def _ev(self, e, st, scope=None):
        return self.mc.ev(e, _World(st, dict(scope or {})))

    def _counts(self, st):
        return tuple(self._ev(self.counts.exprs[n], st) for n in self.count_names)

    def start(self, state: tuple) -> tuple:
        st = self.mc.unpack(state)
        if not self.state_ok(st):
            return None
        return self._mark(st, (False,) * len(self.cs), self._counts(st))

    def state_ok(self, st) -> bool:
        return all(self._ev(c.expr, st) for c in self.cs if c.anchor is Anchor.ALWAYS)

    def _mark(self, st, done, cmax):
        done = list(done)
        for i, c in enumerate(self.cs):
            if c.anchor is Anchor.EVENTUALLY and not done[i] and self._ev(c.expr, st):
                done[i] = True
        return (tuple(done), cmax)

    def step(self, prog, inst, labels, before: dict, after: dict):
        """The progress after a step (None: an ``always`` constraint fails after it)."""
        if not self.state_ok(after):
            return None
        done = list(prog[0])
        scope = {p: c for p, _d, c in inst.args}
        fired = set(labels) | {inst.name}
        for i, c in enumerate(self.cs):
            if done[i] or c.anchor not in (Anchor.AT, Anchor.AFTER) or c.label not in fired:
                continue
            sc = {n: scope[n] for n, _d in c.binds}
            if self._ev(c.expr, before if c.anchor is Anchor.AT else after, sc):
                done[i] = True
        cmax = tuple(max(a, b) for a, b in zip(prog[1], self._counts(after)))
        return self._mark(after, done, cmax)

    def satisfied(self, prog, last: dict) -> bool:
        if not all(d for c, d in zip(self.cs, prog[0])
                   if c.anchor in (Anchor.AT, Anchor.AFTER, Anchor.EVENTUALLY)):
            return False
        if not all(self._ev(c.expr, last) for c in self.cs if c.anchor is Anchor.FINALLY):
            return False
        scope = dict(zip(self.count_names, prog[1]))
        return all(self._ev(c.expr, {}, scope) for c in self.cs if c.anchor is Anchor.TRACE)

    def score(self, prog) -> int:
        return sum(prog[0])

    def replay(self, steps) -> bool:
        """Does some execution of the spec along ``steps`` (every choice explored)
        satisfy every constraint?"""
        from ksmdiff.gen.specmap import labels_of
        w = self.world
        runs = []
        for s0 in self.mc.initial():
            p = self.start(s0)
            if p is not None:
                runs.append((s0, p))
        for n in steps:
            inst = self.mc.instances[n]
            nxt = []
            for s, p in runs:
                before = self.mc.unpack(s)
                for picks, t in w.step(s, n):
                    q = self.step(p, inst, labels_of(picks), before, self.mc.unpack(t))
                    if q is not None:
                        nxt.append((t, q))
            runs = list(dict.fromkeys(nxt))
        return any(self.satisfied(p, self.mc.unpack(s)) for s, p in runs)


# ----------------------------------------------------------------------------- Z3

def _z3_expr(ts, e, scope_codes: dict, extra: Optional[dict] = None):
    """``e`` over the compiled system's current state (``ts.cur``)."""
    from ksmdiff.kspec.internal.compile import IV, _Acc, _Env, _Exec
    ex = _Exec(ts, _Acc(steps=False), "constraint")
    scope = {n: IV(c, ts.width) for n, c in scope_codes.items()}
    scope.update(extra or {})
    return ex.ev(e, _Env(dict(ts.cur), scope, z3.BoolVal(True)))


def z3_constraints(ts, u, depth: int, constraints, counts: Counts) -> list:
    """The constraints over the unrolling ``u`` of ``depth`` steps (states 0..depth)."""
    out = []
    nxt_pairs = [(ts.cur[k], u.nxt[k]) for k in ts.keys]
    for c in constraints:
        if c.anchor is Anchor.EVENTUALLY:
            e = _z3_expr(ts, c.expr, {})
            out.append(z3.Or([u.at(e, t) for t in range(depth + 1)]))
        elif c.anchor is Anchor.ALWAYS:
            e = _z3_expr(ts, c.expr, {})
            out.append(z3.And([u.at(e, t) for t in range(depth + 1)]))
        elif c.anchor is Anchor.FINALLY:
            out.append(u.at(_z3_expr(ts, c.expr, {}), depth))
        elif c.anchor in (Anchor.AT, Anchor.AFTER):
            per_inst = []
            for i, inst in enumerate(ts.instances):
                if inst.name == c.label:
                    fires = z3.BoolVal(True)
                else:
                    parts = [v for (_o, name), v in inst.labels.items() if name == c.label]
                    if not parts:
                        continue
                    fires = z3.Or(parts)
                codes = {p: code for p, _d, code in inst.args}
                e = _z3_expr(ts, c.expr, {n: codes[n] for n, _d in c.binds})
                if c.anchor is Anchor.AFTER:
                    e = z3.substitute(e, *nxt_pairs)
                per_inst.append(z3.And(ts.sel == i, fires, e))
            if not per_inst:
                out.append(z3.BoolVal(False))
                continue
            f = z3.Or(per_inst)
            out.append(z3.Or([u.step_expr(f, t) for t in range(depth)]) if depth
                       else z3.BoolVal(False))
        elif c.anchor is Anchor.TRACE:
            extra = {}
            for n in {x.id for x in _names(c.expr) if isinstance(x, A.Name)}:
                if n not in counts.exprs:
                    continue
                e = _z3_expr(ts, counts.exprs[n], {})
                vals = [u.at(e, t) for t in range(depth + 1)]
                m = vals[0]
                for v in vals[1:]:
                    m = z3.If(v > m, v, m)
                extra[n] = m
            out.append(_z3_expr(ts, c.expr, {}, extra))
    return out


def confirm_constrained(model, era: Era, steps, constraints, counts: Counts) -> bool:
    """Z3: the compiled model runs exactly ``steps`` from its initial state along an
    execution that satisfies every constraint."""
    from ksmdiff.gen.confirm import _check
    from ksmdiff.kspec.internal.tscache import compiled as _compiled
    from ksmdiff.kspec.internal.prove import Unroller
    ts = _compiled(model, era)
    u = Unroller(ts)
    d = len(steps)
    cons = [u.init(), u.at(ts.types, 0)] + [u.step(t) for t in range(d)]
    cons += [u.sel(t) == n for t, n in enumerate(steps)]
    cons += z3_constraints(ts, u, d, constraints, counts)
    return _check(cons)


def impossible(model, era: Era, constraints, counts: Counts) -> list[tuple[Constraint, str]]:
    """The constraints no execution of any length satisfies, each with why: no state
    satisfying the model's invariants (which ``ksmdiff prove`` proves inductive) has it."""
    from ksmdiff.gen.confirm import _check
    from ksmdiff.kspec.internal.tscache import compiled as _compiled
    from ksmdiff.kspec.internal.prove import Unroller
    ts = _compiled(model, era)
    invs = list(ts.invariants.values())
    out = []
    for c in constraints:
        u = Unroller(ts)
        base = [u.at(ts.types, 0)] + [u.at(i, 0) for i in invs]
        if c.anchor in (Anchor.EVENTUALLY, Anchor.FINALLY, Anchor.ALWAYS):
            f = z3_constraints(ts, u, 0, [c], counts)
            if c.anchor is Anchor.ALWAYS:
                f = [u.init()] + f        # the initial state is one of "every state"
            if not _check(base + f):
                what = ("the initial state" if c.anchor is Anchor.ALWAYS
                        else "no state satisfying the model's invariants")
                out.append((c, f"{what} has it"))
        elif c.anchor in (Anchor.AT, Anchor.AFTER):
            f = z3_constraints(ts, u, 1, [c], counts)
            if not _check(base + [u.step(0)] + f):
                out.append((c, f"no step from a state satisfying the model's invariants "
                               f"fires {c.label} with it"))
        elif c.anchor is Anchor.TRACE:
            names = sorted({x.id for x in _names(c.expr) if isinstance(x, A.Name)})
            values = {}
            for n in names:
                e = _z3_expr(ts, counts.exprs[n], {})
                vs = []
                for k in range(0, 1 << (ts.width - 1)):
                    if _check(base + [u.at(e == k, 0)]):
                        vs.append(k)
                values[n] = vs
            ok = False
            for combo in itertools.product(*[values[n] for n in names]):
                w = _World({}, dict(zip(names, combo)))
                if _ev_plain(model, c.expr, w):
                    ok = True
                    break
            if not ok:
                shown = "; ".join(f"{n} is one of {values[n]}" for n in names)
                out.append((c, f"in every state satisfying the model's invariants {shown}"))
    return out


def _ev_plain(model, e, w):
    """Evaluate a trace expression (ints and counts only)."""
    if isinstance(e, A.IntLit):
        return e.value
    if isinstance(e, A.BoolLit):
        return e.value
    if isinstance(e, A.Name):
        if e.id in w.scope:
            return w.scope[e.id]
        return model.consts[e.id][1]
    if isinstance(e, A.Unary):
        a = _ev_plain(model, e.arg, w)
        return (not a) if e.op == "not" else -a
    if isinstance(e, A.Binary):
        a, b = _ev_plain(model, e.left, w), _ev_plain(model, e.right, w)
        if e.op == "and":
            return bool(a) and bool(b)
        if e.op == "or":
            return bool(a) or bool(b)
        if e.op == "=>":
            return (not a) or bool(b)
        return A.ARITH[e.op](a, b)
    if isinstance(e, A.Ite):
        return _ev_plain(model, e.then if _ev_plain(model, e.cond, w) else e.other, w)
    raise InputError("a trace constraint holds counts, numbers and operators only",
                     getattr(e, "loc", None))


# ----------------------------------------------------------------------------- search

GOAL = "constraints"            # the witnesses' label: every constraint holds


@dataclass
class Found:
    witnesses: list             # [search.Witness]
    states: int
    complete: bool              # every state within the bound was visited (no beam cut)
    dropped: int = 0            # witnesses of renamed states that the replay refuted


def search_constrained(world, tracker: Tracker, *, wanted: int, bound: int, seed: int,
                       beam: Optional[int], symmetric: bool = True,
                       allowed: Optional[set] = None) -> Found:
    """The beam search of search.py over (state, progress) pairs: states closer to
    satisfying every constraint first, then novel shapes, then the seed's order.  A trace
    is a witness when its last state completes every constraint (and the replay through
    every choice confirms it); ``beam=None`` visits every state."""
    import random

    from ksmdiff.gen.search import RARE, Witness, _diversity_key, _shape, _Symmetry
    from ksmdiff.gen.specmap import choices_of, labels_of
    rng = random.Random(seed)
    mc = world.mc
    sym = _Symmetry(world, ["Frame"] if symmetric and "Frame" in world.model.domains else [])
    parent = {}
    frontier = []
    for s0 in mc.initial():
        p = tracker.start(s0)
        if p is not None:
            node = (sym.canon(s0), p)
            parent.setdefault(node, None)
            frontier.append(node)
    order = [n for n in range(len(mc.instances)) if allowed is None or n in allowed]
    wit, keys, shapes = [], set(), set()
    dropped = 0
    complete = True
    fired: dict = {}

    def path(node):
        steps, picks = [], []
        while parent[node] is not None:
            prev, n, pk = parent[node]
            steps.append(n)
            picks.append(pk)
            node = prev
        return steps[::-1], picks[::-1]

    for _depth in range(bound):
        if not frontier or len(wit) >= wanted:
            break
        scored = []
        for node in frontier:
            s, prog = node
            before = mc.unpack(s)
            rng.shuffle(order)
            for n, picks, t in world.steps(s, order):
                if not mc._in_range(mc.unpack(t)):
                    continue
                after = mc.unpack(t)
                labs = labels_of(picks)
                for lab in labs:
                    fired[lab] = fired.get(lab, 0) + 1
                q = tracker.step(prog, mc.instances[n], labs, before, after)
                if q is None:
                    continue
                pk = tuple(choices_of(picks).items())
                if tracker.satisfied(q, after) and len(wit) < wanted:
                    steps, pks = path(node)
                    w = Witness(GOAL, tuple(steps) + (n,), tuple(pks) + (pk,))
                    key = _diversity_key(world, w)
                    if key not in keys:
                        if tracker.replay(w.steps):
                            keys.add(key)
                            wit.append(w)
                        else:
                            dropped += 1
                nxt = (sym.canon(t), q)
                if nxt in parent:
                    continue
                parent[nxt] = (node, n, pk)
                sh = (_shape(world, mc.unpack(nxt[0]), sym.frame_vars), q)
                novel = sh not in shapes
                shapes.add(sh)
                rare = any(fired[lab] <= RARE for lab in labs)
                scored.append((-tracker.score(q), 0 if rare else 1, 0 if novel else 1,
                               rng.random(), nxt))
        scored.sort(key=lambda x: x[:4])
        if beam is not None and len(scored) > beam:
            complete = False
            scored = scored[:beam]
        frontier = [x[4] for x in scored]
    return Found(wit, len(parent), complete, dropped)


# ----------------------------------------------------------------------------- generate

def generate_constrained(eras, constraints, *, counts: Optional[Counts] = None,
                         wanted: int = 3, seed: int = 0, bound: int = 10, beam: int = 200,
                         model=None, exhaustive_depth: int = 4, expect_eras=None,
                         progress=None, confirm: bool = True):
    """``ksmdiff generate --where``: up to ``wanted`` scenarios per era whose spec
    execution satisfies every constraint, each confirmed by Z3 with the constraints in the
    query; or why there is none (with the bound searched, or proved at any depth)."""
    import time

    from ksmdiff.gen.canon import canonical_hash
    from ksmdiff.gen.confirm import Reach
    from ksmdiff.gen.generate import (ERA_VERSION, Generated, Generation, LabelReport,
                                      scenario_text, supported_instances)
    from ksmdiff.gen.search import _era_labels
    from ksmdiff.gen.specmap import world_for
    t0 = time.monotonic()
    counts = counts if counts is not None else Counts.load()
    gen = Generation()
    expect_eras = list(expect_eras or eras)
    seen = set()
    shown = [c.text for c in constraints]
    for era in eras:
        world = world_for(era, model)
        cs = check_constraints(world.model, constraints, counts)
        worlds = {e: world_for(e, model) for e in expect_eras}
        tracker = Tracker(world, cs, counts)
        rep = LabelReport(era, GOAL, Reach.NOT_REACHED)
        gen.labels.append(rep)
        missing = tracker.missing_labels(set(_era_labels(world)))
        if missing:
            rep.status = Reach.UNREACHABLE
            rep.why = ("unsatisfiable at any depth: " + "; ".join(
                f"{c.loc}: era {era.value} has no branch {c.label}" for c in missing))
            continue
        allowed, lacking = supported_instances(world, ERA_VERSION[era])
        sym = symmetric_in(world.model, cs, "Frame")
        found = search_constrained(world, tracker, wanted=wanted, bound=bound, seed=seed,
                                   beam=beam, symmetric=sym, allowed=allowed)
        if progress:
            progress(f"{era.value}: constrained search, {found.states} states, "
                     f"{len(found.witnesses)} scenario(s)")
        if not found.witnesses:
            proved = impossible(world.model, era, cs, counts)
            if proved:
                rep.status = Reach.UNREACHABLE
                rep.why = "unsatisfiable at any depth: " + "; ".join(
                    f"{c.loc}: {c.text}: {why}" for c, why in proved)
                continue
            small = search_constrained(world, tracker, wanted=1, bound=exhaustive_depth,
                                       seed=seed, beam=None, symmetric=sym, allowed=allowed)
            if small.witnesses:
                found = small
            else:
                rep.why = (f"unsatisfiable within the bound: no trace of at most "
                           f"{exhaustive_depth} steps satisfies every constraint (every "
                           f"state visited), none of at most {bound} steps in the beam "
                           f"search (width {beam}, seed {seed})")
                if lacking:
                    rep.why += (f" (without {', '.join(sorted(lacking))}: not in "
                                f"{ERA_VERSION[era]})")
                continue
        rep.status = Reach.REACHED
        for k, w in enumerate(found.witnesses):
            if confirm and not confirm_constrained(world.model, era, list(w.steps), cs, counts):
                raise AssertionError(
                    f"kspec engines disagree: the explicit search satisfies the constraints "
                    f"on {era.value} by {[world.text_of[n] for n in w.steps]}, Z3 does not")
            title = f"constrained on {era.value} ({k + 1} of {len(found.witnesses)})"
            header = ([f"generated by ksmdiff generate: constraints, era {era.value}, "
                       f"seed {seed}, bound {bound}"] + [f"where {x}" for x in shown] +
                      [f"witness {k + 1} of {len(found.witnesses)}, {w.length} spec steps"
                       + (", constraints confirmed by Z3" if confirm else "")])
            scn, text = scenario_text(world, w, worlds, title=title, header=header,
                                      tags=("generated", GOAL))
            h = canonical_hash(scn)
            if h in seen:
                continue
            seen.add(h)
            gen.scenarios.append(Generated(scn, text, era, GOAL, seed, bound, h))
            rep.scenarios += 1
    gen.seconds = time.monotonic() - t0
    return gen
