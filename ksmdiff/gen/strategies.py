"""Hypothesis strategies for valid scenarios.

``scenarios()`` draws a sequence of statements valid in the scenario's layout (live
processes, regions, mapped and writable pages, pins: the walker the validator uses,
ksmdiff/scenario/layout.py), so every drawn scenario passes ``validate`` and can be
replayed: the printer round trip, the model and the probe all use it.
"""

from __future__ import annotations

from hypothesis import strategies as st

from ksmdiff.scenario import ast as A
from ksmdiff.scenario.layout import Layout
from ksmdiff.versions import KernelVersion, VersionClause, VersionSet

_BYTES = st.sampled_from([0x11, 0x22, 0x5A, 0xA5, 0xFF])
_VERSIONS = [KernelVersion.parse(v) for v in ("4.19", "5.1", "5.4", "5.8", "5.9", "5.18",
                                               "5.19", "6.1", "6.7", "6.12")]


@st.composite
def version_sets(draw) -> VersionSet:
    clauses = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["==", "<", "<=", ">", ">=", ".."]))
        lo = draw(st.sampled_from(_VERSIONS))
        if op == "..":
            hi = draw(st.sampled_from([v for v in _VERSIONS if v >= lo]))
            clauses.append(VersionClause(op, lo, hi))
        else:
            clauses.append(VersionClause(op, lo))
    return VersionSet(tuple(clauses))


@st.composite
def scenarios(draw, max_steps: int = 14, max_procs: int = 3, max_pages: int = 4,
              expects: bool = True, knobs: bool = True) -> A.Scenario:
    """A valid scenario of at most ``max_steps`` statements."""
    lay = Layout.start("A")
    stmts: list = []
    n_regions = 0

    def add(stmt) -> None:
        stmts.append(stmt)
        lay.apply(stmt)

    def target_for(proc: str, *, need_mapped=True, need_rw=False, need_touched=False):
        regions = lay.procs[proc].regions
        choices = []
        for r, info in regions.items():
            ok = [i for i in range(info.npages)
                  if (info.mapped[i] or not need_mapped)
                  and (info.prot[i] == "rw" or not need_rw)
                  and (info.faulted[i] or not need_touched)]
            if ok:
                choices.append((r, ok))
        if not choices:
            return None
        r, ok = draw(st.sampled_from(choices))
        n = regions[r].npages
        if set(ok) == set(range(n)) and draw(st.booleans()):
            return A.Target(r)
        lo = draw(st.sampled_from(ok))
        hi = lo
        while hi + 1 in ok and hi + 1 < n and draw(st.booleans()):
            hi += 1
        return A.Target(r, lo, hi)

    for _ in range(draw(st.integers(1, max_steps))):
        alive = lay.alive()
        if not alive:
            break
        p = draw(st.sampled_from(alive))
        kinds = ["mmap", "fill", "write", "read", "madvise", "settle", "fork", "mprotect",
                 "munmap", "exit", "pin", "unpin", "scan"]
        if knobs:
            kinds.append("set")
        if expects:
            kinds += ["expect", "expect", "counter"]
        kind = draw(st.sampled_from(kinds))
        if kind == "mmap" and n_regions < 3:
            name = f"r{n_regions}"
            n_regions += 1
            add(A.Mmap(p, name, draw(st.integers(1, max_pages))))
        elif kind in ("fill", "write", "read"):
            t = target_for(p, need_rw=kind != "read")
            if t is None:
                continue
            if kind == "fill":
                add(A.Fill(p, t, draw(st.one_of(st.none(), _BYTES))))
            elif kind == "write":
                add(A.Write(p, t, draw(_BYTES)))
            else:
                add(A.Read(p, t))
        elif kind == "madvise":
            t = target_for(p)
            if t is None:
                continue
            advice = draw(st.sampled_from(["mergeable", "mergeable", "unmergeable", "dontneed"]))
            add(A.Madvise(p, t, advice))
        elif kind == "mprotect":
            t = target_for(p)
            if t is None:
                continue
            add(A.Mprotect(p, t, draw(st.sampled_from(["ro", "rw"]))))
        elif kind == "munmap":
            t = target_for(p)
            if t is None:
                continue
            add(A.Munmap(p, t))
        elif kind == "fork" and len(lay.procs) < max_procs:
            add(A.Fork(p, "ABCDEFGH"[len(lay.procs)]))
        elif kind == "exit" and len(alive) > 1:
            add(A.Exit(p))
        elif kind == "pin":
            t = target_for(p)
            if t is None or t.lo is None:
                continue
            if lay.procs[p].pins.get((t.region, t.lo), 0) >= 2:
                continue
            add(A.Pin(p, A.Target(t.region, t.lo, t.lo)))
        elif kind == "unpin":
            mine = [k for k, n in lay.procs[p].pins.items() if n > 0]
            if not mine:
                continue
            region, i = draw(st.sampled_from(sorted(mine)))
            add(A.Unpin(p, A.Target(region, i, i)))
        elif kind == "settle":
            add(A.KsmSettle())
        elif kind == "scan":
            add(A.KsmScan(draw(st.integers(1, 3))))
        elif kind == "set":
            knob = draw(st.sampled_from(["use_zero_pages", "max_page_sharing"]))
            value = draw(st.integers(0, 1)) if knob == "use_zero_pages" else draw(st.integers(2, 4))
            add(A.KsmSet(knob, value))
        elif kind == "expect":
            t = target_for(p, need_mapped=False)
            if t is None:
                continue
            flags = ["ksm", "zero-page", "swapped", "present", "unmapped", "exclusive"]
            touched = target_for(p, need_touched=True) if draw(st.booleans()) else None
            if touched is not None:
                t = touched
                flags += ["reused", "copied"]
            pred = draw(st.one_of(
                st.sampled_from(flags).map(A.Flag),
                st.integers(0, 3).map(A.Mapcount),
                st.builds(A.Content, st.one_of(st.none(), _BYTES),
                          st.one_of(st.none(), _BYTES)).map(A.HasContent),
            ))
            versions = draw(st.one_of(st.none(), version_sets()))
            add(A.ExpectPage(p, t, draw(st.booleans()), pred, versions))
        elif kind == "counter":
            name = draw(st.sampled_from(["cow_ksm", "pages_shared", "pages_sharing", "pgreuse"]))
            add(A.ExpectCounter(name, draw(st.integers(-3, 3)),
                                draw(st.one_of(st.none(), version_sets()))))
    title = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1,
                         max_size=30).filter(lambda s: s.strip()))
    tags = tuple(draw(st.lists(st.sampled_from(["seed", "fork", "reuse", "copy", "swap"]),
                               max_size=3, unique=True)))
    return A.Scenario(title=title, initial="A", statements=tuple(stmts), tags=tags)
