"""Text → lark tree → :class:`Scenario` (syntax only; the validator checks meaning).

Comments are kept: every ``#`` comment is attached to a statement (the comment lines above
it, or the one that ends its line) or to the end of the scenario, so that ``ksmdiff format``
prints them back where they were.
"""

from __future__ import annotations

import dataclasses
import re

import lark
from lark import Token, Transformer, v_args

from ksmdiff.errors import InputError, Location
from ksmdiff.internal.grammar import decode_source, lalr_parser, lark_error
from ksmdiff.scenario import ast as A
from ksmdiff.versions import KernelVersion, VersionClause, VersionSet

MAX_FILE_BYTES = 1 << 20
MAX_INT = 1 << 31


def _pos(tok) -> A.Pos:
    return A.Pos(getattr(tok, "line", 0) or 0, getattr(tok, "column", 0) or 0)


def _line_start(tok) -> A.Pos:
    """Header statements are reported at the start of their line."""
    return A.Pos(getattr(tok, "line", 0) or 0, 1)


class _Build(Transformer):
    """Builds statement objects; header statements become tagged tuples for ``parse``."""

    def __init__(self, source: str):
        super().__init__(visit_tokens=False)
        self.source = source

    def _err(self, tok, message: str, expected: str | None = None) -> InputError:
        p = _pos(tok)
        return InputError(message, Location(self.source, p.line, p.column), expected)

    def _int(self, tok: Token, what: str) -> int:
        text = str(tok)
        if len(text) > 10 or int(text.lstrip("+-") or "0") >= MAX_INT:
            raise self._err(tok, f"{what} {text} is too large", f"a {what} below {MAX_INT}")
        return int(text)

    def _byte(self, tok: Token) -> int:
        value = int(str(tok), 16) if len(str(tok)) <= 6 else 1 << 20
        if value > 0xFF:
            raise self._err(tok, f"byte {tok} is out of range", "a byte 0x00..0xff")
        return value

    # -- header
    @v_args(inline=True)
    def scenario_stmt(self, s):
        body = re.sub(r'\\(["\\])', r"\1", str(s)[1:-1])
        return ("scenario", body, _line_start(s))

    def tags_stmt(self, items):
        return ("tags", tuple(items), _line_start(items[0]))

    def requires_stmt(self, items):
        return ("requires", tuple(items), _line_start(items[0]))

    @v_args(inline=True)
    def process_stmt(self, name):
        return ("process", name, _line_start(name))

    # -- targets
    def target(self, items):
        name = items[0]
        if len(items) == 1:
            return A.Target(str(name))
        lo = self._int(items[1], "page index")
        hi = self._int(items[3], "page index") if len(items) == 4 else lo
        if hi < lo:
            raise self._err(items[1], f"empty range [{lo}..{hi}]",
                            "a range [i..j] with i <= j")
        return A.Target(str(name), lo, hi)

    # -- process statements: proc_stmt receives (NAME, partial op)
    @v_args(inline=True)
    def proc_stmt(self, name, op):
        make, args = op
        return make(str(name), *args, pos=_pos(name))

    @v_args(inline=True)
    def mmap(self, region, n, node=None):
        return (A.Mmap, (str(region), self._int(n, "page count"),
                         None if node is None else self._int(node, "node")))

    @v_args(inline=True)
    def fill(self, target, value):
        return (A.Fill, (target, None if value.type == "ZERO" else self._byte(value)))

    @v_args(inline=True)
    def write(self, target, value):
        return (A.Write, (target, self._byte(value)))

    @v_args(inline=True)
    def force_write(self, target, value):
        return (A.ForceWrite, (target, self._byte(value)))

    @v_args(inline=True)
    def read(self, target):
        return (A.Read, (target,))

    @v_args(inline=True)
    def madvise(self, target, advice):
        if str(advice) not in A.MADVICES:
            raise self._err(advice, f"unknown madvise advice {str(advice)!r}",
                            " or ".join(A.MADVICES))
        return (A.Madvise, (target, str(advice)))

    @v_args(inline=True)
    def mprotect(self, target, prot):
        if str(prot) not in ("ro", "rw", "none"):
            raise self._err(prot, f"unknown protection {str(prot)!r}", "ro, rw or none")
        return (A.Mprotect, (target, str(prot)))

    @v_args(inline=True)
    def munmap(self, target):
        return (A.Munmap, (target,))

    @v_args(inline=True)
    def fork(self, child):
        return (A.Fork, (str(child),))

    def exit(self, _items):
        return (A.Exit, ())

    def exec(self, _items):
        return (A.Exec, ())

    @v_args(inline=True)
    def pin(self, target):
        return (A.Pin, (target,))

    @v_args(inline=True)
    def unpin(self, target):
        return (A.Unpin, (target,))

    @v_args(inline=True)
    def mlock(self, target):
        return (A.Mlock, (target,))

    @v_args(inline=True)
    def munlock(self, target):
        return (A.Munlock, (target,))

    @v_args(inline=True)
    def uffd_wp(self, target):
        return (A.UffdWp, (target,))

    def cgroup(self, items):
        group, *opts = items
        d = dict(opts)
        return (A.Cgroup, (str(group), d.get("memory_max"), d.get("mems")))

    @v_args(inline=True)
    def cgroup_max(self, n):
        return ("memory_max", self._int(n, "page count"))

    @v_args(inline=True)
    def cgroup_mems(self, n):
        return ("mems", self._int(n, "node"))

    @v_args(inline=True)
    def mempolicy_bind(self, n):
        return (A.Mempolicy, (self._int(n, "node"),))

    def mempolicy_default(self, _items):
        return (A.Mempolicy, (None,))

    @v_args(inline=True)
    def prctl(self, onoff):
        if str(onoff) not in ("on", "off"):
            raise self._err(onoff, f"unknown prctl merge value {str(onoff)!r}", "on or off")
        return (A.Prctl, (str(onoff) == "on",))

    # -- ksm statements
    def ksm_settle(self, items):
        return A.KsmSettle(pos=_pos(items[0]))

    def ksm_scan(self, items):
        return A.KsmScan(self._int(items[1], "scan count"), pos=_pos(items[0]))

    def ksm_unmerge_all(self, items):
        return A.KsmUnmergeAll(pos=_pos(items[0]))

    def ksm_set(self, items):
        kw, knob, value = items
        if str(knob) == "run":
            # run=2 (KSM_RUN_UNMERGE) is the one value a scenario writes: ksmd's run
            # state is otherwise the runner's (ksm settle / ksm scan)
            if self._int(value, "knob value") != 2:
                raise self._err(value, f"ksm set run {value}: ksmd runs only inside "
                                       "'ksm settle' and 'ksm scan'", "ksm set run 2 "
                                       "(the same as ksm unmerge-all)")
            return A.KsmUnmergeAll(pos=_pos(kw))
        if str(knob) not in A.KNOBS:
            raise self._err(knob, f"unknown KSM knob {str(knob)!r}", " or ".join(A.KNOBS))
        return A.KsmSet(str(knob), self._int(value, "knob value"), pos=_pos(kw))

    # -- expectations
    def _counter_value(self, tok: Token) -> tuple[int, bool]:
        """``+N``/``-N``: a change; ``=N``: a value (per-process counters only)."""
        if tok.type == "ABSOLUTE":
            return self._int(Token("INT", str(tok)[1:], line=tok.line, column=tok.column),
                             "counter value"), True
        return self._int(tok, "counter change"), False

    def expect_counter(self, items):
        kw, name, delta = items[0], items[1], items[2]
        versions = items[3] if len(items) > 3 else None
        value, absolute = self._counter_value(delta)
        return A.ExpectCounter(str(name), value, versions, absolute=absolute, pos=_pos(kw))

    def expect_prctl(self, items):
        kw, proc, onoff = items[0], items[1], items[2]
        versions = items[3] if len(items) > 3 else None
        if str(onoff) not in ("on", "off"):
            raise self._err(onoff, f"unknown prctl merge value {str(onoff)!r}", "on or off")
        return A.ExpectPrctl(str(proc), str(onoff) == "on", versions, pos=_pos(kw))

    def expect_proc_counter(self, items):
        kw, proc, name, delta = items[0], items[1], items[2], items[3]
        versions = items[4] if len(items) > 4 else None
        value, absolute = self._counter_value(delta)
        return A.ExpectCounter(str(name), value, versions, proc=str(proc), absolute=absolute,
                               pos=_pos(kw))

    def expect_page(self, items):
        kw, proc, target = items[0], items[1], items[2]
        rest = items[3:]
        negated = False
        if rest and isinstance(rest[0], Token) and rest[0].type == "NOT":
            negated = True
            rest = rest[1:]
        predicate = rest[0]
        versions = rest[1] if len(rest) > 1 else None
        return A.ExpectPage(str(proc), target, negated, predicate, versions, pos=_pos(kw))

    @v_args(inline=True)
    def flag(self, tok):
        return A.Flag(str(tok))

    @v_args(inline=True)
    def mapcount(self, n):
        return A.Mapcount(self._int(n, "mapcount"))

    def content_value(self, items):
        fill = None if items[0].type == "ZERO" else self._byte(items[0])
        write = self._byte(items[1]) if len(items) > 1 else None
        return A.Content(fill, write)

    @v_args(inline=True)
    def content(self, value):
        return A.HasContent(value)

    @v_args(inline=True)
    def same_frame(self, proc, target):
        return A.SameFrame(str(proc), target)

    # -- versions
    def _version(self, tok) -> KernelVersion:
        try:
            return KernelVersion.parse(str(tok))
        except ValueError:
            raise self._err(tok, f"bad kernel version {str(tok)!r}",
                            "a version such as 5.4 or 6.12.117") from None

    def versions(self, items):
        return VersionSet(tuple(items))

    @v_args(inline=True)
    def v_range(self, low, _dots, high):
        clause = VersionClause("..", self._version(low), self._version(high))
        if clause.empty():
            raise self._err(low, f"empty version range {low}..{high}",
                            "a range A..B with A <= B")
        return clause

    @v_args(inline=True)
    def v_cmp(self, op, version):
        return VersionClause(str(op), self._version(version))

    @v_args(inline=True)
    def v_exact(self, version):
        return VersionClause("==", self._version(version))

    def start(self, items):
        return items


def parse_raw(data: bytes | str, source: str = "<string>") -> A.Scenario:
    """Parse without semantic validation (the validator runs in :func:`ksmdiff.scenario.parse`)."""
    text = decode_source(data, source, MAX_FILE_BYTES)
    parser = lalr_parser("scenario")
    try:
        tree = parser.parse(text)
    except lark.exceptions.LarkError as err:
        raise lark_error(parser, err, source) from None
    try:
        items = _Build(source).transform(tree)
    except lark.exceptions.VisitError as err:
        if isinstance(err.orig_exc, InputError):
            raise err.orig_exc from None
        raise
    return _assemble(items, source, text)


def _comment_start(line: str) -> int:
    """Column (0-based) of the ``#`` that starts a comment on ``line``, or -1.  A ``#``
    inside the quoted title is no comment."""
    in_str = escaped = False
    for i, ch in enumerate(line):
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "#":
            return i
    return -1


def _tidy(lines: list, *, lead: bool, tail: bool) -> tuple:
    """Collapse runs of blank lines (``None``) to one; drop them at the start/end if asked."""
    out: list = []
    for item in lines:
        if item is None and (out[-1:] == [None] or (lead and not out)):
            continue
        out.append(item)
    while tail and out and out[-1] is None:
        out.pop()
    return tuple(out)


class _CommentLines:
    """The comments and blank lines of a text, handed out statement by statement."""

    def __init__(self, text: str):
        self.lines = [ln.rstrip("\r") for ln in text.split("\n")]
        self.next = 1                       # first line not yet handed out

    def upto(self, line: int) -> tuple[list, str | None]:
        """The standalone comments / blank lines before ``line``, and ``line``'s trailing
        comment."""
        before: list = []
        for n in range(self.next, min(line, len(self.lines) + 1)):
            text = self.lines[n - 1]
            at = _comment_start(text)
            if at >= 0:
                before.append(text[at + 1:].rstrip())
            elif not text.strip():
                before.append(None)
        trailing = None
        if 1 <= line <= len(self.lines):
            text = self.lines[line - 1]
            at = _comment_start(text)
            if at >= 0:
                trailing = text[at + 1:].rstrip()
        self.next = max(self.next, line + 1)
        return before, trailing

    def rest(self) -> tuple:
        before, _ = self.upto(len(self.lines) + 1)
        return _tidy(before, lead=False, tail=True)


def _assemble(items, source: str, text: str = "") -> A.Scenario:
    title = initial = None
    title_pos = initial_pos = A.Pos()
    tags: tuple = ()
    requires: tuple = ()
    stmts: list = []

    comment_lines = _CommentLines(text)
    header_comments: list = []

    def err(pos: A.Pos, msg: str, expected: str | None = None) -> InputError:
        return InputError(msg, Location(source, pos.line or 1, pos.column or 1), expected)

    for i, item in enumerate(items):
        line = item[2].line if isinstance(item, tuple) else item.pos.line
        before, trailing = comment_lines.upto(line)
        # The printer puts the header lines first and a blank line before 'process'.
        first = i == 0 or (isinstance(item, tuple) and item[0] == "process")
        comments = A.Comments(_tidy(before, lead=first, tail=False), trailing)
        if isinstance(item, tuple):
            kind, value, pos = item
            if comments:
                header_comments.append((kind, comments))
            if kind == "scenario":
                if i != 0:
                    raise err(pos, "'scenario' must be the first statement")
                title, title_pos = value, pos
            elif kind == "process":
                if initial is not None:
                    raise err(pos, f"a second 'process' statement ({value}); the initial "
                                   f"process is {initial}", "P: fork CHILD to make more processes")
                if stmts:
                    raise err(pos, "'process' must come before the first operation")
                initial, initial_pos = str(value), pos
            elif kind in ("tags", "requires"):
                if stmts or initial is not None:
                    raise err(pos, f"'{kind}' must come before 'process'")
                if kind == "tags":
                    if tags:
                        raise err(pos, "a second 'tags' statement")
                    tags = tuple(str(t) for t in value)
                else:
                    if requires:
                        raise err(pos, "a second 'requires' statement")
                    requires = tuple(str(t) for t in value)
                    for tok in value:
                        _check_feature(tok, source)
            continue
        stmts.append(dataclasses.replace(item, comments=comments) if comments else item)
    if title is None:
        first = items[0] if items else None
        pos = first[2] if isinstance(first, tuple) else getattr(first, "pos", A.Pos(1, 1))
        raise err(pos, "a scenario must start with its title", 'scenario "TITLE"')
    if initial is None:
        raise err(A.Pos(title_pos.line + 1, 1), "no 'process' statement", "process NAME")
    return A.Scenario(title=title, initial=initial, statements=tuple(stmts), tags=tags,
                      requires=requires, source=source, title_pos=title_pos,
                      initial_pos=initial_pos, header_comments=tuple(header_comments),
                      end_comments=comment_lines.rest())


def _check_feature(tok, source: str) -> None:
    from ksmdiff.versions import FEATURES
    if str(tok) not in FEATURES:
        p = _pos(tok)
        raise InputError(f"unknown feature {str(tok)!r}", Location(source, p.line, p.column),
                         " or ".join(FEATURES))
