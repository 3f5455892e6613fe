"""From probe messages to records: one scenario's state while it replays
(:class:`ScenarioState`: wire records to ``observe.Record`` fields, frame labels, counters
accumulated, a shared settle's attribution applied).  Pure: the host runner and the lab's
guest backend both feed it the probe's messages (wire.py)."""

from __future__ import annotations

from ksmdiff.observe import (ABSENT, OK, PAGE_FIELDS, PRCTL_MERGE, History, Record, Runs,
                             index_label, proc_abs_counter_key,
                             proc_counter_key)
from ksmdiff.probe import wire as W
from ksmdiff.probe.compiler import Program
from ksmdiff.probe.result import PROBE_COUNTERS, KernelRun
from ksmdiff.scenario import ast as A
from ksmdiff.scenario.ast import Scenario
from ksmdiff.probe.compiler import KSMD_GAUGES
from ksmdiff.versions import KernelVersion, has_feature, has_proc_counter

_SINGLETONS: dict = {}


def _singleton(v) -> frozenset:
    """frozenset([v]), shared: records hold thousands of the same few values."""
    key = (type(v), v)
    got = _SINGLETONS.get(key)
    if got is None:
        got = _SINGLETONS[key] = frozenset([v])
    return got


_COLUMNS: dict = {}


def _page_columns(proc: str, region: str) -> tuple:
    """The columns (observe.Column) of a region's pages, in PAGE_FIELDS order (fault
    last), one tuple object each for the whole process (records share them)."""
    key = (proc, region)
    got = _COLUMNS.get(key)
    if got is None:
        prefix = f"{proc}/{region}"
        got = _COLUMNS[key] = tuple((prefix, n) for n in PAGE_FIELDS)
    return got


_PROC_PLAN: dict = {}


def _proc_keys(version: KernelVersion, proc: str) -> tuple:
    """What a record shows of ``proc``'s entry of "m" on ``version``: ((index in the
    entry's values, change key, value key) for each ksm_stat value the kernel has, the
    prctl merge key or None).  The fact table is asked once per version."""
    plan = _PROC_PLAN.get(version)
    if plan is None:
        plan = _PROC_PLAN[version] = (
            tuple(j for j, name in enumerate(W.PROC_KSM_COUNTERS)
                  if has_proc_counter(version, name)),
            has_feature(version, "prctl-merge"))
    shown, prctl = plan
    return (tuple((j, proc_counter_key(proc, W.PROC_KSM_COUNTERS[j]),
                   proc_abs_counter_key(proc, W.PROC_KSM_COUNTERS[j])) for j in shown),
            proc_counter_key(proc, PRCTL_MERGE) if prctl else None)


class ScenarioState:
    """What the runner knows of one scenario while it replays: its records, its counters
    (cumulative, per name), the KSM frames and pids it has seen, and the attribution of a
    shared settle waiting for the scenario's next record.  No I/O: a backend (host probe
    processes, a lab guest) feeds it the probe's messages."""

    ksm_flag = True    # KPF_KSM tells KSM pages apart; set per instance

    def __init__(self, index: int, scn: Scenario, prog: Program, version: KernelVersion,
                 counters: tuple[str, ...], ksm_flag: bool = True):
        self.index, self.scn, self.prog, self.version = index, scn, prog, version
        self.ksm_flag = ksm_flag         # False: KPF_KSM cannot be trusted, 'ksm' stays absent
        self.counters = counters
        self.records: list[Record] = []
        self.history = History()          # the records' fields, stored as changes
        # the machine-wide ksmd gauges only for a scenario that expects them (it runs alone,
        # after a reap): otherwise absent in a batch and alone alike
        self.cum: dict[str, int] = {c: 0 for c in counters
                                    if c not in KSMD_GAUGES or prog.quiet}
        self.status = OK
        self.reason = ""
        self.done = False
        self.at_barrier: int | None = None
        self.pids: dict[int, int] = {}
        self.all_pids: set[int] = set()
        self.ksm_pfns: dict[int, int] = {}   # pfn -> last record seen KSM
        self.pending: dict | None = None     # barrier attribution waiting for the record
        self.ambiguous = ""
        self.reaped = False
        self.gauge_before: dict[str, int] = {}
        self.gauge_after: dict[str, int] = {}
        self.last_barrier_raw: dict | None = None
        self.proc_base: dict[int, tuple] = {}   # probe proc index -> "m" values at creation
        # the probe's records are runs of changes (wire.py); the pages' state is the
        # history's (observe.History, as runs), and what the last record showed of the
        # faults (fault column -> its runs' ranges) and counters
        self._shown_faults: dict = {}
        self._run_fields: dict = {}            # a run's state -> its fields (shared)
        self._shown_counters: dict = {}
        self._proc_keys: dict = {}             # probe proc index -> _proc_keys()

    def _record(self, msg: dict) -> None:
        k = msg[W.KEY_STMT]
        stmt = self.scn.statements[k]
        procs, regions = self.prog.procs, self.prog.regions
        if isinstance(stmt, A.Fork):
            self.pids[procs.index(stmt.child)] = msg[W.KEY_PID]
            self.all_pids.add(msg[W.KEY_PID])
        elif isinstance(stmt, A.Exit):
            self.pids.pop(procs.index(stmt.proc), None)
        elif isinstance(stmt, A.Exec):
            # same pid, a new mm: its ksm_stat counts from 0 (mm_alloc())
            self.proc_base[procs.index(stmt.proc)] = None
        updates: dict = {}                     # column -> [(lo, hi, value), ...]
        faults: dict = {}                      # fault column -> [(lo, hi, value), ...]
        for e in msg[W.KEY_PAGES]:
            cols = _page_columns(procs[e[W.PROC]], regions[e[W.REGION]])
            lo, hi = e[W.FIRST], e[W.LAST]
            if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo <= hi):
                raise ValueError(f"probe record {k}: bad run of pages {e!r:.200}")
            for col, v in zip(cols, self._fields_of_run(e, lo)):
                got = updates.get(col)
                if got is None:
                    updates[col] = [(lo, hi, v)]
                else:
                    got.append((lo, hi, v))
            if len(e) > W.FAULT:
                faults.setdefault(cols[-1], []).append((lo, hi, _singleton(e[W.FAULT])))
        for pfn in msg.get(W.KEY_KSM_PFNS, ()):
            self.ksm_pfns[pfn] = k
        for p, r, lo, hi in msg.get(W.KEY_GONE, ()):
            for col in _page_columns(procs[p], regions[r])[:-1]:
                updates.setdefault(col, []).append((lo, hi, ABSENT))
        for col, runs in updates.items():
            runs.sort(key=lambda x: x[0])      # (a region's gone runs after its pages')
        # this record's faults, and the last record's that are not faults again go
        shown_f = self._shown_faults
        for col in shown_f.keys() | faults.keys():
            new = faults.get(col, [])
            covered = Runs(new)
            gone = [(x, y, ABSENT) for lo, hi in shown_f.get(col, ())
                    for x, y, v in covered.segments(lo, hi) if v is ABSENT]
            updates[col] = sorted(new + gone, key=lambda x: x[0])
        self._shown_faults = {c: [(lo, hi) for lo, hi, _v in runs]
                              for c, runs in faults.items()}
        delta: dict = {}                       # counter key -> value
        fs = _singleton
        fields: dict = {}
        if W.KEY_COUNTERS in msg:
            measured = msg[W.KEY_COUNTERS]
            for name in list(self.cum):
                if name in PROBE_COUNTERS and name not in measured:
                    # the probe could not measure it (pgreuse on a noisy machine): unknown
                    # from here on, so absent, never guessed
                    del self.cum[name]
            for name, d in measured.items():
                if name in self.cum:
                    self.cum[name] += d
        else:
            self._apply_barrier(msg)
        for name in self.counters:
            if name in self.cum:
                fields["counter." + name] = fs(self.cum[name])
        self._proc_counters(msg, fields)
        shown_c = self._shown_counters
        for fk, v in fields.items():
            if shown_c.get(fk, ABSENT) is not v:
                delta[fk] = v
        for fk in shown_c.keys() - fields.keys():
            delta[fk] = ABSENT
        self._shown_counters = fields
        note = "" if not self.ambiguous else "ambiguous in a batch: " + self.ambiguous
        # (one-element sets, shared between records; the stream keeps what changed)
        view, changed = self.history.commit_runs(updates, delta, shared=True)
        self.records.append(Record(k, stmt.pos.line, view, OK, note, changed))

    def _fields_of_run(self, e: list, lo: int) -> tuple:
        """A run entry's fields, PAGE_FIELDS order without the fault (observe's values:
        one-element sets shared, ABSENT where the field is not there), the frame label an
        IndexLabel where it follows the page index, else the one page it names."""
        present = e[W.PRESENT]
        key = (present, e[W.SWAPPED], e[W.KSM], e[W.ZERO_PAGE], e[W.MAPCOUNT],
               e[W.EXCLUSIVE], e[W.CONTENT], self.ksm_flag)
        got = self._run_fields.get(key)
        fs = _singleton
        if got is None:
            if present:
                got = (fs(True), fs(bool(e[W.SWAPPED])), None,
                       fs(bool(e[W.KSM])) if self.ksm_flag else ABSENT,
                       fs(int(e[W.MAPCOUNT])), fs(bool(e[W.EXCLUSIVE])),
                       # null: PROT_NONE, never loaded
                       ABSENT if e[W.CONTENT] is None else fs(e[W.CONTENT]))
            else:
                got = (fs(False), fs(bool(e[W.SWAPPED])), fs(None), ABSENT, ABSENT, ABSENT,
                       ABSENT)
            self._run_fields[key] = got
        if not present:
            return got
        if e[W.ZERO_PAGE]:
            frame = fs("Z")
        else:
            fp, fr, page = e[W.FRAME_PROC], e[W.FRAME_REGION], e[W.FRAME_PAGE]
            prog = self.prog
            if not (isinstance(fp, int) and 0 <= fp < len(prog.procs) and isinstance(fr, int)
                    and 0 <= fr < len(prog.regions) and isinstance(page, int) and page >= 0):
                raise ValueError(f"probe record: bad frame label in {e!r:.200}")
            prefix = f"{prog.procs[fp]}/{prog.regions[fr]}"
            if e[W.FRAME_FOLLOWS]:
                frame = index_label(prefix, page - lo)
            else:
                frame = fs(f"{prefix}[{page}]")
        return (got[0], got[1], frame, got[3], got[4], got[5], got[6])

    def _proc_counters(self, msg: dict, fields: dict) -> None:
        """Per-process counters (/proc/PID/ksm_stat): the change since the process was
        created, the first process from 0, a child from its values in its fork's record
        (dup_mm() copies the parent's counters on kernels before the fork-counter fix)."""
        keys = self._proc_keys
        for e in msg.get(W.KEY_PROC_KSM) or ():
            p, values = e[W.M_PROC], e[W.M_COUNTERS]
            base = self.proc_base.get(p, ())
            if not base:
                # the first process and an exec'd one from 0; a child from its fork
                base = self.proc_base[p] = ((0,) * len(values) if p == 0 or p in self.proc_base
                                            else tuple(values))
            got = keys.get(p)
            if got is None:
                got = keys[p] = _proc_keys(self.version, self.prog.procs[p])
            shown, prctl_key = got
            for j, key, abs_key in shown:
                if j < len(values) and j < len(base):
                    v = values[j]
                    if v >= 0:
                        fields[key] = _singleton(v - base[j])
                        fields[abs_key] = _singleton(v)
            if prctl_key is not None and len(e) > W.M_MERGE_ANY and e[W.M_MERGE_ANY] >= 0:
                fields[prctl_key] = _singleton(bool(e[W.M_MERGE_ANY]))

    def _apply_barrier(self, msg: dict) -> None:
        pend = self.pending or {}
        self.pending = None
        for name, d in pend.get("direct", {}).items():
            if name in self.cum:
                self.cum[name] += d
        stat = msg.get(W.KEY_KSM_STAT) if pend.get("ksm_stat") else None
        if pend.get("ksm_stat") and stat is None:
            self.ambiguous = self.ambiguous or "no /proc/PID/ksm_stat"
        if stat is not None and not self.ksm_flag:
            self.ambiguous = self.ambiguous or "KPF_KSM unreliable on this kernel"
        elif stat is not None:
            # gauges from this scenario's own state after a shared settle: the probe sums
            # its live processes' /proc/PID/ksm_stat for the record (null: unreadable)
            ksm_frames = msg.get(W.KEY_KSM_FRAMES)
            if not isinstance(ksm_frames, int) or ksm_frames < 0:
                raise ValueError(f"probe record {msg.get(W.KEY_STMT)} after a ksm statement "
                                 f"lacks its KSM frame count {W.KEY_KSM_FRAMES!r}")
            own = {"pages_shared": ksm_frames,
                   "pages_sharing": stat[0] - ksm_frames,
                   "ksm_zero_pages": stat[1]}
            self.gauge_before, self.gauge_after = {}, {}
            for name, v in own.items():
                if name in self.cum:
                    self.gauge_before[name] = self.cum[name]
                    self.gauge_after[name] = self.cum[name] = v
        self.last_barrier_raw = msg

    def result(self, mode: str) -> KernelRun:
        return KernelRun(self.scn, self.version, self.status, self.reason, tuple(self.records),
                         mode, self.prog.salt)
