"""kspec text → lark tree → :mod:`ast` objects (syntax only; check.py checks meaning)."""

from __future__ import annotations

import re

import lark
from lark import Token, Transformer

from ksmdiff.errors import InputError, Location
from ksmdiff.internal.grammar import decode_source, lalr_parser, lark_error
from ksmdiff.kspec.internal import ast as A
from ksmdiff.versions import KernelVersion, VersionClause, VersionSet

MAX_FILE_BYTES = 1 << 20


def _unquote(tok) -> str:
    return re.sub(r'\\(["\\])', r"\1", str(tok)[1:-1])


class _Else:
    def __init__(self, body):
        self.body = body


class _Build(Transformer):
    def __init__(self, source: str):
        super().__init__(visit_tokens=False)
        self.source = source

    def _loc(self, x) -> Location:
        if isinstance(x, Token):
            return Location(self.source, x.line or 1, x.column or 1)
        loc = getattr(x, "loc", None)
        if loc is not None:
            return loc
        if isinstance(x, (list, tuple)) and x:
            return self._loc(x[0])
        return Location(self.source, 1, 1)

    def _ver(self, tok) -> KernelVersion:
        return KernelVersion.parse(str(tok))

    # -- versions
    def v_range(self, c):
        return VersionClause("..", self._ver(c[0]), self._ver(c[1]))

    def v_cmp(self, c):
        op = str(c[0])
        if op == "!=":
            raise InputError("'!=' is not a version comparison", self._loc(c[0]),
                             "one of <, <=, >, >=, == or a range A..B")
        return VersionClause(op, self._ver(c[1]))

    def v_exact(self, c):
        return VersionClause("==", self._ver(c[0]))

    def versions(self, c):
        return VersionSet(tuple(c))

    # -- expressions
    def int_lit(self, c):
        return A.IntLit(int(str(c[0])), loc=self._loc(c[0]))

    def true_lit(self, c):
        return A.BoolLit(True, loc=self._loc(c[0]))

    def false_lit(self, c):
        return A.BoolLit(False, loc=self._loc(c[0]))

    def name(self, c):
        return A.Name(str(c[0]), loc=self._loc(c[0]))

    def args(self, c):
        return tuple(c)

    def index(self, c):
        return A.Index(str(c[0]), c[1], loc=self._loc(c[0]))

    def neg(self, c):
        return A.Unary("-", c[0], loc=self._loc(c[0]))

    def not_(self, c):
        return A.Unary("not", c[1], loc=self._loc(c[0]))

    def cmp(self, c):
        return A.Binary(str(c[1]), c[0], c[2], loc=self._loc(c[1]))

    def sum(self, c):
        e = c[0]
        for i in range(1, len(c), 2):
            e = A.Binary(str(c[i]), e, c[i + 1], loc=self._loc(c[i]))
        return e

    def _chain(self, op, c):
        e = c[0]
        for x in c[1:]:
            e = A.Binary(op, e, x, loc=getattr(e, "loc", None))
        return e

    def or_(self, c):
        return self._chain("or", c)

    def and_(self, c):
        return self._chain("and", c)

    def implies(self, c):
        return A.Binary("=>", c[0], c[1], loc=getattr(c[0], "loc", None))

    def ite(self, c):
        return A.Ite(c[0], c[1], c[2], loc=getattr(c[0], "loc", None))

    def binder(self, c):
        return A.Binder(str(c[0]), str(c[1]), loc=self._loc(c[0]))

    def binders(self, c):
        return tuple(c)

    def quant(self, c):
        return A.Quant(str(c[0]), c[1], c[2], loc=self._loc(c[0]))

    def kernel_in(self, c):
        return A.KernelIn(c[0], loc=None)

    def kernel_has(self, c):
        return A.KernelHas(str(c[0]), loc=self._loc(c[0]))

    # -- statements
    def block(self, c):
        return tuple(c)

    def assign(self, c):
        return A.Assign(str(c[0]), None, c[1], loc=self._loc(c[0]))

    def assign_map(self, c):
        return A.Assign(str(c[0]), c[1], c[2], loc=self._loc(c[0]))

    def require(self, c):
        return A.Require(c[0], loc=getattr(c[0], "loc", None))

    def assert_(self, c):
        return A.Assert(str(c[0]), c[1], loc=self._loc(c[0]))

    def let(self, c):
        return A.Let(str(c[0]), c[1], loc=self._loc(c[0]))

    def else_(self, c):
        return _Else(c[0])

    def if_(self, c):
        arms = [(c[0], c[1])]
        other = None
        for x in c[2:]:
            if isinstance(x, lark.Tree) and x.data == "elif":
                arms.append((x.children[0], x.children[1]))
            elif isinstance(x, _Else):
                other = x.body
            else:
                raise AssertionError(x)
        return A.If(tuple(arms), other, loc=getattr(c[0], "loc", None))

    def branch(self, c):
        return A.BranchLabel(str(c[0]), loc=self._loc(c[0]))

    def either(self, c):
        return A.Either(tuple(c), loc=None)

    def choose(self, c):
        return A.Choose(c[0], c[1] if len(c) > 1 else None, loc=c[0][0].loc)

    def choose_first(self, c):
        return A.Choose((c[0],), c[1] if len(c) > 1 else None, loc=c[0].loc, first=True)

    def foreach(self, c):
        return A.Foreach(c[0], c[1], loc=c[0][0].loc)

    def call(self, c):
        return A.Call(str(c[0]), c[1] if len(c) > 1 else (), loc=self._loc(c[0]))

    def goto(self, c):
        return A.Goto(str(c[0]), loc=self._loc(c[0]))

    def skip(self, c):
        return A.Skip()

    # -- declarations
    def model_decl(self, c):
        return A.ModelDecl(str(c[0]), loc=self._loc(c[0]))

    def mutant_decl(self, c):
        return A.MutantDecl(_unquote(c[0]), str(c[1]), _unquote(c[2]) if len(c) > 2 else "",
                            loc=self._loc(c[0]))

    def enum_dom(self, c):
        return ("enum", tuple(str(x) for x in c), self._loc(c[0]))

    def range_dom(self, c):
        lo, hi = int(str(c[0])), int(str(c[1]))
        if hi < lo:
            raise InputError(f"empty range {lo}..{hi}", self._loc(c[0]), "LO..HI with LO <= HI")
        return ("range", tuple(range(lo, hi + 1)), self._loc(c[0]))

    def domain_decl(self, c):
        kind, values, _ = c[1]
        return A.DomainDecl(str(c[0]), values, kind == "enum", loc=self._loc(c[0]))

    def const_decl(self, c):
        return A.ConstDecl(str(c[0]), c[1], loc=self._loc(c[0]))

    def t_bool(self, c):
        return A.TBool()

    def t_range(self, c):
        lo, hi = int(str(c[0])), int(str(c[1]))
        if hi < lo:
            raise InputError(f"empty range {lo}..{hi}", self._loc(c[0]), "LO..HI with LO <= HI")
        return A.TRange(lo, hi, loc=self._loc(c[0]))

    def t_named(self, c):
        return A.TNamed(str(c[0]), loc=self._loc(c[0]))

    def t_map(self, c):
        return A.TMap(tuple(str(x) for x in c[:-1]), c[-1], loc=self._loc(c[0]))

    def var_decl(self, c):
        ghost = isinstance(c[0], Token) and c[0].type == "GHOST"
        if ghost:
            c = c[1:]
        return A.VarDecl(str(c[0]), c[1], c[2] if len(c) > 2 else None, ghost,
                         loc=self._loc(c[0]))

    def init_decl(self, c):
        return A.InitDecl(c[0])

    def prelude_decl(self, c):
        return A.PreludeDecl(tuple(_unquote(x) for x in c), loc=self._loc(c[0]))

    def params(self, c):
        return tuple(c)

    def param(self, c):
        return A.Param(str(c[0]), str(c[1]), loc=self._loc(c[0]))

    def when(self, c):
        return c[0]

    def prints(self, c):
        return _unquote(c[0])

    def _split(self, c):
        params, when, prints, body = (), None, None, ()
        for x in c[1:]:
            if isinstance(x, tuple) and (not x or isinstance(x[0], A.Param)):
                if x and isinstance(x[0], A.Param):
                    params = x
                else:
                    body = x
            elif isinstance(x, VersionSet):
                when = x
            elif isinstance(x, str):
                prints = x
        # the block is the last child
        body = c[-1] if isinstance(c[-1], tuple) else body
        if body and isinstance(body[0], A.Param):
            body = ()
        return params, when, prints, body

    def proc_decl(self, c):
        params, when, _, body = self._split(c)
        return A.ProcDecl(str(c[0]), params, when, body, loc=self._loc(c[0]))

    def action_decl(self, c):
        params, when, prints, body = self._split(c)
        return A.ActionDecl(str(c[0]), params, when, prints, body, loc=self._loc(c[0]))

    def tstep(self, c):
        return A.ThreadStep(str(c[0])[:-1], tuple(c[1:]), loc=self._loc(c[0]))

    def thread_decl(self, c):
        when = c[1] if isinstance(c[1], VersionSet) else None
        steps = tuple(x for x in c[1:] if isinstance(x, A.ThreadStep))
        return A.ThreadDecl(str(c[0]), when, steps, loc=self._loc(c[0]))

    def step_decl(self, c):
        when = c[2] if len(c) > 2 and isinstance(c[2], VersionSet) else None
        body = tuple(x for x in c[2:] if not isinstance(x, VersionSet))
        return A.StepDecl(str(c[0]), str(c[1]), when, body, loc=self._loc(c[0]))

    def invariant_decl(self, c):
        return A.InvariantDecl(str(c[0]), c[1], loc=self._loc(c[0]))

    def observe_decl(self, c):
        params = c[1] if len(c) > 2 else ()
        return A.ObserveDecl(str(c[0]), params, c[-1], loc=self._loc(c[0]))

    def equiv_decl(self, c):
        names = [str(x) for x in c[3:]]
        after = None
        # "after NAME" is the last NAME when the grammar saw the keyword; lark drops the
        # keyword, so the transformer marks it through the tree meta (see _equiv_after).
        return A.EquivDecl(str(c[0]), c[1], c[2], tuple(names), after, loc=self._loc(c[0]))

    def start(self, c):
        return tuple(c)


def _equiv_after(tree: lark.Tree) -> None:
    """Turn ``after NAME`` into a distinct child (lark drops anonymous keywords)."""


def parse_text(text: str | bytes, source: str = "<string>") -> A.File:
    text = decode_source(text, source, MAX_FILE_BYTES)
    parser = lalr_parser("kspec")
    try:
        tree = parser.parse(text)
    except lark.exceptions.LarkError as err:
        raise lark_error(parser, err, source) from None
    # mark `after` of equiv declarations: the keyword is anonymous, so find it by text
    try:
        decls = _Build(source).transform(tree)
    except lark.exceptions.VisitError as err:
        if isinstance(err.orig_exc, InputError):
            raise err.orig_exc from None
        raise
    fixed = []
    for d in decls:
        if isinstance(d, A.EquivDecl) and d.loc is not None:
            seg = _decl_text(text, d.loc.line)
            if re.search(r"\bafter\s+[A-Za-z_]\w*\s*$", seg):
                d = A.EquivDecl(d.name, d.left, d.right, d.observables[:-1], d.observables[-1],
                                loc=d.loc)
        fixed.append(d)
    return A.File(source, tuple(fixed))


def _decl_text(text: str, line: int) -> str:
    lines = text.split("\n")
    out = lines[line - 1]
    out = re.sub(r"(#|//).*$", "", out)
    return out.rstrip()


def parse_file(path) -> A.File:
    from pathlib import Path
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", Location(str(p), 1, 1)) from None
    return parse_text(data, str(p))
