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

BYTES = (0x11, 0x22, 0x5A, 0xA5, 0xFF)
_BYTES = st.sampled_from(BYTES)
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


def build_statements(ch, max_steps: int = 14, max_procs: int = 3, max_pages: int = 4,
                     expects: bool = True, knobs: bool = True, scans: bool = True) -> list:
    """The statements of a valid scenario of at most ``max_steps`` statements, every
    choice made by ``ch`` (:class:`HypothesisChoices` or :class:`RandomChoices`).  Without
    ``scans`` the only ksm statement is ``ksm settle``, so that the batch runner can put
    any number of such scenarios in one batch (their ksm statements agree at every index)."""
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
        r, ok = ch.pick(choices)
        n = regions[r].npages
        if set(ok) == set(range(n)) and ch.coin():
            return A.Target(r)
        lo = ch.pick(ok)
        hi = lo
        while hi + 1 in ok and hi + 1 < n and ch.coin():
            hi += 1
        return A.Target(r, lo, hi)

    steps = ch.steps(max_steps)
    if steps >= 6 and max_pages >= 2 and ch.merge_prelude():
        # pages of one content merged into a KSM page mapped by several ptes: what the
        # write-fault paths under test start from
        add(A.Mmap("A", "r0", ch.integer(2, max_pages)))
        n_regions = 1
        add(A.Fill("A", A.Target("r0"), ch.pick(BYTES)))
        add(A.Madvise("A", A.Target("r0"), "mergeable"))
        add(A.KsmSettle())
        steps -= 4
    for _ in range(steps):
        alive = lay.alive()
        if not alive:
            break
        p = ch.pick(alive)
        kinds = ["mmap", "fill", "write", "read", "madvise", "settle", "fork", "mprotect",
                 "munmap", "exit", "pin", "unpin"] + (["scan"] if scans else [])
        if knobs:
            kinds.append("set")
        if expects:
            kinds += ["expect", "expect", "counter"]
        kind = ch.kind(kinds, has_region=bool(lay.procs[p].regions))
        if kind == "mmap" and n_regions < 3:
            name = f"r{n_regions}"
            n_regions += 1
            add(A.Mmap(p, name, ch.integer(1, max_pages)))
        elif kind in ("fill", "write", "read"):
            t = target_for(p, need_rw=kind != "read")
            if t is None:
                continue
            if kind == "fill":
                add(A.Fill(p, t, ch.pick((None,) + BYTES)))
            elif kind == "write":
                add(A.Write(p, t, ch.pick(BYTES)))
            else:
                add(A.Read(p, t))
        elif kind == "madvise":
            t = target_for(p)
            if t is None:
                continue
            advice = ch.pick(["mergeable", "mergeable", "unmergeable", "dontneed"])
            add(A.Madvise(p, t, advice))
        elif kind == "mprotect":
            t = target_for(p)
            if t is None:
                continue
            add(A.Mprotect(p, t, ch.pick(["ro", "rw"])))
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
            region, i = ch.pick(sorted(mine))
            add(A.Unpin(p, A.Target(region, i, i)))
        elif kind == "settle":
            add(A.KsmSettle())
        elif kind == "scan":
            add(A.KsmScan(ch.integer(1, 3)))
        elif kind == "set":
            knob = ch.pick(["use_zero_pages", "max_page_sharing"])
            value = ch.integer(0, 1) if knob == "use_zero_pages" else ch.integer(2, 4)
            add(A.KsmSet(knob, value))
        elif kind == "expect":
            t = target_for(p, need_mapped=False)
            if t is None:
                continue
            flags = ["ksm", "zero-page", "swapped", "present", "unmapped", "exclusive"]
            touched = target_for(p, need_touched=True) if ch.coin() else None
            if touched is not None:
                t = touched
                flags += ["reused", "copied"]
            pred = ch.predicate(flags)
            add(A.ExpectPage(p, t, ch.coin(), pred, ch.versions()))
        elif kind == "counter":
            name = ch.pick(["cow_ksm", "pages_shared", "pages_sharing", "pgreuse"])
            add(A.ExpectCounter(name, ch.integer(-3, 3), ch.versions()))
    return stmts


class HypothesisChoices:
    """Choices drawn by Hypothesis (which can then shrink them)."""

    def __init__(self, draw):
        self.draw = draw

    def pick(self, seq):
        return self.draw(st.sampled_from(list(seq)))

    def integer(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def coin(self):
        return self.draw(st.booleans())

    def predicate(self, flags):
        return self.draw(st.one_of(
            st.sampled_from(flags).map(A.Flag),
            st.integers(0, 3).map(A.Mapcount),
            st.builds(A.Content, st.one_of(st.none(), _BYTES),
                      st.one_of(st.none(), _BYTES)).map(A.HasContent)))

    def versions(self):
        return self.draw(st.one_of(st.none(), version_sets()))

    def steps(self, max_steps):
        return self.integer(1, max_steps)

    def kind(self, kinds, has_region=True):
        return self.pick(kinds)

    def merge_prelude(self):
        return False                 # Hypothesis finds its own way there, and shrinks


# ``RandomChoices.kind``'s weights (others 1)
KIND_WEIGHTS = {"fill": 3, "write": 3, "madvise": 3, "settle": 3, "fork": 2}


class RandomChoices:
    """The same choices from a seeded ``random.Random``: no per-example engine, for
    drawing thousands of scenarios a second (``ksmdiff fuzz``); deterministic for a seed."""

    def __init__(self, rng):
        self.rng = rng

    def pick(self, seq):
        seq = seq if isinstance(seq, (list, tuple)) else list(seq)
        return seq[self.rng.randrange(len(seq))]

    def integer(self, lo, hi):
        return self.rng.randint(lo, hi)

    def coin(self):
        return self.rng.random() < 0.5

    def predicate(self, flags):
        k = self.rng.randrange(3)
        if k == 0:
            return A.Flag(self.pick(flags))
        if k == 1:
            return A.Mapcount(self.integer(0, 3))
        return A.HasContent(A.Content(self.pick((None,) + BYTES), self.pick((None,) + BYTES)))

    def steps(self, max_steps):
        """At least half of ``max_steps``: a scenario of one or two steps merges nothing."""
        return self.rng.randint(max(1, max_steps // 2), max_steps)

    def merge_prelude(self):
        """A third of the scenarios start from merged pages."""
        return self.rng.random() < 1 / 3

    def kind(self, kinds, has_region=True):
        """Weighted towards the path to a KSM write fault (mmap first, fill the same bytes,
        madvise mergeable, settle, write): drawn uniformly (and without the merge prelude),
        0-2 of 512 caught a 5.1-5.8 model that reuses a KSM page mapped twice."""
        if not has_region and "mmap" in kinds and self.rng.random() < 0.8:
            return "mmap"
        weights = [KIND_WEIGHTS.get(k, 1) for k in kinds]
        return self.rng.choices(kinds, weights)[0]

    def versions(self):
        if self.coin():
            return None
        clauses = []
        for _ in range(self.integer(1, 3)):
            op = self.pick(["==", "<", "<=", ">", ">=", ".."])
            lo = self.pick(_VERSIONS)
            if op == "..":
                clauses.append(VersionClause(op, lo, self.pick([v for v in _VERSIONS if v >= lo])))
            else:
                clauses.append(VersionClause(op, lo))
        return VersionSet(tuple(clauses))


def random_scenario(rng, title: str = "fuzz", **kw) -> A.Scenario:
    """A valid scenario drawn from ``rng`` (``random.Random``); ``kw``: build_statements'."""
    return A.Scenario(title=title, initial="A",
                      statements=tuple(build_statements(RandomChoices(rng), **kw)))


@st.composite
def scenarios(draw, max_steps: int = 14, max_procs: int = 3, max_pages: int = 4,
              expects: bool = True, knobs: bool = True, scans: bool = True) -> A.Scenario:
    """A valid scenario of at most ``max_steps`` statements."""
    stmts = build_statements(HypothesisChoices(draw), max_steps, max_procs, max_pages,
                             expects, knobs, scans)
    title = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1,
                         max_size=30).filter(lambda s: s.strip()))
    tags = tuple(draw(st.lists(st.sampled_from(["seed", "fork", "reuse", "copy", "swap"]),
                               max_size=3, unique=True)))
    return A.Scenario(title=title, initial="A", statements=tuple(stmts), tags=tags)
