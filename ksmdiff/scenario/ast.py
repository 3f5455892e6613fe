"""Scenario objects: immutable data, no behaviour (the language: docs/scenario-language.md).

A :class:`Scenario` is what the parser produces, the validator checks, the printer prints,
the model and the probe replay, and the generator builds.  Positions (``pos``) are kept for
error messages and reports but never take part in equality, so ``parse(print(s)) == s``.
Comments are kept the same way: attached to the statement they stand above or end the line
of (:class:`Comments`), printed back by the printer, and never part of equality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ksmdiff.versions import VersionSet


@dataclass(frozen=True)
class Pos:
    line: int = 0
    column: int = 0


def _pos() -> Pos:
    return field(default=Pos(), compare=False, repr=False)


@dataclass(frozen=True)
class Comments:
    """The comments of one statement.

    ``before``: the lines standing above the statement, in order, each the text after its
    ``#`` (``None`` for a blank line that separates groups); ``trailing``: the text after the
    ``#`` that ends the statement's own line, or ``None``.
    """

    before: tuple[str | None, ...] = ()
    trailing: str | None = None

    def __bool__(self) -> bool:
        return bool(self.before) or self.trailing is not None


NO_COMMENTS = Comments()


def _comments() -> Comments:
    return field(default=NO_COMMENTS, compare=False, repr=False)


# ----------------------------------------------------------------------------- targets

@dataclass(frozen=True)
class Target:
    """``R`` (all pages: lo = hi = None), ``R[i]`` (lo = hi = i) or ``R[i..j]``."""

    region: str
    lo: int | None = None
    hi: int | None = None

    @property
    def whole(self) -> bool:
        return self.lo is None

    def indices(self, npages: int) -> range:
        if self.lo is None:
            return range(npages)
        assert self.hi is not None
        return range(self.lo, self.hi + 1)

    def __str__(self) -> str:
        if self.lo is None:
            return self.region
        if self.lo == self.hi:
            return f"{self.region}[{self.lo}]"
        return f"{self.region}[{self.lo}..{self.hi}]"


# ----------------------------------------------------------------------------- statements

@dataclass(frozen=True)
class Mmap:
    """``P: mmap R N`` (anonymous, private, read-write) or ``P: mmap R N node K``: the same,
    then mbind(2) MPOL_BIND to node K, so every page the region allocates (first touch,
    copy-on-write, a swap-in copy) comes from node K.  Without ``node`` the process's default
    policy: pages come from the node of the CPU it runs on (node 0 in the lab)."""

    proc: str
    region: str
    npages: int
    node: int | None = None   # the NUMA node of the region's MPOL_BIND policy
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Fill:
    proc: str
    target: Target
    byte: int | None          # None: ``zero`` (real zeros, no salt)
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Write:
    proc: str
    target: Target
    byte: int
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class ForceWrite:
    """``P: force-write TARGET BYTE``: ``write``, but through /proc/PID/mem (GUP with
    FOLL_FORCE | FOLL_WRITE), so it also reaches read-only and PROT_NONE pages."""

    proc: str
    target: Target
    byte: int
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Read:
    proc: str
    target: Target
    pos: Pos = _pos()
    comments: Comments = _comments()


MADVICES = ("mergeable", "unmergeable", "dontneed", "pageout")


@dataclass(frozen=True)
class Madvise:
    proc: str
    target: Target
    advice: str               # one of MADVICES
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Mprotect:
    proc: str
    target: Target
    prot: str                 # "ro" | "rw" | "none"
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Munmap:
    proc: str
    target: Target
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Fork:
    proc: str
    child: str
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Exit:
    proc: str
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Exec:
    """``P: exec``: execve(2) of the probe itself.  The old mm goes as at exit (exit_mmap,
    ksm_exit), P keeps its pid and gets a new, empty mm: every region of P is unmapped.
    Whether MMF_VM_MERGE_ANY survives and whether ksmd scans the new mm depend on the
    kernel (ksm_exec_merge_any, ksm_execve in ksmdiff/kernel_facts.py)."""

    proc: str
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Pin:
    proc: str
    target: Target
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Unpin:
    proc: str
    target: Target
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Mlock:
    """``P: mlock TARGET``: mlock(2) (VM_LOCKED, populated: a writable private page is
    write-faulted, so a KSM page there is COW-broken)."""

    proc: str
    target: Target
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Munlock:
    """``P: munlock TARGET``: munlock(2)."""

    proc: str
    target: Target
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class UffdWp:
    """``P: uffd-wp TARGET``: a userfaultfd with UFFD_FEATURE_PAGEFAULT_FLAG_WP,
    UFFDIO_REGISTER_MODE_WP over the pages and UFFDIO_WRITEPROTECT of them; the descriptor
    stays open and no handler runs, so a write fault there would wait for ever (the
    validator refuses every statement that could take one)."""

    proc: str
    target: Target
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Prctl:
    proc: str
    on: bool
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Cgroup:
    """``P: cgroup G [memory-max PAGES] [mems K]``: P moves into the cgroup v2 group G (its
    cgroup.procs), which the first statement naming G creates, with memory.max = PAGES
    pages (the memory controller) and cpuset.mems = K (the cpuset controller: P's and its
    children's later pages come from node K).  P's later children start in it (fork).  The
    limit must leave room for every page the scenario maps (the validator), so that it
    never reclaims: a memory cgroup then changes nothing in what KSM or a write fault does.
    A process enters a group with mems only while it maps no region (cgroup v2 cpusets
    migrate the pages of a task that enters them)."""

    proc: str
    group: str
    memory_max: int | None = None   # pages; only on the statement that creates the group
    mems: int | None = None         # the one node of cpuset.mems; idem
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class Mempolicy:
    """``P: mempolicy bind K`` / ``P: mempolicy default``: set_mempolicy(2) of P's task
    policy, MPOL_BIND to node K or MPOL_DEFAULT: the node of P's later pages in regions
    without a ``node`` of their own; a fork's child inherits it, exec keeps it."""

    proc: str
    node: int | None                # None: MPOL_DEFAULT
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class KsmSettle:
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class KsmScan:
    scans: int
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class KsmUnmergeAll:
    """``ksm unmerge-all`` (also written ``ksm set run 2``): KSM_RUN_UNMERGE, every KSM page
    of the machine unmerged, then ksmd paused again."""

    pos: Pos = _pos()
    comments: Comments = _comments()


KNOBS = ("use_zero_pages", "max_page_sharing", "merge_across_nodes", "smart_scan")


@dataclass(frozen=True)
class KsmSet:
    knob: str                 # one of KNOBS
    value: int
    pos: Pos = _pos()
    comments: Comments = _comments()


# ----------------------------------------------------------------------------- expectations

@dataclass(frozen=True)
class Content:
    """Page content: every byte ``fill`` (None: real zeros) except one fixed offset that
    holds ``write`` when a write happened.  Normalised: a write equal to the fill is no
    write."""

    fill: int | None
    write: int | None = None

    def __post_init__(self) -> None:
        if self.write is not None and self.write == (self.fill or 0):
            object.__setattr__(self, "write", None)

    def __str__(self) -> str:
        base = "zero" if self.fill is None else f"0x{self.fill:02x}"
        return base if self.write is None else f"{base}+0x{self.write:02x}"

    @classmethod
    def parse(cls, text: str) -> "Content":
        fill_s, _, write_s = text.partition("+")
        fill = None if fill_s == "zero" else int(fill_s, 16)
        write = int(write_s, 16) if write_s else None
        return cls(fill, write)


# Predicates without an argument.
FLAG_PREDICATES = ("ksm", "reused", "copied", "zero-page", "swapped", "present", "unmapped",
                   "exclusive")


@dataclass(frozen=True)
class Flag:
    name: str                 # one of FLAG_PREDICATES

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Mapcount:
    count: int

    def __str__(self) -> str:
        return f"mapcount {self.count}"


@dataclass(frozen=True)
class HasContent:
    content: Content

    def __str__(self) -> str:
        return f"content {self.content}"


@dataclass(frozen=True)
class SameFrame:
    proc: str
    target: Target

    def __str__(self) -> str:
        return f"same-frame {self.proc} {self.target}"


Predicate = Union[Flag, Mapcount, HasContent, SameFrame]


@dataclass(frozen=True)
class ExpectPage:
    proc: str
    target: Target
    negated: bool
    predicate: Predicate
    versions: VersionSet | None = None
    pos: Pos = _pos()
    comments: Comments = _comments()


@dataclass(frozen=True)
class ExpectCounter:
    counter: str
    delta: int
    versions: VersionSet | None = None
    proc: str | None = None   # a per-process counter (/proc/PID/ksm_stat) of this process
    absolute: bool = False    # ``=N``: the value ksm_stat shows, not the change (``+N``)
    pos: Pos = _pos()
    comments: Comments = _comments()


Action = Union[Mmap, Fill, Write, ForceWrite, Read, Madvise, Mprotect, Munmap, Fork, Exit, Exec,
               Pin, Unpin,
               Mlock, Munlock, UffdWp,
               Prctl, Cgroup, Mempolicy, KsmSettle, KsmScan, KsmSet, KsmUnmergeAll]
@dataclass(frozen=True)
class ExpectPrctl:
    """``expect P prctl merge on|off``: what P's prctl(PR_GET_MEMORY_MERGE) returns."""

    proc: str
    on: bool
    versions: VersionSet | None = None
    pos: Pos = _pos()
    comments: Comments = _comments()


Expect = Union[ExpectPage, ExpectCounter, ExpectPrctl]
Statement = Union[Action, Expect]

ACTION_TYPES = (Mmap, Fill, Write, ForceWrite, Read, Madvise, Mprotect, Munmap, Fork, Exit, Exec,
                Pin, Unpin,
                Mlock, Munlock, UffdWp,
                Prctl, Cgroup, Mempolicy, KsmSettle, KsmScan, KsmSet, KsmUnmergeAll)
EXPECT_TYPES = (ExpectPage, ExpectCounter, ExpectPrctl)


def is_action(stmt: Statement) -> bool:
    return isinstance(stmt, ACTION_TYPES)


@dataclass(frozen=True)
class Scenario:
    title: str
    initial: str                                  # the ``process P`` statement
    statements: tuple[Statement, ...]
    tags: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    source: str = field(default="<string>", compare=False)
    title_pos: Pos = _pos()
    initial_pos: Pos = _pos()
    # Comments of the header lines ("scenario", "tags", "requires", "process": the key) and
    # the comment lines after the last statement.
    header_comments: tuple[tuple[str, Comments], ...] = field(default=(), compare=False,
                                                              repr=False)
    end_comments: tuple[str | None, ...] = field(default=(), compare=False, repr=False)

    def header_comment(self, which: str) -> Comments:
        return dict(self.header_comments).get(which, NO_COMMENTS)

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(s for s in self.statements if is_action(s))
