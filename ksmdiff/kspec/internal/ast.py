"""kspec syntax trees: immutable data, no behaviour.  Every node carries ``loc`` (a
:class:`ksmdiff.errors.Location`) for error messages; it never takes part in equality."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Optional, Union

from ksmdiff.errors import Location
from ksmdiff.versions import VersionSet


def _loc():
    return field(default=None, compare=False, repr=False)


# ----------------------------------------------------------------------------- expressions

# The relational and arithmetic operators of ``Binary``, one table for both semantics: the
# operator module's functions work on Python ints and on Z3 bit-vectors alike (``<`` is
# signed on both).  The explicit engine wraps ``+``/``-`` to the compiler's word width.
ARITH = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
         ">": operator.gt, ">=": operator.ge, "+": operator.add, "-": operator.sub}


@dataclass(frozen=True)
class IntLit:
    value: int
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class BoolLit:
    value: bool
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Name:
    id: str
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Index:
    name: str
    args: tuple
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Unary:
    op: str                       # "not" | "-"
    arg: "Expr"
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Binary:
    op: str                       # and or => == != < <= > >= + -
    left: "Expr"
    right: "Expr"
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Ite:
    cond: "Expr"
    then: "Expr"
    other: "Expr"
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Binder:
    name: str
    domain: str
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Quant:
    kind: str                     # forall | exists | count
    binders: tuple
    body: "Expr"
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class KernelIn:
    versions: VersionSet
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class KernelHas:
    """``kernel has FACT``: the era's representative version has the behaviour of the row
    FACT of the kernel fact table (ksmdiff/kernel_facts.py)."""
    fact: str
    loc: Optional[Location] = _loc()


Expr = Union[IntLit, BoolLit, Name, Index, Unary, Binary, Ite, Quant, KernelIn, KernelHas]


# ----------------------------------------------------------------------------- statements

@dataclass(frozen=True)
class Assign:
    name: str
    index: Optional[tuple]        # None for a scalar
    value: Expr
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Require:
    cond: Expr
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Assert:
    prop: str
    cond: Expr
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Let:
    name: str
    value: Expr
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class If:
    arms: tuple                   # ((cond, body), ...)
    other: Optional[tuple]        # else body or None
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class BranchLabel:
    name: str
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Either:
    arms: tuple                   # (body, body, ...)
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Choose:
    binders: tuple
    where: Optional[Expr]
    loc: Optional[Location] = _loc()
    first: bool = False           # `choose first`: the lowest value that satisfies `where`


@dataclass(frozen=True)
class Foreach:
    binders: tuple
    body: tuple
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Goto:
    label: str
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class Skip:
    loc: Optional[Location] = _loc()


Stmt = Union[Assign, Require, Assert, Let, If, BranchLabel, Either, Choose, Foreach, Call,
             Goto, Skip]


# ----------------------------------------------------------------------------- declarations

@dataclass(frozen=True)
class Param:
    name: str
    domain: str
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class TBool:
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class TRange:
    lo: int
    hi: int
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class TNamed:
    name: str
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class TMap:
    keys: tuple                   # domain names
    value: object                 # TBool | TRange | TNamed
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class ModelDecl:
    name: str
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class MutantDecl:
    name: str
    of: str
    doc: str
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class DomainDecl:
    name: str
    values: tuple                 # of str (enum) or int (range)
    is_enum: bool
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class ConstDecl:
    name: str
    value: Expr
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class VarDecl:
    name: str
    type: object
    init: Optional[Expr]
    ghost: bool
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class InitDecl:
    body: tuple
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class PreludeDecl:
    lines: tuple
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class ProcDecl:
    name: str
    params: tuple
    when: Optional[VersionSet]
    body: tuple
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class ActionDecl:
    name: str
    params: tuple
    when: Optional[VersionSet]
    prints: Optional[str]
    body: tuple
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class ThreadStep:
    label: str
    body: tuple
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class ThreadDecl:
    name: str
    when: Optional[VersionSet]
    steps: tuple
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class StepDecl:
    """``step THREAD.LABEL { ... }``: replaces one labelled step (mutant overlays)."""
    thread: str
    label: str
    when: Optional[VersionSet]
    body: tuple
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class InvariantDecl:
    name: str
    cond: Expr
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class ObserveDecl:
    name: str
    params: tuple
    value: Expr
    loc: Optional[Location] = _loc()


@dataclass(frozen=True)
class EquivDecl:
    name: str
    left: VersionSet
    right: VersionSet
    observables: tuple
    after: Optional[str]
    loc: Optional[Location] = _loc()


Decl = Union[ModelDecl, MutantDecl, DomainDecl, ConstDecl, VarDecl, InitDecl, PreludeDecl,
             ProcDecl, ActionDecl, ThreadDecl, StepDecl, InvariantDecl, ObserveDecl, EquivDecl]


@dataclass(frozen=True)
class File:
    path: str
    decls: tuple
