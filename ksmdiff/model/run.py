"""The interpreter: one scenario statement at a time, a Record after every action."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Optional

from ksmdiff.model import ksm as K
from ksmdiff.model import memory as M
from ksmdiff.model.invariants import Violation, check
from ksmdiff.model.machine import Machine
from ksmdiff.model.state import PageSlot, Process, Region, ZERO_CONTENT
from ksmdiff.observe import (ANY, PRCTL_MERGE, Record, counter_key, label_frames, page_key,
                             proc_counter_key)
from ksmdiff.scenario import ast as A
from ksmdiff.scenario.validate import implied_features
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
SETTLE_MAX_SCANS = 64


@dataclass(frozen=True)
class ModelRun:
    version: KernelVersion
    era: Era
    status: str                       # "ok" | "unsupported"
    reason: str
    records: tuple[Record, ...]
    violations: tuple[Violation, ...]


# Conditions a scenario does not control but the kernel's behaviour depends on: the model
# runs each way and the records allow what either run allows.  name -> (relevant?, why)
ENVIRONMENT = {
    # do_swap_page() frees the swap cache of the page it maps when swap is more than half
    # full (mem_cgroup_swap_full: vm_swap_full() or the memcg's swap.max); only a scenario
    # that pages out can reach it
    "swap_full": (lambda scn: "swap" in implied_features(scn),
                  "swap may be more than half full (do_swap_page() then calls "
                  "try_to_free_swap(), mem_cgroup_swap_full)"),
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
        return ModelRun(version, era, "unsupported",
                        f"kernel {version} lacks {', '.join(FEATURE_NOTES[f] for f in missing)}", (), ())
    why = assumptions(scenario, version)
    names = sorted(why)
    runs = []
    for values in itertools.product((False, True), repeat=len(names)):
        interp = Interpreter(scenario, version, mutant, assume=dict(zip(names, values)))
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
    a record where the runs differ says why in its note."""
    first = runs[0]
    if len(runs) == 1:
        return list(first)
    out = []
    for i, base in enumerate(first):
        fields = dict(base.fields)
        differs = False
        notes = [base.note] if base.note else []
        for other in runs[1:]:
            rec = other[i]
            assert (rec.stmt, rec.line) == (base.stmt, base.line), "runs diverged"
            for key, val in rec.fields.items():
                cur = fields.get(key)
                if cur == val:
                    continue
                differs = True
                fields[key] = ANY if cur is None or cur is ANY or val is ANY else cur | val
            if rec.note and rec.note not in notes:
                notes.append(rec.note)
        if differs:
            notes.append("allows each outcome because " + "; or ".join(reasons))
        out.append(replace(base, fields=fields, note="; ".join(notes)))
    return out


class Interpreter:
    def __init__(self, scn: A.Scenario, version: KernelVersion, mutant: Optional[str],
                 assume: Optional[dict[str, bool]] = None):
        self.scn = scn
        if assume is None:
            # a direct caller (tests): the quiet branch of every environment condition
            assume = {name: False for name in ENVIRONMENT}
            assume.update({n: False for n in FACTS if has_fact(version, n) is None})
        self.m = Machine(version, mutant, assume)
        self.records: list[Record] = []
        self.violations: list[Violation] = []
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
            before = {}
            handler = getattr(self, "do_" + type(s).__name__)
            if isinstance(s, (A.Fill, A.Write, A.ForceWrite, A.Read)):
                p = m.procs[s.proc]
                r = p.regions[s.target.region]
                for idx in s.target.indices(len(r.pages)):
                    slot = r.pages[idx]
                    touched.append((p, r, slot))
                    before[id(slot)] = self._known_frame(slot)
            for _p, _r, slot in touched:
                if slot.maybe_absent:
                    m.may_also(slot, "fresh")   # fork may not have copied its zero pte
                    slot.maybe_absent = False
            handler(s)
            faults = {}
            for p, r, slot in touched:
                after = slot.pte.frame if slot.pte.present else None
                prev = before[id(slot)]
                if prev is None:
                    out = {"fresh"}
                elif after is prev:
                    out = {"reused"}
                else:
                    out = {"copied"}
                out |= m.fault_alternatives.get(id(slot), set())
                faults[(p.name, r.name, slot.index)] = frozenset(out)
            for p in m.procs.values():
                for _r, slot in p.slots():
                    slot.last_frame = self._known_frame(slot)
                if p.alive:
                    self._note_possible_vma_merges(p)
            note = "; ".join(m.notes[n_notes:])
            self.records.append(Record(i, s.pos.line, self.fields(faults), note=note))
            self.violations.extend(check(m, i, s.pos.line))

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
    def fields(self, faults: dict) -> dict:
        m = self.m
        order = []
        for p in m.live_procs():
            for rname, r in p.regions.items():
                for s in r.pages:
                    if s.mapped:
                        f = s.pte.frame if s.pte.present else None
                        order.append(((p.name, rname, s.index), s,
                                      None if f is None else f.fid))
        labels = label_frames(((k, fid) for k, _s, fid in order), zero="Z")
        out: dict = {}
        for key, s, _fid in order:
            pname, rname, idx = key
            pte = s.pte

            def put(name, value):
                out[page_key(pname, rname, idx, name)] = frozenset([value])

            put("present", pte.present)
            put("swapped", pte.swap is not None)
            put("frame", labels[key])
            if s.maybe_absent and pte.present and pte.frame.zero:
                out[page_key(pname, rname, idx, "present")] = frozenset([True, False])
                out[page_key(pname, rname, idx, "frame")] = frozenset(["Z", None])
            if pte.present:
                f = pte.frame
                put("ksm", bool(f.ksm and not f.zero))
                put("mapcount", 0 if f.zero else f.mapcount)
                put("exclusive", (not f.zero) and f.mapcount == 1)
                put("content", str(f.content))
            if key in faults:
                out[page_key(pname, rname, idx, "fault")] = faults[key]
        gauges = self.ksmd_gauges()
        # 6.1-6.4 with PROT_NONE mergeable pages: stable 6.1.y levels took d74943a2f3cd in
        # some form (the lab's 6.1.192 keeps rmap_items for them but merges none), so the
        # rmap_item gauges there are not predicted
        protnone_open = m.has("follow_page_skips_protnone") and any(
            s.prot == "none" and s.mergeable for p in m.live_procs() for _r, s in p.slots())
        for name in COUNTERS:
            if has_counter(m.version, name):
                if name in gauges:
                    out[counter_key(name)] = ANY if protnone_open else frozenset([gauges[name]])
                else:
                    out[counter_key(name)] = m.counter(name)
        for p in m.live_procs():
            base = self.proc_base.get(p.name, {})
            for name, value in self.proc_counters(p).items():
                if has_proc_counter(m.version, name):
                    out[proc_counter_key(p.name, name)] = (
                        ANY if protnone_open and name == "ksm_rmap_items"
                        else frozenset([value - base.get(name, 0)]))
            if has_feature(m.version, "prctl-merge"):
                # >= 6.4 prctl(PR_GET_MEMORY_MERGE): test_bit(MMF_VM_MERGE_ANY)
                out[proc_counter_key(p.name, PRCTL_MERGE)] = frozenset([p.merge_any])
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
        items = [it for p in self.m.procs.values() for it in p.rmap_items.values()]
        unshared = sum(1 for it in items if it.unstable and it.head is None)
        stable = sum(1 for it in items if it.head is not None)
        return {"pages_unshared": unshared,
                "pages_volatile": len(items) - stable - unshared}

    def proc_counters(self, p: Process) -> dict[str, int]:
        """What one process's ksm_stat file shows (proc_pid_ksm_stat()): mm->ksm_rmap_items
        (alloc/free_rmap_item), mm->ksm_merging_pages (++ stable_tree_append(), -- when the item leaves the stable
        tree), mm->ksm_zero_pages (>= 6.6: ++ replace_page() with the zero page, -- when
        such a pte goes: ksm_might_unmap_zero_page())."""
        return {"ksm_rmap_items": len(p.rmap_items),
                "ksm_merging_pages": sum(1 for it in p.rmap_items.values()
                                         if it.head is not None),
                "ksm_zero_pages": sum(1 for _r, s in p.slots()
                                      if s.pte.present and s.pte.ksm_zero)}

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
        region = Region(s.region, m.next_seq(), [PageSlot(i) for i in range(s.npages)])
        # >= 6.4 with MMF_VM_MERGE_ANY: ksm_add_vma() marks the new vma VM_MERGEABLE
        for slot in region.pages:
            slot.mergeable = p.merge_any
        p.regions[s.region] = region           # a re-mmap keeps its place in mmap order

    def do_Fill(self, s: A.Fill) -> None:
        p = self.m.procs[s.proc]
        for slot in self.slots(s.proc, s.target):
            self.user_write(p, slot, A.Content(s.byte))

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
        self.note_split(s.proc, s.target)
        for slot in self.slots(s.proc, s.target):
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
        m.procs[s.child] = child
        self._note_possible_vma_merges(parent)
        for name, r in parent.regions.items():
            cr = Region(name, r.seq, [PageSlot(i) for i in range(len(r.pages))])
            cr.anon_vma = r.anon_vma           # anon_vma_fork()
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
                        # >= 6.17 fork counts the child's KSM zero ptes ("mm/ksm: fix
                        # incorrect KSM counter handling in mm_struct during fork", Donet
                        # Tom 2025, Cc stable); seen on the host's 6.18
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
        # dup_mm() copies the mm's KSM counters (reset in ksm_fork() from the fork-counter
        # fix on); either way ``expect counter C ...`` counts from here
        self.proc_base[s.child] = self.proc_counters(child)

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

    def _observable(self) -> dict:
        return {k: v for k, v in self.fields({}).items()
                if not any(k == counter_key(c) for c in FAULT_COUNTERS)}

    def do_KsmSettle(self, s: A.KsmSettle) -> None:
        """At least two full scans, then until one more changes nothing observable."""
        m = self.m
        for _ in range(SETTLE_MIN_SCANS):
            K.ksm_do_scan_full(m)
        for _ in range(SETTLE_MAX_SCANS):
            before = self._observable()
            K.ksm_do_scan_full(m)
            if self._observable() == before:
                break
        else:
            m.notes.append(f"no fixpoint after {SETTLE_MAX_SCANS} scans")
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
