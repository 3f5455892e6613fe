"""The layout of a scenario after each statement: which processes exist (in creation
order) and are alive, which regions each has, which of their pages are mapped, their
protection, whether a read/write/fill touched them since they were mapped, and the pins.

One walker for everything that needs to know "what exists here": the validator checks a
statement against the layout before it and then applies it; the judge sizes targets; the
generator draws statements that are valid in it.  :meth:`Layout.apply` never checks
(apply only what the validator accepted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ksmdiff.scenario import ast as A


@dataclass
class Region:
    npages: int
    mapped: list[bool]
    prot: list[str]             # "rw" | "ro"
    faulted: list[bool]         # a read, write or fill touched the page since it was mapped

    def copy(self) -> "Region":
        return Region(self.npages, list(self.mapped), list(self.prot), list(self.faulted))


@dataclass
class Proc:
    alive: bool = True
    regions: dict[str, Region] = field(default_factory=dict)   # in mmap order
    pins: dict[tuple[str, int], int] = field(default_factory=dict)

    def copy(self) -> "Proc":
        return Proc(self.alive, {k: r.copy() for k, r in self.regions.items()}, dict(self.pins))


@dataclass
class Layout:
    procs: dict[str, Proc] = field(default_factory=dict)       # in creation order
    total_pages: int = 0

    @classmethod
    def start(cls, initial: str) -> "Layout":
        return cls({initial: Proc()})

    @property
    def names(self) -> set[str]:
        return set(self.procs)

    def copy(self) -> "Layout":
        return Layout({k: p.copy() for k, p in self.procs.items()}, self.total_pages)

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.alive]

    def npages(self, proc: str, region: str) -> int:
        p = self.procs.get(proc)
        r = p.regions.get(region) if p is not None else None
        return r.npages if r is not None else 0

    def mapped_pages(self) -> list[tuple[str, str, int]]:
        """Every mapped page of every live process, in canonical page order."""
        return [(n, rn, i) for n, p in self.procs.items() if p.alive
                for rn, r in p.regions.items() for i in range(r.npages) if r.mapped[i]]

    # ------------------------------------------------------------------ statements
    def apply(self, s: A.Statement) -> None:
        if isinstance(s, A.Mmap):
            self.total_pages += s.npages
            self.procs[s.proc].regions[s.region] = Region(
                s.npages, [True] * s.npages, ["rw"] * s.npages, [False] * s.npages)
        elif isinstance(s, (A.Fill, A.Write, A.ForceWrite, A.Read)):
            r = self.procs[s.proc].regions[s.target.region]
            for i in s.target.indices(r.npages):
                r.faulted[i] = True
        elif isinstance(s, A.Mprotect):
            r = self.procs[s.proc].regions[s.target.region]
            for i in s.target.indices(r.npages):
                r.prot[i] = s.prot
        elif isinstance(s, A.Munmap):
            r = self.procs[s.proc].regions[s.target.region]
            for i in s.target.indices(r.npages):
                r.mapped[i] = False
                r.faulted[i] = False
        elif isinstance(s, A.Fork):
            parent = self.procs[s.proc]
            child = Proc()
            for name, r in parent.regions.items():
                child.regions[name] = Region(r.npages, list(r.mapped), list(r.prot),
                                             [False] * r.npages)
                self.total_pages += r.npages
            self.procs[s.child] = child
        elif isinstance(s, A.Exit):
            p = self.procs[s.proc]
            p.alive = False
            p.pins.clear()
        elif isinstance(s, A.Exec):
            # a new mm: every region of the process is gone (its names may be mapped again)
            p = self.procs[s.proc]
            for r in p.regions.values():
                r.mapped = [False] * r.npages
                r.faulted = [False] * r.npages
            p.pins.clear()
        elif isinstance(s, A.Pin):
            p = self.procs[s.proc]
            for i in s.target.indices(p.regions[s.target.region].npages):
                key = (s.target.region, i)
                p.pins[key] = p.pins.get(key, 0) + 1
        elif isinstance(s, A.Unpin):
            p = self.procs[s.proc]
            for i in s.target.indices(p.regions[s.target.region].npages):
                p.pins[(s.target.region, i)] -= 1


def walk(scn: A.Scenario) -> Iterator[tuple[int, A.Statement, Layout]]:
    """(index, statement, the layout *before* it) for every statement; the layout object is
    updated in place after each yield (copy it to keep it)."""
    lay = Layout.start(scn.initial)
    for i, s in enumerate(scn.statements):
        yield i, s, lay
        lay.apply(s)


def layout_at(scn: A.Scenario, upto: int) -> Layout:
    """The layout before statement ``upto``."""
    lay = Layout.start(scn.initial)
    for s in scn.statements[:upto]:
        lay.apply(s)
    return lay
