"""The machine: every piece of model state plus the small primitives shared by memory.py
and ksm.py (page allocation, ``get_page``/``put_page``, rmap counts, event counters).

Nothing here is version-dependent except through :meth:`Machine.has`, which reads the
kernel fact table (ksmdiff/kernel_facts.py).
"""

from __future__ import annotations

from typing import Iterable, Optional

from ksmdiff.model.state import Frame, KsmState, PageSlot, Process, ZERO_CONTENT
from ksmdiff.observe import ANY
from ksmdiff.scenario.ast import Content
from ksmdiff.versions import Era, KernelVersion, has_fact

# A counter's set of possible values is widened to ANY past this size.
MAX_COUNTER_CHOICES = 64


class _Facts(dict):
    """name -> whether the machine's kernel has kernel fact ``name`` (Machine.has)."""

    def __init__(self, version: KernelVersion, assume: dict[str, bool]):
        super().__init__()
        self._version = version
        self._assume = assume

    def __missing__(self, name: str) -> bool:
        got = has_fact(self._version, name)
        if got is None:
            got = self._assume[name]
        self[name] = got
        return got


class Machine:
    def __init__(self, version: KernelVersion, mutant: Optional[str] = None,
                 assume: Optional[dict[str, bool]] = None, *, keep_frames: bool = True):
        self.version = version
        # the value taken in this run by every kernel fact unknown for ``version`` and by
        # every condition of the environment a scenario does not control (run.ASSUMPTIONS)
        self.assume: dict[str, bool] = dict(assume or {})
        self.era = Era.of(version)
        # the era's variant of a function that has one per era (memory.do_wp_page), looked
        # up once: an Era hashes through a Python call, once a fault is too often
        self.era_variant: dict[str, object] = {}
        self.mutant = mutant
        self.procs: dict[str, Process] = {}
        self.ksm = KsmState()
        self.zero_page = Frame("Z", ZERO_CONTENT, zero=True, anon=False)
        # every frame ever allocated, for callers that inspect them (the tests); a run
        # keeps only the frames still referenced (keep_frames=False)
        self.frames: list[Frame] = []
        self._keep_frames = keep_frames
        # the frames not freed, in allocation order (put_page drops a frame it frees)
        self._live: list[Frame] = []           # those not yet seen freed, oldest first
        self._next_fid = 0
        self._next_seq = 0
        # counter name -> frozenset of possible deltas, or ANY (read it as ``counters``:
        # the plain increments of :meth:`count` wait in ``_pending`` until then)
        self._counters: dict[str, object] = {}
        self._pending: dict[str, int] = {}
        # per-step: slots whose fault outcome may also be something else
        self.fault_alternatives: dict[int, set[str]] = {}
        self.notes: list[str] = []
        self.ksm_churn = False                 # a merge failed on a pinned page (its twin churns)
        # a fault taken by another task than the mm's own (ksmd's break_cow, the run=2
        # writer's break_ksm): that task's mempolicy and cpuset apply, the default ones
        self.foreign_fault = False
        # has(): the fact table, read once per name.  The per-page paths (a fault, ksmd's
        # visit of a page) ask it several times a page, so has() is the dict's own lookup
        # (a C call) and the table fills itself on a miss (_Facts.__missing__)
        self._facts = _Facts(version, self.assume)
        self.has = self._facts.__getitem__

    # ------------------------------------------------------------------ versions
    def has(self, name: str) -> bool:
        """Does the modelled kernel have kernel fact ``name``?  A fact whose stable patch
        level is unknown for this version takes the value assumed for this run (run_model
        runs both and merges the records).  (An instance answers through its fact table:
        ``__init__`` sets ``self.has``.)"""
        return self._facts[name]

    def env(self, name: str) -> bool:
        """A condition of the environment the scenario does not control (``swap_full``),
        as assumed for this run."""
        return self.assume[name]

    # ------------------------------------------------------------------ counters
    def count(self, name: str, n: int = 1) -> None:
        """The counter moves by ``n``.  (Added up in ``_pending`` and applied to its set of
        possible values when the counters are read or a choice is added: every value of
        the set moves by the same sum, so the order makes no difference; ksmd counts
        pages_sharing once per page it merges.)"""
        pending = self._pending
        pending[name] = pending.get(name, 0) + n

    @property
    def counters(self) -> dict[str, object]:
        """counter name -> frozenset of its possible deltas, or ANY."""
        if self._pending:
            self._apply_pending()
        return self._counters

    def _apply_pending(self) -> None:
        counters = self._counters
        for name, n in self._pending.items():
            cur = counters.get(name)
            if cur is None:
                counters[name] = frozenset((n,))
            elif cur is not ANY:
                counters[name] = frozenset(v + n for v in cur)
        self._pending = {}

    def count_choices(self, name: str, choices: Iterable[int]) -> None:
        cur = self.counters.get(name, frozenset([0]))
        if cur is ANY:
            return
        new = frozenset(a + b for a in cur for b in choices)
        self._counters[name] = ANY if len(new) > MAX_COUNTER_CHOICES else new

    def count_any(self, name: str) -> None:
        self.counters[name] = ANY

    def counter(self, name: str):
        return self.counters.get(name, frozenset([0]))

    # ------------------------------------------------------------------ uncertainty
    def may_also(self, slot: PageSlot, outcome: str) -> None:
        self.fault_alternatives.setdefault(id(slot), set()).add(outcome)

    # ------------------------------------------------------------------ pages
    def next_seq(self) -> int:
        self._next_seq += 1
        return self._next_seq

    def alloc_page(self, content: Content, nid: int = 0) -> Frame:
        """alloc_page + __SetPageUptodate: refcount 1, held by the caller; the new page
        goes to a per-CPU LRU-add batch (lru_cache_add / folio_add_lru_vma).  ``nid``: the
        node it comes from (memory.policy_node)."""
        f = Frame(self._next_fid, content)     # (keywords would cost twice the call)
        f.refcount = 1
        f.maybe_pvec = True
        f.nid = nid
        self._next_fid += 1
        if self._keep_frames:
            self.frames.append(f)
        self._live.append(f)
        return f

    def live_frames(self) -> list[Frame]:
        """The frames not freed, in allocation order (a freed page stays freed, so an
        invariant check does not grow with every copy a scenario made)."""
        self._live[:] = [f for f in self._live if not f.freed]
        return self._live

    def frames_newest_first(self):
        """The frames allocated, the most recent first (freed ones among them, back to
        the last live_frames())."""
        return reversed(self._live)

    def get_page(self, f: Frame, n: int = 1) -> None:
        if f.zero:
            return
        f.refcount += n

    def put_page(self, f: Frame, n: int = 1) -> None:
        """put_page; the last reference frees the page (which clears page->mapping, so a
        stable node naming it becomes stale)."""
        if f.zero:
            return
        f.refcount -= n
        if f.refcount == 0 and not f.freed:
            f.freed = True
            f.ksm = False
            f.stable_node = None
            f.anon_exclusive = False

    def page_add_rmap(self, f: Frame) -> None:
        if not f.zero:
            f.mapcount += 1

    def page_remove_rmap(self, f: Frame) -> None:
        if not f.zero:
            f.mapcount -= 1

    def live_procs(self) -> list[Process]:
        return [p for p in self.procs.values() if p.alive]

    def ptes_mapping(self, f: Frame) -> list[tuple[Process, PageSlot]]:
        out = []
        for p in self.live_procs():
            for _r, s in p.slots():
                if s.pte.present and s.pte.frame is f:
                    out.append((p, s))
        return out

    def pin_counts(self) -> dict[int, int]:
        """id(frame) -> its pins, for every pinned frame (one pass over the pins)."""
        out: dict[int, int] = {}
        for p in self.procs.values():
            for lst in p.pins.values():
                for g in lst:
                    out[id(g)] = out.get(id(g), 0) + 1
        return out

    def pins_of(self, f: Frame) -> int:
        return sum(1 for p in self.procs.values() for lst in p.pins.values()
                   for g in lst if g is f)
