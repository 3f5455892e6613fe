"""The interpreter: one scenario statement at a time, a Record after every action."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Optional

from ksmdiff.internal.gcpause import collector_paused
from ksmdiff.model import ksm as K
from ksmdiff.model import memory as M
from ksmdiff.model.invariants import Violation, check
from ksmdiff.model.machine import Machine
from ksmdiff.model.state import PageSlot, Process, Region, ZERO_CONTENT
from ksmdiff.observe import (ABSENT, ANY, PAGE_FIELDS, PRCTL_MERGE, History, first_page_after,
                             IndexLabel, Record, changes, index_label, runs_from_points,
                             runs_in_order,
                             proc_abs_counter_key,
                             counter_key, page_key, page_name, proc_counter_key)
from ksmdiff.scenario import ast as A
from ksmdiff.scenario.validate import implied_features
from ksmdiff.status import RunStatus
from ksmdiff.versions import (FEATURE_NOTES, COUNTERS, FACTS, PROC_COUNTERS, Era,
                              KernelVersion, has_counter, has_fact, has_feature,
                              has_proc_counter)

MUTANTS = ("no-freeze", "freeze-at-2", "no-swapcache-check", "no-stable-node-check",
           "reuse-mapcount-2")

# Counters a settle's fixpoint ignores: the fault-time ones keep moving while a pinned twin
# churns, full_scans grows with every scan, and the rmap_item gauges alternate under smart
# scan.
FAULT_COUNTERS = ("cow_ksm", "pgreuse", "ksm_swpin_copy", "full_scans", "pages_unshared",
                  "pages_volatile", "pages_skipped")
SETTLE_MIN_SCANS = 2

# Statements on pages of one process (``P: ... TARGET``): they change only the target
# pages' ptes and the frames those map (run(): observed and checked there only).
LOCAL_STATEMENTS = (A.Fill, A.Write, A.ForceWrite, A.Read, A.Pin, A.Unpin, A.Mlock,
                    A.Munlock, A.UffdWp, A.Mprotect, A.Madvise, A.Munmap)
# ... of which these take faults on the target pages (their ``fault`` fields)
FAULT_STATEMENTS = (A.Fill, A.Write, A.ForceWrite, A.Read)
# ... and these touch no rmap_item (only ksmd's scan, unmerging and exit do)
ITEM_STATEMENTS = (A.Fill, A.Write, A.ForceWrite, A.Read, A.Pin, A.Unpin, A.Mlock,
                   A.Munlock, A.UffdWp, A.Mprotect)
SETTLE_MAX_SCANS = 64
# a page's key in the interpreter's observation (Interpreter._page_key): its region's
# number << PAGE_KEY_SHIFT | its index (the validator keeps a scenario under 2**17 pages)
PAGE_KEY_SHIFT = 20
PAGE_KEY_INDEX = (1 << PAGE_KEY_SHIFT) - 1


def _put_run(points: dict, col, lo: int, hi: int, v) -> None:
    """Pages ``lo``..``hi`` of column ``col`` now read ``v`` (Interpreter.sync): the
    column's runs [lo, hi, value] while they come in page order (a run is the pages of a
    region that changed alike), else its points, index -> value (the later value wins:
    a page that changed again)."""
    got = points.get(col)
    if got is None:
        points[col] = [[lo, hi, v]]
    elif type(got) is list:
        last = got[-1]
        if lo > last[1]:
            if lo == last[1] + 1 and last[2] is v:
                last[1] = hi
            else:
                got.append([lo, hi, v])
            return
        pts = {}
        for a, b, w in got:
            for i in range(a, b + 1):
                pts[i] = w
        for i in range(lo, hi + 1):
            pts[i] = v
        points[col] = pts
    else:
        for i in range(lo, hi + 1):
            got[i] = v


def _frames_of(targets, out: list) -> None:
    """Append to ``out`` the frame each of ``targets``' ptes maps, and the page its swap
    entry names."""
    for _p, _r, slot in targets:
        pte = slot.pte
        if pte.present:
            out.append(pte.frame)
        if pte.swap is not None:
            out.append(pte.swap)


@dataclass(frozen=True)
class ModelRun:
    version: KernelVersion
    era: Era
    status: RunStatus                 # OK or UNSUPPORTED
    reason: str
    records: tuple[Record, ...]
    violations: tuple[Violation, ...]


# Conditions a scenario does not control but the kernel's behaviour depends on: the model
# runs each way and the records allow what either run allows.  name -> (relevant?, why)
def _pages_out(scn: A.Scenario) -> bool:
    """The scenario pages out (MADV_PAGEOUT), so swap-cache conditions can matter."""
    return "swap" in implied_features(scn)


ENVIRONMENT = {
    # do_swap_page() frees the swap cache of the page it maps when swap is more than half
    # full (mem_cgroup_swap_full: vm_swap_full() or the memcg's swap.max); only a scenario
    # that pages out can reach it
    "swap_full": (_pages_out,
                  "swap may be more than half full (do_swap_page() then calls "
                  "try_to_free_swap(), mem_cgroup_swap_full)"),
    # MADV_PAGEOUT starts the write to swap and returns; a page faulted back in and copied
    # before the write completes is still under writeback when >= 5.14 wp_page_copy()
    # calls free_swap_cache(), and try_to_free_swap() keeps it (seen once in a lab 6.1 VM)
    "swap_writeback": (_pages_out,
                       "a page MADV_PAGEOUT wrote may still be under writeback when a "
                       "copy-on-write fault frees it from the swap cache "
                       "(try_to_free_swap() keeps it)"),
    # ksmd's break_cow() copy of a page whose merge a pinned tree page refused is allocated
    # on ksmd's CPU after the scan's lru_add_drain_all(); until a later scan drains it, a
    # MADV_PAGEOUT from the scenario's CPU may not isolate it (not on the LRU yet)
    "ksmd_pvec": (lambda scn: _pages_out(scn)
                  and any(isinstance(s, A.Pin) for s in scn.statements),
                  "ksmd's copy of a page (break_cow) may still sit in its CPU's LRU-add "
                  "batch, so MADV_PAGEOUT may leave it mapped (folio_isolate_lru fails)"),
}

# Statements that reach a kernel fact whose stable patch level may be unknown (a fact not
# listed is assumed reachable by every scenario).
FACT_STATEMENTS = {"gup_breaks_cow": (A.Pin,)}


def assumptions(scenario: A.Scenario, version: KernelVersion) -> dict[str, str]:
    """What the model must run both ways for ``scenario`` on ``version``: name -> why."""
    out: dict[str, str] = {}
    for name, f in FACTS.items():
        if has_fact(version, name) is not None:
            continue
        kinds = FACT_STATEMENTS.get(name)
        if kinds is not None and not any(isinstance(s, kinds) for s in scenario.statements):
            continue
        where = ", ".join(f"{b}+" for b in f.backports if b.branch == version.mm)
        out[name] = (f"the stable patch level of {version} is unknown and {f.commit} "
                     f"({f.summary}) reached that branch at {where}")
    for name, (relevant, why) in ENVIRONMENT.items():
        if relevant(scenario):
            out[name] = why
    return out


# Python's cyclic collector is off while a scenario runs (ksmdiff/internal/gcpause.py):
# a run builds millions of long-lived objects (page states, records' histories) and almost
# no reference cycles (LTP ksm01 at 8,192 pages per child: 13 full collections found 689
# cyclic objects), yet every full collection walks every live object: at 4,096 pages per
# child they were a quarter of the run's CPU time, and their share grows with the scenario.

def run_model(scenario: A.Scenario, version: KernelVersion, *,
              mutant: Optional[str] = None) -> ModelRun:
    """Replay ``scenario`` on the model of kernel ``version``; see the package docstring.

    Where the behaviour depends on something the scenario does not fix (:func:`assumptions`:
    a fact at an unknown stable patch level, swap more than half full), the scenario runs
    once per combination and every record allows what any run allows (with a note)."""
    if not isinstance(version, KernelVersion):
        raise TypeError(f"version must be a KernelVersion, not {type(version).__name__}")
    if mutant is not None and mutant not in MUTANTS:
        raise ValueError(f"unknown mutant {mutant!r}; expected one of {', '.join(MUTANTS)}")
    era = Era.of(version)
    missing = [f for f in implied_features(scenario) if not has_feature(version, f)]
    if missing:
        return ModelRun(version, era, RunStatus.UNSUPPORTED,
                        f"kernel {version} lacks {', '.join(FEATURE_NOTES[f] for f in missing)}", (), ())
    why = assumptions(scenario, version)
    names = sorted(why)
    runs = []
    with collector_paused():
        for values in itertools.product((False, True), repeat=len(names)):
            interp = Interpreter(scenario, version, mutant, assume=dict(zip(names, values)),
                                 keep_frames=False)
            interp.run()
            runs.append(interp)
        records = merge_records([r.records for r in runs], [why[n] for n in names])
    violations: dict = {}
    for r in runs:
        for v in r.violations:
            violations.setdefault(v, None)
    return ModelRun(version, era, "ok", "", tuple(records), tuple(violations))


def merge_records(runs: list[list[Record]], reasons: list[str]) -> list[Record]:
    """Field-wise union of the records of several runs of one scenario (same statements);
    a record where the runs differ says why in its note.  Works on what changed: a field is
    merged again only where some run changed it."""
    first = runs[0]
    if len(runs) == 1:
        return list(first)
    history = History()
    streams = [changes(r) for r in runs]
    differing: set[str] = set()       # keys where the runs differ in the current record
    out = []
    for i, base in enumerate(first):
        recs, keys = [], set()
        for it in streams:
            rec, changed = next(it)
            recs.append(rec)
            keys.update(changed)
        delta: dict = {}
        notes = [base.note] if base.note else []
        for rec in recs[1:]:
            assert (rec.stmt, rec.line) == (base.stmt, base.line), "runs diverged"
            if rec.note and rec.note not in notes:
                notes.append(rec.note)
        for key in keys:
            cur = base.fields.get(key)
            differs = False
            for rec in recs[1:]:
                val = rec.fields.get(key)
                if val is None or cur == val:
                    continue
                differs = True
                cur = ANY if cur is None or cur is ANY or val is ANY else cur | val
            delta[key] = ABSENT if cur is None else cur
            if differs:
                differing.add(key)
            else:
                differing.discard(key)
        if differing:
            notes.append("allows each outcome because " + "; or ".join(reasons))
        view, changed = history.commit_delta(delta)
        out.append(replace(base, fields=view, note="; ".join(notes), delta=changed))
    return out


class Interpreter:
    def __init__(self, scn: A.Scenario, version: KernelVersion, mutant: Optional[str],
                 assume: Optional[dict[str, bool]] = None, *, keep_frames: bool = True):
        self.scn = scn
        if assume is None:
            # a direct caller (tests): the quiet branch of every environment condition
            assume = {name: False for name in ENVIRONMENT}
            assume.update({n: False for n in FACTS if has_fact(version, n) is None})
        self.m = Machine(version, mutant, assume, keep_frames=keep_frames)
        self.cgroup_mems: dict[str, int] = {}  # cgroup -> its cpuset's node (cgroup ... mems)
        self.records: list[Record] = []
        self.violations: list[Violation] = []
        # the stream's fields, as changes (observe.History), and what the last record
        # showed: each page's state tuple (_page_states), the fault keys, the counters
        self.history = History()
        # frame labels (sync; as observe.FrameLabels keeps them), pages keyed by their
        # place (_rank): frame -> {place: None} of the pages mapping it, frame -> its
        # first page's place, frame -> its label (a page name; made when first asked);
        # a frame one page maps, as most are, has its first page only (_pages_of)
        self._fpages: dict = {}
        self._ffirst: dict = {}
        self._flabel: dict = {}
        self._slot_at: dict = {}            # place in page order -> (process, region, slot)
        self._raw: dict = {}                # slot -> its state with the frame itself,
                                            # its key, its place in page order, its
                                            # region's _rank (sync)
        self._ranks: dict = {}              # region -> (process, its page 0's place)
        # pages keyed by their names as an int (_page_key): the region's names' number,
        # shifted, plus the index (an int hashes at once, a tuple of names each time)
        self._cur: dict = {}                # page -> its fields (_page_fields) as last synced
        self._points: dict = {}             # column -> {index: value}: the fields that
                                            # changed since the last record (sync)
        self._page_cols: list = []          # key base >> PAGE_KEY_SHIFT -> its columns
                                            # but ``fault``
        self._key_base: dict = {}           # (process name, region name) -> key base
        self._key_names: list = []          # key base >> PAGE_KEY_SHIFT -> the names
        self._own_labels: list = []         # ... -> _index_label() of the names
        self._items = None                  # the rmap_item counts (ksmd_gauges)
        self._synced = False                # a handler synced every page after its last
                                            # change to them (do_KsmSettle)
        self._protnone = False              # some mprotect ... none ran
        self._shown_faults: dict = {}       # fault column -> {index: None} last shown
        self._columns: dict = {}            # (process, region) -> its columns (observe)
        self._index_labels: dict = {}       # (process, region) -> its IndexLabel (sync)
        self._shown_counters: dict = {}
        self._sets: dict = {}
        self._content_text: dict = {}       # Content -> its text
        self._text_by_id: dict = {}         # id(Content) -> (Content, its text) (sync)
        self._fields_of: dict = {}          # page state -> its fields (_page_fields)
        self._own_fields_of: dict = {}      # ... of a frame mapped once, but its label
        self._fields_by_label: dict = {}    # (id(label), ...) -> (label, fields) (sync)
        self._faults_of: dict = {}          # fault outcome -> its field alone (_fault_set)
        self._plan = None                   # the counters this version shows (_counter_plan)
        self._proc_keys: dict = {}          # (process, counter) -> its two field keys
        self.m.procs[scn.initial] = Process(scn.initial)
        # per-process counters at the creation of each process (``expect counter P NAME``
        # is the change since then): 0 for the first; a child's at fork
        self.proc_base: dict[str, dict[str, int]] = {scn.initial: {}}

    # ------------------------------------------------------------------ driver
    def run(self) -> None:
        for i, s in enumerate(self.scn.statements):
            if not A.is_action(s):
                continue
            m = self.m
            m.fault_alternatives = {}
            m.ksm_churn = False
            n_notes = len(m.notes)
            touched: list[tuple[Process, Region, PageSlot]] = []
            before: list = []                   # each touched page's known frame before
            handler = getattr(self, "do_" + type(s).__name__)
            # a statement on pages of one process changes only those pages' ptes and the
            # frames they map before and after it: only those pages and the pages mapping
            # those frames are observed again (and checked); any other statement, all
            targets = None
            if isinstance(s, LOCAL_STATEMENTS):
                p = m.procs[s.proc]
                r = p.regions.get(s.target.region)
                if r is not None:
                    targets = [(p, r, r.pages[idx]) for idx in s.target.indices(len(r.pages))]
            frames: list = []                   # what the targets map, before and after
            if targets is not None:
                _frames_of(targets, frames)
            if isinstance(s, FAULT_STATEMENTS):
                touched = targets or []
                for _p, _r, slot in touched:
                    pte = slot.pte              # (_known_frame, inline)
                    before.append(pte.frame if pte.present else
                                  pte.swap if pte.swap is not None else slot.last_frame)
            for _p, _r, slot in touched:
                if slot.maybe_absent:
                    m.may_also(slot, "fresh")   # fork may not have copied its zero pte
                    slot.maybe_absent = False
            handler(s)
            faults = {}
            alternatives = m.fault_alternatives
            if touched:
                # (the targets are one region's pages: its names taken once)
                p, r = touched[0][0], touched[0][1]
                kbase = self._page_key(p.name, r.name)
                fault_set = self._fault_set
                for (tp, tr, slot), prev in zip(touched, before):
                    pte = slot.pte
                    if prev is None:
                        outcome = "fresh"
                    elif pte.present and pte.frame is prev:
                        outcome = "reused"
                    else:
                        outcome = "copied"
                    also = alternatives.get(id(slot)) if alternatives else None
                    if tp is not p or tr is not r:
                        p, r = tp, tr
                        kbase = self._page_key(p.name, r.name)
                    faults[kbase + slot.index] = fault_set(outcome, also)
            if targets is None:
                slots = (slot for p in m.procs.values() for r in p.regions.values()
                         for slot in r.pages)
            else:
                slots = (slot for _p, _r, slot in targets)
            for slot in slots:
                if slot.mapped:       # (_known_frame, inline)
                    pte = slot.pte
                    if pte.present:
                        slot.last_frame = pte.frame
                    elif pte.swap is not None:
                        slot.last_frame = pte.swap
            for p in m.procs.values():
                if p.alive:
                    self._note_possible_vma_merges(p)
            if targets is None or not isinstance(s, ITEM_STATEMENTS):
                self._items = None              # the rmap_item counts: count again
            pages = None
            if targets is not None:
                # the pages the statement reaches: its targets and the pages of each
                # frame they mapped before it, then after it (frames hash by identity;
                # each counted once), as far as half the pages: what they map after it
                # is looked at only if what they mapped before does not reach that far
                reach, half = len(targets), len(self._raw) // 2
                counted: set = set()
                for after in (False, True):
                    if after:
                        _frames_of(targets, frames)
                    for f in frames:
                        if reach > half:
                            break
                        if not f.zero and f not in counted:
                            counted.add(f)
                            reach += len(self._pages_of(f))
                    if reach > half:
                        break
                if reach > half:
                    # (most pages: one walk over all of them costs less than the lookups)
                    targets = None
                else:
                    frames = list(dict.fromkeys(f for f in frames if not f.zero))
                    pages = self._with_sharers(targets, frames)
            if self._synced:
                self._synced = False            # (the handler's own last sync holds)
            else:
                self.sync(pages)
            note = "; ".join(m.notes[n_notes:])
            page_runs, counters = self.observe(faults)
            view, delta = self.history.commit_runs(page_runs, counters, shared=True)
            self.records.append(Record(i, s.pos.line, view, note=note, delta=delta))
            if targets is None:
                self.violations.extend(check(m, i, s.pos.line))
            else:
                self.violations.extend(check(m, i, s.pos.line, pages=pages, frames=frames,
                                             sharers=(self._pages_of, self._sharer_names)))

    @staticmethod
    def _note_possible_vma_merges(p: Process) -> None:
        """Adjacent anonymous vmas with equal flags merge (at mmap, mprotect, madvise), and
        a vma that merged with one holding an anon_vma keeps that anon_vma even after a
        split or the neighbour's munmap (found on the host).  The model does not track
        addresses, so once any region of the process has an anon_vma every other one may
        have it too: sticky, and inherited by fork."""
        if any(r.anon_vma and any(x.mapped for x in r.pages) for r in p.regions.values()):
            for r in p.regions.values():
                if not r.anon_vma:
                    r.maybe_merged_anon_vma = True

    @staticmethod
    def _known_frame(slot: PageSlot):
        """The page's last known frame: the mapped one, or the swap-cache page a pageout
        left (the frame survives a pageout), else what the previous step saw."""
        pte = slot.pte
        if pte.present:
            return pte.frame
        if pte.swap is not None:
            return pte.swap
        return slot.last_frame

    # ------------------------------------------------------------------ observations
    def _page_states(self) -> dict:
        """(proc, region, index) -> the page's observable state, for every mapped page of
        every live process in canonical order: (present, swapped, frame label, ksm,
        mapcount, exclusive, content, maybe-absent zero page); the values the page's
        fields show (docs/run-record.md), None where a field is absent.  One pass, no
        field keys: a record is built only from the pages whose tuple changed."""
        labels: dict = {}
        out: dict = {}
        text = self._content_text
        for p in self.m.live_procs():
            pname = p.name
            for rname, r in p.regions.items():
                for s in r.pages:
                    if not s.mapped:
                        continue
                    pte = s.pte
                    swapped = pte.swap is not None
                    if not pte.present:
                        out[(pname, rname, s.index)] = (False, swapped, None, None, None, None,
                                                        None, False)
                        continue
                    f = pte.frame
                    c = text.get(f.content)
                    if c is None:
                        c = text[f.content] = str(f.content)
                    if f.zero:
                        out[(pname, rname, s.index)] = (True, swapped, "Z", False, 0, False, c,
                                                        s.maybe_absent)
                        continue
                    label = labels.get(f.fid)
                    if label is None:       # the frame's first page (observe.FrameLabels)
                        label = labels[f.fid] = page_name(pname, rname, s.index)
                    out[(pname, rname, s.index)] = (True, swapped, label, f.ksm, f.mapcount,
                                                    f.mapcount == 1, c, False)
        return out

    def _fault_set(self, outcome: str, also: Optional[set]) -> frozenset:
        """A page's ``fault`` field: its outcome and ``also`` (Machine.may_also), one shared
        set per distinct value."""
        if also is None:
            got = self._faults_of.get(outcome)
            if got is not None:
                return got
        out = frozenset((outcome,)) if also is None else frozenset(also | {outcome})
        got = self._sets.get(("fault", out))
        if got is None:
            got = self._sets[("fault", out)] = out
        if also is None:
            self._faults_of[outcome] = got
        return got

    def _set(self, name: str, value) -> frozenset:
        """One shared one-element set per (field, value) ({True} == {1}: keyed by field)."""
        got = self._sets.get((name, value))
        if got is None:
            got = self._sets[(name, value)] = frozenset([value])
        return got

    def _page_fields(self, st: tuple) -> tuple:
        """The page's fields, in PAGE_FIELDS order without ``fault`` (ABSENT: not there);
        one tuple per distinct state (most pages of a scenario share a few states), but
        for a page whose frame no other page maps: its label names the page itself, so
        its state is its own (ksm01: one per page, several times over), and only the
        fields but the frame come from the cache."""
        if st[4] == 1 and type(st[2]) is not IndexLabel:
            _present, swapped, label, ksm, _mapcount, exclusive, content, _maybe = st
            key = (swapped, ksm, exclusive, content)
            got = self._own_fields_of.get(key)
            if got is None:
                got = self._own_fields_of[key] = self._make_page_fields(st)
            return (got[0], got[1], self._set("frame", label), got[3], got[4], got[5], got[6])
        got = self._fields_of.get(st)
        if got is None:
            got = self._fields_of[st] = self._make_page_fields(st)
        return got

    def _make_page_fields(self, st: tuple) -> tuple:
        present, swapped, label, ksm, mapcount, exclusive, content, maybe_absent = st
        put = self._set
        if maybe_absent:
            pres, frame = self._MAYBE_PRESENT, self._MAYBE_ZERO
        else:
            pres = put("present", present)
            frame = label if type(label) is IndexLabel else put("frame", label)
        if not present:
            return (pres, put("swapped", swapped), frame, ABSENT, ABSENT, ABSENT, ABSENT)
        return (pres, put("swapped", swapped), frame, put("ksm", ksm),
                put("mapcount", mapcount), put("exclusive", exclusive),
                put("content", content))

    _MAYBE_PRESENT = frozenset([True, False])
    _MAYBE_ZERO = frozenset(["Z", None])
    _NAMES = PAGE_FIELDS[:-1]           # fault is the step's, not the page's
    _GONE = (ABSENT,) * len(_NAMES)

    # -- incremental observation: each page's fields as of the last sync (``_cur``), the
    # frames' labels (observe.FrameLabels), and the pages whose state moved since the last
    # record, as points of the columns they changed (``_points``)

    def _rank(self, p: Process, r: Region) -> tuple:
        """(process, the place of the region's page 0 in canonical page order): processes
        in creation order (an exec'd process keeps its name's place), regions in mmap
        order, pages by index; a page's place is an int, its region's place + its index
        (process and region ranks and index in bit fields: the order is the tuple's; the
        validator keeps a scenario under 2**17 pages, far inside the fields)."""
        got = self._ranks.get(r)
        if got is None or got[0] is not p:
            prank, rrank = list(self.m.procs).index(p.name), list(p.regions).index(r.name)
            got = self._ranks[r] = (p, ((prank << 20) | rrank) << 32)
        return got

    def _place_name(self, place: int) -> str:
        """A frame's label from its first page's place (as last synced): the page's name."""
        p, r, s = self._slot_at[place]
        return page_name(p.name, r.name, s.index)

    def _with_sharers(self, targets: list, frames: list) -> list:
        """``targets`` and every page (as last synced) that maps one of ``frames``."""
        out = list(targets)
        seen = {slot for _p, _r, slot in targets}     # (slots and frames hash by identity)
        slot_at = self._slot_at
        done: set = set()
        for f in frames:
            if f.zero or f in done:
                continue
            done.add(f)
            for place in self._pages_of(f):
                p, r, slot = slot_at[place]
                if slot not in seen:
                    seen.add(slot)
                    out.append((p, r, slot))
        return out

    def _sharer_names(self, f) -> list[str]:
        return [self._place_name(place) for place in self._pages_of(f)]

    def _pages_of(self, f):
        """The places of the pages (as last synced) that map ``f``."""
        got = self._fpages.get(f)
        if got is not None:
            return got
        first = self._ffirst.get(f)
        return () if first is None else (first,)

    def sync(self, pages: Optional[list] = None) -> bool:
        """Bring the pages' states up to date: ``pages`` (process, region, slot) that may
        have changed, or None for every page of every live process (and the pages that
        went).  Returns whether any page's observable state changed.

        Frame labels as observe.FrameLabels keeps them (a frame is named by its first page
        in page order; only the moved pages and the pages of a frame whose first page
        changed are relabelled), held here: each frame's first page (``_ffirst``), the
        pages of a frame more than one page maps (``_fpages``; :meth:`_pages_of`), its
        label (``_flabel``, made when first asked).  What changed goes into the next
        record's points (:meth:`observe`)."""
        raw = self._raw                       # slot -> (state, page key, place, rank)
        fpages, ffirst, flabel = self._fpages, self._ffirst, self._flabel
        moved: dict = {}                      # place -> raw (below) of a page whose state
                                              # or place changed
        touched: dict = {}                    # frame -> the places it gained (lost: [])
        if pages is None:
            groups = [(p, r, r.pages) for p in self.m.live_procs() for r in p.regions.values()]
        else:
            groups = [(p, r, [s]) for p, r, s in pages]
        rank = self._rank
        slot_at = self._slot_at
        key_base = self._key_base
        visited = 0                           # pages synced (each is in raw afterwards)
        st_f = st_last = None                 # the last frame mapped unswapped, its pages'
                                              # state (no state changes in a sync)
        for p, r, slots in groups:
            rk = rank(p, r)
            base = rk[1]
            if not p.alive:
                continue
            kbase = key_base.get((p.name, r.name))
            if kbase is None:
                kbase = self._page_key(p.name, r.name)
            for s in slots:
                if not s.mapped:
                    continue
                visited += 1
                pte = s.pte
                if not pte.present:
                    st = (False, pte.swap is not None, None, None, None, None, False)
                    f = None
                else:
                    f = pte.frame
                    if f is st_f and pte.swap is None:
                        st = st_last           # (a frame's pages in a row: one state)
                    elif f.zero:
                        st = (True, pte.swap is not None, f, False, 0, f.content,
                              s.maybe_absent)
                        f = None
                    elif pte.swap is None:
                        st = st_last = (True, False, f, f.ksm, f.mapcount, f.content, False)
                        st_f = f
                    else:
                        st = (True, True, f, f.ksm, f.mapcount, f.content, False)
                old = raw.get(s)
                if old is not None and old[0] == st and old[3] is rk:
                    continue               # (frames compare by identity; one rank a region)
                lk = base + s.index
                if old is None:
                    fkey = kbase + s.index
                    was = was_lk = None
                else:
                    fkey, was_lk = old[1], old[2]
                    was = old[0]
                    was = was[2] if was[0] and not was[2].zero else None
                    if was_lk != lk:
                        slot_at.pop(was_lk, None)
                raw[s] = got = (st, fkey, lk, rk)
                if old is None or old[3] is not rk:
                    slot_at[lk] = (p, r, s)
                moved[lk] = got
                if was is f and was_lk == lk:
                    continue               # (same frame, same place: no label moves)
                if was is not None:
                    ps = fpages.get(was)
                    if ps is None:
                        # (its only page: the frame goes now, as the touched frames' pass
                        # below would take it out)
                        del ffirst[was]
                        flabel.pop(was, None)
                    else:
                        del ps[was_lk]
                        if not ps:
                            del fpages[was], ffirst[was]
                            flabel.pop(was, None)
                        elif was not in touched:
                            touched[was] = []
                if f is not None:
                    ps = fpages.get(f)
                    if ps is not None:
                        ps[lk] = None
                    else:
                        one = ffirst.get(f)
                        if one is None:
                            # a frame no page mapped: this page is its first and only
                            # one (a page of it that comes later in the batch makes it a
                            # touched frame)
                            ffirst[f] = lk
                            continue
                        fpages[f] = {one: None, lk: None}
                    added = touched.get(f)
                    if added is None:
                        touched[f] = [lk]
                    else:
                        added.append(lk)
        if pages is None:
            # (every page synced is in raw: the others went, if raw holds more)
            if len(raw) == visited:
                gone = []
            else:
                seen = {s for _p, _r, slots in groups for s in slots if s.mapped}
                gone = [s for s in raw if s not in seen]
        else:
            gone = [s for p, r, s in pages if not (s.mapped and p.alive) and s in raw]
        gone_keys = []
        for s in gone:
            st, fkey, lk, _rk = raw.pop(s)
            if st[0] and not st[2].zero:
                f = st[2]
                ps = fpages.get(f)
                if ps is not None:
                    if ps.pop(lk, 0) is None and f not in touched:
                        touched[f] = []
                elif ffirst.get(f) == lk:      # (its only page)
                    del ffirst[f]
                    flabel.pop(f, None)
            if slot_at.get(lk, (None, None, None))[2] is s:
                slot_at.pop(lk)
            gone_keys.append(fkey)
        # each touched frame's first page: a page before it came, or its first page went
        # (then every page of the frame is relabelled)
        others = []
        for f, added in touched.items():
            ps = fpages.get(f)
            old = ffirst.get(f)
            if ps is None and old is not None:
                continue                    # (one page maps it, since it came again)
            if not ps:
                fpages.pop(f, None)
                ffirst.pop(f, None)
                flabel.pop(f, None)
                continue
            new = first_page_after(ps, old, added)
            if new != old:
                ffirst[f] = new
                flabel.pop(f, None)
                for lk in ps:
                    if lk not in moved:
                        got = slot_at.get(lk)
                        if got is not None:
                            others.append(got[2])
        cur = self._cur
        changed = False
        text = self._text_by_id
        # what changed goes straight into the next record's points (observe): each
        # changed field of a page, its new value, as runs of pages while they come in page
        # order (_put_run); a field that changes again before the record is overwritten,
        # one that changes back restates the record's value, which History.commit_runs
        # takes as no change
        points = self._points
        columns = self._page_cols
        gone = self._GONE
        for key in gone_keys:               # (every field the page had goes)
            was = cur.pop(key, None)
            if was is None:
                continue
            changed = True
            idx = key & PAGE_KEY_INDEX
            for c, a in zip(columns[key >> PAGE_KEY_SHIFT], was):
                if a is not ABSENT:
                    _put_run(points, c, idx, idx, ABSENT)
        # (the region of the last changed page, and its change: the old and new fields,
        # the columns it changed with their new values, and the run of pages that
        # changed alike up to it, put into the points when the run ends)
        kbase = cols = t_was = t_new = None
        t_ops: list = []
        t_lo = t_hi = -2
        own = self._own_fields_of
        by_label = self._fields_by_label
        sets = self._sets
        own_labels = self._own_labels
        last_c = last_text = None
        # (the last page's label and state and its fields: the pages of a region mostly
        # follow one another with one value, a KSM page's sharers or unshared pages)
        last_lab = last_sw = last_ksm = last_mc = last_t = last_fields = None
        same_st = same_first = same_index = same_fields = None
        for got in itertools.chain(moved.values(), (raw.get(s) for s in others)):
            if got is None:
                continue
            st, fkey, lk, _rk = got
            if st is same_st and lk != same_first and fkey & PAGE_KEY_INDEX != same_index:
                # (another page of the frame the last page mapped, labelled as that one
                # by the frame's first page: its fields)
                new = same_fields
            elif st[0]:
                f, content = st[2], st[5]
                if content is not last_c:       # (by identity: a page's content is shared
                    got = text.get(id(content))  # by its copies)
                    if got is None or got[0] is not content:
                        got = text[id(content)] = (content, str(content))
                    last_c, last_text = content, got[1]
                mapcount = st[4]
                if f.zero:
                    new = self._page_fields((True, st[1], "Z", st[3], mapcount, False,
                                             last_text, st[6]))
                else:
                    # a page that is its frame's first page, or maps the frame of the
                    # same page of another region (a forked child's COW page): its label
                    # follows its index (observe.IndexLabel), one value for a run of them
                    first = ffirst[f]
                    by_first = False
                    if first == lk:
                        lab = own_labels[fkey >> PAGE_KEY_SHIFT]
                    else:
                        at = slot_at.get(first)
                        if at is not None and at[2].index == fkey & PAGE_KEY_INDEX:
                            lab = self._index_label(at[0].name, at[1].name)
                        else:
                            lab = flabel.get(f)
                            if lab is None:
                                lab = flabel[f] = self._place_name(first)
                            by_first = True     # (the first page's name)
                    if (lab is last_lab and st[1] is last_sw and st[3] is last_ksm
                            and mapcount == last_mc and last_text is last_t):
                        new = last_fields
                    elif mapcount == 1 and type(lab) is not IndexLabel:
                        # (_page_fields' own-frame case, inline)
                        key = (st[1], st[3], True, last_text)
                        base = own.get(key)
                        if base is None:
                            base = own[key] = self._make_page_fields(
                                (True, st[1], lab, st[3], 1, True, last_text, False))
                        fs = sets.get(("frame", lab))
                        if fs is None:
                            fs = sets[("frame", lab)] = frozenset([lab])
                        new = (base[0], base[1], fs, base[3], base[4], base[5], base[6])
                    else:
                        # (one fields tuple per state; keyed by the label object itself:
                        # labels are one object per value, a string or an interned
                        # IndexLabel, which would hash through a Python call)
                        key = (id(lab), st[1], st[3], mapcount, last_text)
                        got = by_label.get(key)
                        if got is None or got[0] is not lab:
                            got = by_label[key] = (lab, self._page_fields(
                                (True, st[1], lab, st[3], mapcount, mapcount == 1,
                                 last_text, False)))
                        new = got[1]
                        last_lab, last_sw, last_ksm, last_mc, last_t, last_fields = (
                            lab, st[1], st[3], mapcount, last_text, new)
                    if by_first:
                        same_st, same_first, same_fields = st, first, new
                        same_index = -1 if at is None else at[2].index
            else:
                new = self._page_fields((False, st[1], None, None, None, None, None, False))
            was = cur.get(fkey)
            if was is new:                  # (equal fields are mostly one tuple)
                continue
            if was is None:
                was = gone
                changed = True
            elif not changed and was == new:
                # (equal, not one tuple: a page's own frame label; the fields are
                # compared by identity below, as values are shared, so equal ones
                # that are not one object only restate what the record shows)
                continue
            else:
                changed = True
            cur[fkey] = new
            idx = fkey & PAGE_KEY_INDEX
            alike = was is t_was and new is t_new and fkey - idx == kbase
            if alike and idx == t_hi + 1:
                t_hi = idx                  # (the run of pages changing alike goes on)
                continue
            for c, v in t_ops:              # (the last run's pages, into the points)
                _put_run(points, c, t_lo, t_hi, v)
            if not alike:
                if fkey - idx != kbase:
                    kbase = fkey - idx
                    cols = columns[kbase >> PAGE_KEY_SHIFT]
                t_was, t_new = was, new
                t_ops = [(c, b) for c, a, b in zip(cols, was, new) if a is not b]
            t_lo = t_hi = idx
        for c, v in t_ops:
            _put_run(points, c, t_lo, t_hi, v)
        return changed

    def observe(self, faults: dict) -> tuple[dict, dict]:
        """The fields that changed since the last record (docs/run-record.md), as
        (column -> runs (lo, hi, value), counter key -> value) for
        :meth:`History.commit_runs`: the fields of pages whose state changed, pages
        that went (every field ABSENT), the faults of this step (and the last step's
        going), counters that moved.  The page fields are what the syncs since the last
        record put into the points (runs of pages that changed alike, or a column's
        points where pages came out of order), merged as runs_from_points merges points
        (an unshared page's own label included); without a key string per field."""
        points = self._points
        self._points = {}
        cur = self._cur
        columns = self._columns
        fault_pages: dict = {}              # fault column -> {index: None}
        kbase = None
        for key, outcomes in faults.items():
            if key in cur:
                idx = key & PAGE_KEY_INDEX
                if key - idx != kbase:
                    kbase = key - idx           # (one region's pages one after another)
                    p, r = self._key_names[kbase >> PAGE_KEY_SHIFT]
                    cols = columns.get((p, r))
                    if cols is None:
                        cols = self._page_columns(p, r)
                    c = cols[-1]
                    got = fault_pages.get(c)
                    if got is None:
                        got = fault_pages[c] = {}
                    pts = points.get(c)
                    if pts is None:
                        pts = points[c] = {}
                got[idx] = None
                pts[idx] = outcomes
        for c, shown in self._shown_faults.items():
            now = fault_pages.get(c, {})
            for idx in shown:
                if idx not in now:
                    pts = points.get(c)
                    if pts is None:
                        pts = points[c] = {}
                    pts[idx] = ABSENT
        self._shown_faults = fault_pages
        counters = self._counter_values()
        shown_c = self._shown_counters
        delta: dict = {}
        for k, v in counters.items():
            if shown_c.get(k, ABSENT) != v:
                delta[k] = v
        for k in shown_c.keys() - counters.keys():
            delta[k] = ABSENT
        self._shown_counters = counters
        page_runs = {}
        for c, got in points.items():
            if type(got) is list:
                page_runs[c] = runs_in_order(got)
            elif got:
                page_runs[c] = runs_from_points(got)
        return page_runs, delta

    def _index_label(self, proc: str, region: str) -> IndexLabel:
        """The frame value of a page whose frame's first page is the page of the same
        index in ``proc``'s region ``region`` (the page itself, or a fork parent's):
        one object for every such page of the region."""
        got = self._index_labels.get((proc, region))
        if got is None:
            got = self._index_labels[(proc, region)] = index_label(f"{proc}/{region}", 0)
        return got

    def _page_key(self, proc: str, region: str) -> int:
        """The key of page 0 of ``proc``'s region ``region`` (the key of page i: this
        + i): one number per pair of names, so a page that goes and a page of the same
        names that comes (exec, a re-mmap) are one page of the record, as their fields'
        keys are."""
        got = self._key_base.get((proc, region))
        if got is None:
            got = self._key_base[(proc, region)] = len(self._key_names) << PAGE_KEY_SHIFT
            self._key_names.append((proc, region))
            self._own_labels.append(self._index_label(proc, region))
            self._page_cols.append(self._page_columns(proc, region)[:-1])
        return got

    def _page_columns(self, proc: str, region: str) -> tuple:
        """The columns of a region's pages (observe.Column), PAGE_FIELDS order (fault
        last): one tuple object each for the whole run."""
        prefix = f"{proc}/{region}"
        got = self._columns[(proc, region)] = tuple((prefix, n) for n in PAGE_FIELDS)
        return got

    def _counter_values(self) -> dict:
        """The counter fields of a record (key -> allowed set): the event counters, the
        gauges that follow ksmd's rmap_items, each live process's ksm_stat counters and its
        prctl merge flag."""
        m = self.m
        out: dict = {}
        gauges = self.ksmd_gauges()
        # 6.1-6.4 with PROT_NONE mergeable pages: stable 6.1.y levels took d74943a2f3cd in
        # some form (the lab's 6.1.192 keeps rmap_items for them but merges none), so the
        # rmap_item gauges there are not predicted
        protnone_open = m.has("follow_page_skips_protnone") and self._protnone and any(
            s.prot == "none" and s.mergeable for p in m.live_procs() for _r, s in p.slots())
        names, proc_names, prctl = self._counter_plan()
        for name, key in names:
            if name in gauges:
                out[key] = ANY if protnone_open else frozenset([gauges[name]])
            else:
                out[key] = m.counter(name)
        keys = self._proc_keys
        for p in m.live_procs():
            base = self.proc_base.get(p.name, {})
            for name, value in self.proc_abs_counters(p).items():
                if name in proc_names:
                    open_ = protnone_open and name == "ksm_rmap_items"
                    k = keys.get((p.name, name))
                    if k is None:
                        k = keys[(p.name, name)] = (proc_counter_key(p.name, name),
                                                    proc_abs_counter_key(p.name, name))
                    out[k[0]] = ANY if open_ else frozenset([value - base.get(name, 0)])
                    out[k[1]] = ANY if open_ else frozenset([value])
            if prctl:
                # >= 6.4 prctl(PR_GET_MEMORY_MERGE): test_bit(MMF_VM_MERGE_ANY)
                out[proc_counter_key(p.name, PRCTL_MERGE)] = frozenset([p.merge_any])
        return out

    def _counter_plan(self) -> tuple:
        """The counters this run's version shows, from the fact table once a run: ((name,
        field key) of each counter it has, the ksm_stat values it has, whether it has
        prctl(PR_GET_MEMORY_MERGE))."""
        plan = self._plan
        if plan is None:
            v = self.m.version
            plan = self._plan = (
                tuple((n, counter_key(n)) for n in COUNTERS if has_counter(v, n)),
                frozenset(n for n in PROC_COUNTERS if has_proc_counter(v, n)),
                has_feature(v, "prctl-merge"))
        return plan

    def fields(self, faults: dict) -> dict:
        """The whole state as a record shows it (for callers outside the run loop)."""
        out: dict = {}
        faults = {(*self._key_names[k >> PAGE_KEY_SHIFT], k & PAGE_KEY_INDEX): v
                  for k, v in faults.items()}
        for key, st in self._page_states().items():
            for name, v in zip(self._NAMES, self._page_fields(st)):
                if v is not ABSENT:
                    out[page_key(*key, name)] = v
            if key in faults:
                out[page_key(*key, "fault")] = faults[key]
        out.update(self._counter_values())
        return out

    def ksmd_gauges(self) -> dict[str, int]:
        """The sysfs gauges that follow ksmd's rmap_items, from the scenario's own items
        (its processes', the exited ones' included until ksmd drops them):
        ``ksm_pages_unshared`` counts rmap_items with UNSTABLE_FLAG (++ in
        unstable_tree_search_insert(), -- in remove_rmap_item_from_tree()); after a full
        scan those are the ones inserted by that scan.  ``pages_volatile`` is
        ksm_rmap_items - pages_shared - pages_sharing - pages_unshared (general sysfs
        show function, every era).  ``pages_skipped`` (>= 6.7) is counted by the smart
        scan (ksm.should_skip_rmap_item), off unless the scenario sets smart_scan."""
        counts = self._item_counts()
        items = sum(c[0] for c in counts.values())
        stable = sum(c[1] for c in counts.values())
        unshared = sum(c[2] for c in counts.values())
        return {"pages_unshared": unshared,
                "pages_volatile": items - stable - unshared}

    def _item_counts(self) -> dict:
        """process name -> (rmap_items, those in the stable tree, those in the unstable
        tree only), one pass over the items; kept while only statements that touch no
        rmap_item run (ITEM_STATEMENTS)."""
        got = self._items
        if got is None:
            got = self._items = {}
            for name, p in self.m.procs.items():
                stable = unstable = 0
                for it in p.rmap_items.values():
                    if it.head is not None:
                        stable += 1
                    elif it.unstable:
                        unstable += 1
                got[name] = (len(p.rmap_items), stable, unstable)
        return got

    def proc_counters(self, p: Process) -> dict[str, int]:
        """What one process's ksm_stat file shows (proc_pid_ksm_stat()): mm->ksm_rmap_items
        (alloc/free_rmap_item), mm->ksm_merging_pages (++ stable_tree_append(), -- when the item leaves the stable
        tree), mm->ksm_zero_pages (>= 6.6: ++ replace_page() with the zero page, -- when
        such a pte goes: ksm_might_unmap_zero_page())."""
        counts = self._item_counts().get(p.name) if self.m.procs.get(p.name) is p else None
        if counts is None:
            counts = (len(p.rmap_items),
                      sum(1 for it in p.rmap_items.values() if it.head is not None), 0)
        # (no pte is a KSM zero pte before replace_page() counted the first one)
        zero = (sum(1 for _r, s in p.slots() if s.pte.present and s.pte.ksm_zero)
                if "ksm_zero_pages" in self.m.counters else 0)
        return {"ksm_rmap_items": counts[0], "ksm_merging_pages": counts[1],
                "ksm_zero_pages": zero}

    def proc_abs_counters(self, p: Process) -> dict[str, int]:
        """The ksm_stat values themselves: the mm's own counts plus what it inherited."""
        return {name: v + p.inherited.get(name, 0)
                for name, v in self.proc_counters(p).items()}

    # ------------------------------------------------------------------ helpers
    def slots(self, proc: str, target: A.Target) -> list[PageSlot]:
        p = self.m.procs[proc]
        r = p.regions[target.region]
        return [r.pages[i] for i in target.indices(len(r.pages))]

    def note_split(self, proc: str, target: A.Target) -> None:
        """An operation on part of a region splits its vma (mprotect, madvise flags,
        munmap), so parts of the region may have different anon_vmas."""
        r = self.m.procs[proc].regions[target.region]
        if len(target.indices(len(r.pages))) < len(r.pages):
            r.split = True

    def user_write(self, p: Process, slot: PageSlot, content) -> None:
        M.handle_mm_fault(self.m, p, slot, write=True)
        assert slot.pte.present and slot.pte.writable, "a write fault left no writable pte"
        slot.pte.frame.content = content
        slot.logical = content

    # ------------------------------------------------------------------ actions
    def do_Mmap(self, s: A.Mmap) -> None:
        m = self.m
        p = m.procs[s.proc]
        region = Region(s.region, m.next_seq(), [PageSlot(i) for i in range(s.npages)],
                        node=s.node)           # mbind(MPOL_BIND, node) right after mmap
        # >= 6.4 with MMF_VM_MERGE_ANY: ksm_add_vma() marks the new vma VM_MERGEABLE
        for slot in region.pages:
            slot.mergeable = p.merge_any
        p.regions[s.region] = region           # a re-mmap keeps its place in mmap order

    def do_Fill(self, s: A.Fill) -> None:
        p = self.m.procs[s.proc]
        content = A.Content(s.byte)
        for slot in self.slots(s.proc, s.target):
            self.user_write(p, slot, content)

    def do_Write(self, s: A.Write) -> None:
        p = self.m.procs[s.proc]
        for slot in self.slots(s.proc, s.target):
            self.user_write(p, slot, A.Content(slot.logical.fill, s.byte))

    def do_ForceWrite(self, s: A.ForceWrite) -> None:
        # /proc/PID/mem: access_remote_vm() -> get_user_pages_remote(FOLL_FORCE |
        # FOLL_WRITE) on a COW mapping: a write fault whatever the protection (< 6.0;
        # check_vma_flags() allows FOLL_FORCE writes to private mappings); in a vma without
        # VM_WRITE the new pte stays read-only (maybe_mkwrite), and the data goes in
        # through the kernel mapping of the page
        p = self.m.procs[s.proc]
        for slot in self.slots(s.proc, s.target):
            content = A.Content(slot.logical.fill, s.byte)
            pte = slot.pte
            if self.m.has("foll_force_writes_exclusive_anon") and pte.present \
                    and not pte.writable and slot.prot != "rw" and not pte.frame.zero \
                    and pte.frame.anon and pte.frame.anon_exclusive:
                # >= 6.0 follow_page_pte() -> can_follow_write_pte(): FOLL_FORCE on an
                # exclusive anon page of a vma without VM_WRITE: no fault (5535be309971);
                # FOLL_TOUCH dirties the page, the pte stays read-only
                pte.frame.content = content
                slot.logical = content
                continue
            M.handle_mm_fault(self.m, p, slot, write=True)
            assert slot.pte.present and not slot.pte.frame.zero, "GUP write left no page"
            slot.pte.frame.content = content
            slot.logical = content

    def do_Read(self, s: A.Read) -> None:
        p = self.m.procs[s.proc]
        for slot in self.slots(s.proc, s.target):
            M.handle_mm_fault(self.m, p, slot)

    def do_Madvise(self, s: A.Madvise) -> None:
        m = self.m
        p = m.procs[s.proc]
        slots = self.slots(s.proc, s.target)
        if s.advice in ("mergeable", "unmergeable"):
            self.note_split(s.proc, s.target)
        if s.advice == "mergeable":
            # ksm_madvise(MADV_MERGEABLE): __ksm_enter on first use, VM_MERGEABLE
            K.ksm_enter(m, p)
            for slot in slots:
                slot.mergeable = True
        elif s.advice == "unmergeable":
            # ksm_madvise(MADV_UNMERGEABLE): only a VM_MERGEABLE vma is unmerged; the
            # rmap_items (and the counters) are cleaned by ksmd later
            merge = [slot for slot in slots if slot.mergeable]
            K.unmerge_ksm_pages(m, p, merge)
            for slot in merge:
                slot.mergeable = False
        elif s.advice == "dontneed":
            for slot in slots:
                M.zap_pte(m, slot)
                slot.logical = ZERO_CONTENT
                slot.last_frame = None
        elif s.advice == "pageout":
            for slot in slots:
                M.madvise_pageout_page(m, slot)
        else:  # pragma: no cover - the parser rejects anything else
            raise AssertionError(s.advice)

    def do_Mprotect(self, s: A.Mprotect) -> None:
        # mprotect_fixup(): a vma whose flags already are the new ones is left alone
        # (newflags == vma->vm_flags: no split, no change_protection(), so a read-only
        # pte of a writable vma stays read-only until its write fault)
        changed = [slot for slot in self.slots(s.proc, s.target) if slot.prot != s.prot]
        if not changed:
            return
        self.note_split(s.proc, s.target)
        if s.prot == "none":
            self._protnone = True
        for slot in changed:
            slot.prot = s.prot
            M.change_pte_range(self.m, slot, s.prot)

    def do_Munmap(self, s: A.Munmap) -> None:
        # munmap(2) of the range's still-mapped pages; pages already unmapped are holes of
        # this region only (no other region ever lands in them: the scenario validator's
        # munmap rule), so they are left as they are
        self.note_split(s.proc, s.target)
        for slot in self.slots(s.proc, s.target):
            if slot.mapped:
                M.zap_pte(self.m, slot)
            slot.had_anon = False
            slot.mapped = False
            slot.mergeable = False
            slot.logical = ZERO_CONTENT
            slot.last_frame = None

    def do_Fork(self, s: A.Fork) -> None:
        m = self.m
        parent = m.procs[s.proc]
        child = Process(s.child)
        child.merge_any = parent.merge_any
        # copy_process(): the task policy is duplicated, the child starts in the cgroup
        child.mempolicy, child.cpuset_mems = parent.mempolicy, parent.cpuset_mems
        m.procs[s.child] = child
        self._note_possible_vma_merges(parent)
        for name, r in parent.regions.items():
            cr = Region(name, r.seq, [PageSlot(i) for i in range(len(r.pages))],
                        node=r.node)           # dup_mmap(): vma_dup_policy()
            if r.av is not None:
                # anon_vma_fork(): anon_vma_clone() links the child's vma to every anon_vma
                # of the parent's, then a new anon_vma of its own (the reuse of an anon_vma
                # no vma uses any more, 7a3ef208e662, is left out)
                cr.av = object()
                cr.av_chain = r.av_chain | {cr.av}
            cr.maybe_merged_anon_vma = r.maybe_merged_anon_vma
            cr.split = r.split
            child.regions[name] = cr
            for ps, cs in zip(r.pages, cr.pages):
                cs.mapped, cs.prot, cs.mergeable = ps.mapped, ps.prot, ps.mergeable
                if not ps.mapped:
                    continue
                cs.logical = ps.logical
                M.copy_pte(m, ps, cs)
                if cs.pte.ksm_zero:
                    if m.has("ksm_zero_pages_fork"):
                        # >= 6.18 (6.12.54 in stable) ksm_fork() counts the child's KSM
                        # zero ptes (4d6fc29f3634); seen on the host's 6.18
                        m.count("ksm_zero_pages")
                    else:
                        # before: not counted at fork but uncounted when the child's
                        # pte goes, and stable branches got the fix at unknown patch
                        # levels: the global delta is not predictable
                        m.count_any("ksm_zero_pages")
                cs.last_frame = self._known_frame(cs)
        # ksm_fork(): a child of an MMF_VM_MERGEABLE mm gets its own mm_slot
        if parent.ksm_entered:
            K.ksm_enter(m, child)
        # dup_mm() copies the mm's KSM counters: ksm_fork() of 6.18 (4d6fc29f3634; 6.17.4,
        # 6.12.y) zeroes ksm_merging_pages and ksm_rmap_items for a child of an
        # MMF_VM_MERGEABLE mm; before, the child shows the parent's values plus its own
        if not (parent.ksm_entered and m.has("ksm_zero_pages_fork")):
            got = self.proc_abs_counters(parent)
            child.inherited = {n: got[n] for n in ("ksm_merging_pages", "ksm_rmap_items")}
        # either way ``expect counter C NAME +N`` counts from here
        self.proc_base[s.child] = self.proc_abs_counters(child)

    def do_Exit(self, s: A.Exit) -> None:
        m = self.m
        p = m.procs[s.proc]
        for lst in p.pins.values():            # the pipe goes: its page references too
            for f in lst:
                m.put_page(f)
        p.pins.clear()
        for _r, slot in list(p.slots()):       # exit_mmap -> zap everything
            M.zap_pte(m, slot)
        p.alive = False
        K.ksm_exit(m, p)

    def do_Exec(self, s: A.Exec) -> None:
        """begin_new_exec() -> exec_mmap(): the old mm is dropped as at exit (mmput ->
        exit_mmap, ksm_exit), the process goes on with the new mm of bprm_mm_init()."""
        m = self.m
        old = m.procs[s.proc]
        for _r, slot in list(old.slots()):       # exit_mmap -> zap everything
            M.zap_pte(m, slot)
        old.alive = False
        K.ksm_exit(m, old)
        new = Process(s.proc)
        if old.merge_any and m.has("ksm_exec_merge_any"):
            # >= 6.6 mm_init() (3c6f33b7273a): MMF_VM_MERGE_ANY is in MMF_INIT_MASK, copied
            # from current->mm; before, the new mm starts without it
            new.merge_any = True
            if m.has("ksm_execve"):
                # >= 6.10 __bprm_mm_init() -> ksm_execve() -> __ksm_enter() (3a9e567ca45f);
                # 6.6..6.9: the flag without an mm_slot, so ksmd never visits the new mm
                K.ksm_enter(m, new)
        # the old mm stays where ksmd can find it dead (its rmap_items until the next scan)
        m.procs[f"{s.proc}#exec{len(m.procs)}"] = old
        m.procs[s.proc] = new
        self.proc_base[s.proc] = {}               # mm_alloc(): the new mm's counters are 0

    def do_Pin(self, s: A.Pin) -> None:
        m = self.m
        p = m.procs[s.proc]
        r = p.regions[s.target.region]
        for idx in s.target.indices(len(r.pages)):
            slot = r.pages[idx]
            slot.maybe_absent = False          # GUP faults it in either way
            if m.has("gup_breaks_cow"):
                # 17839856fd58 "gup: document and work around 'COW can break either way'":
                # FOLL_GET on a COW mapping turns on FOLL_WRITE, so a read-only pte is
                # COW-broken (KSM, fork-shared, zero page) before the pin is taken
                if not (slot.pte.present and slot.pte.writable):
                    # (in a read-only vma the new pte stays read-only: maybe_mkwrite)
                    M.handle_mm_fault(m, p, slot, write=True)
            elif not slot.pte.present:
                # vmsplice -> get_user_pages_fast without FOLL_WRITE: a read fault
                M.handle_mm_fault(m, p, slot)
            f = slot.pte.frame
            m.get_page(f)
            p.pins.setdefault((s.target.region, idx), []).append(f)

    def do_Unpin(self, s: A.Unpin) -> None:
        m = self.m
        p = m.procs[s.proc]
        r = p.regions[s.target.region]
        for idx in s.target.indices(len(r.pages)):
            f = p.pins[(s.target.region, idx)].pop()
            m.put_page(f)

    def do_Mlock(self, s: A.Mlock) -> None:
        # all eras: mlock_fixup() sets VM_LOCKED, then __mm_populate() ->
        # populate_vma_page_range(): FOLL_WRITE when (VM_WRITE | VM_SHARED) == VM_WRITE
        # ("to break COW"), else a read (FOLL_FORCE); GUP faults only where follow_page()
        # finds no page it may use (absent, or read-only for a write)
        self.note_split(s.proc, s.target)
        p = self.m.procs[s.proc]
        for slot in self.slots(s.proc, s.target):
            slot.locked = True
            slot.maybe_absent = False          # populated either way
            write = slot.prot == "rw"
            pte = slot.pte
            if not pte.present or (write and not pte.writable):
                M.handle_mm_fault(self.m, p, slot, write=write)

    def do_Munlock(self, s: A.Munlock) -> None:
        # munlock_fixup(): VM_LOCKED cleared; no fault
        self.note_split(s.proc, s.target)
        for slot in self.slots(s.proc, s.target):
            slot.locked = False

    def do_UffdWp(self, s: A.UffdWp) -> None:
        # >= 5.7 userfaultfd_writeprotect() -> mwriteprotect_range(): present ptes become
        # read-only with the uffd-wp bit (no fault, nothing copied); absent ones get nothing
        for slot in self.slots(s.proc, s.target):
            if slot.pte.present:
                slot.pte.writable = False
                slot.uffd_wp = True

    def do_Cgroup(self, s: A.Cgroup) -> None:
        """cgroup_attach_task() (cgroup v2).  Memory controller: the process's later pages
        are charged to the group (mem_cgroup_charge() at fault, all eras), and charges do
        not follow a move.  Nothing else of the fault or merge paths reads the memcg, and
        try_charge() reclaims only at memory.max, which the validator keeps out of reach
        (memory-max >= the scenario's pages + CGROUP_HEADROOM_PAGES): nothing to keep.
        Cpuset controller: the task's mems_allowed become the group's node
        (memory.policy_node); the validator lets a process enter only while it maps
        nothing, so cpuset_attach()'s page migration has nothing to move."""
        if s.mems is not None:
            self.cgroup_mems[s.group] = s.mems
        self.m.procs[s.proc].cpuset_mems = self.cgroup_mems.get(s.group)

    def do_Mempolicy(self, s: A.Mempolicy) -> None:
        """set_mempolicy(2) (do_set_mempolicy(), all eras): the task's policy, read by
        get_vma_policy() for vmas without their own (memory.policy_node)."""
        self.m.procs[s.proc].mempolicy = s.node

    def do_Prctl(self, s: A.Prctl) -> None:
        m = self.m
        p = m.procs[s.proc]
        if s.on:
            # >= 6.4 ksm_enable_merge_any(): __ksm_enter, MMF_VM_MERGE_ANY, ksm_add_vmas
            if p.merge_any:
                return
            K.ksm_enter(m, p)
            p.merge_any = True
            for _r, slot in p.slots():
                slot.mergeable = True
        else:
            # >= 6.4 ksm_disable_merge_any() (24139c07f413): unmerge and clear VM_MERGEABLE
            # on every vma, then clear MMF_VM_MERGE_ANY
            if not p.merge_any:
                return
            slots = [slot for _r, slot in p.slots() if slot.mergeable]
            K.unmerge_ksm_pages(m, p, slots)
            for slot in slots:
                slot.mergeable = False
            p.merge_any = False

    def _settle_counters(self) -> dict:
        """The counter fields a settle's fixpoint compares: not the fault-time ones."""
        fault = {counter_key(c) for c in FAULT_COUNTERS}
        return {k: v for k, v in self._counter_values().items() if k not in fault}

    def do_KsmSettle(self, s: A.KsmSettle) -> None:
        """At least two full scans, then until one more changes nothing observable (no
        page's state, no counter but the fault-time ones)."""
        m = self.m
        for _ in range(SETTLE_MIN_SCANS):
            K.ksm_do_scan_full(m)
        self._items = None
        self.sync()
        before = self._settle_counters()
        for _ in range(SETTLE_MAX_SCANS):
            K.ksm_do_scan_full(m)
            self._items = None
            moved = self.sync()
            after = self._settle_counters()
            if not moved and after == before:
                break
            before = after           # (nothing runs between a scan and the next)
        else:
            m.notes.append(f"no fixpoint after {SETTLE_MAX_SCANS} scans")
        self._synced = True          # (no page changes after the last scan's sync)
        # a kernel's settle waits for quiet gauges, so it may take more scans than this
        m.count_any("full_scans")
        self._after_scans()

    def do_KsmUnmergeAll(self, s: A.KsmUnmergeAll) -> None:
        # all eras: run_store(KSM_RUN_UNMERGE) -> unmerge_and_remove_all_rmap_items();
        # the runner then writes run=0 (ksmd stays paused between ksm statements)
        K.unmerge_and_remove_all_rmap_items(self.m)

    def do_KsmScan(self, s: A.KsmScan) -> None:
        for _ in range(s.scans):
            K.ksm_do_scan_full(self.m)
        self._after_scans()

    def _after_scans(self) -> None:
        m = self.m
        if m.ksm_churn:
            # a pinned page's unpinned twin is made KSM and broken again on every
            # scan (+1 cow_ksm, new frame); how often depends on the scan count and the
            # scan order of the two pages
            m.count_any("cow_ksm")

    def do_KsmSet(self, s: A.KsmSet) -> None:
        m = self.m
        knobs = m.ksm.knobs
        if s.knob == "use_zero_pages":
            knobs.use_zero_pages = s.value
            return
        if s.knob == "smart_scan":
            # >= 6.7 smart_scan_store(): takes effect at the next rmap_item visited
            knobs.smart_scan = s.value
            return
        if getattr(knobs, s.knob) == s.value:
            return
        # max_page_sharing_store / merge_across_nodes_store: -EBUSY while KSM pages are
        # shared; otherwise remove_all_stable_nodes() first
        if any(node.hlist for node in m.ksm.stable_tree) or not K.remove_all_stable_nodes(m):
            # the lazily kept pages_shared counter is enough to refuse
            m.notes.append(f"ksm set {s.knob} {s.value}: the kernel refuses (EBUSY: KSM "
                           "pages are still counted as shared); the knob keeps its value")
            return
        setattr(knobs, s.knob, s.value)
