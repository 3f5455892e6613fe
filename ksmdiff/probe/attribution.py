"""Who moved the global counters during a ksm statement: a batch's scenarios share one
settle (or scan), and what ksmd did meanwhile is charged to each by the PFN
ksm_remove_ksm_page reports (stable nodes removed), by the mm of the page break_cow undid
(cow_ksm, from ksm_merge_with_ksm_page and ksm_enter), by each scenario's own state after the
settle (the gauges, checked against the global change: :func:`check_gauges`), or not at all
(the scenario is ambiguous and replays alone).  No I/O (system gives only the event
types): the counters and events come from the backend that ran the statement."""

from __future__ import annotations

from ksmdiff.probe import system
from ksmdiff.probe.compiler import KSMD_GAUGES
from ksmdiff.probe.result import EVENT_COUNTERS, GAUGE_COUNTERS
from ksmdiff.scenario import ast as A


def attribute_barrier(stmt, waiting: list, lives: list, before: dict, after: dict,
                      events: list, mm_owner: dict, unreaped: list) -> tuple:
    """Charge what moved during one ksm statement (``before``/``after``: the global
    counters around it; ``events``: the tracepoints seen meanwhile) to the scenarios
    of the group: sets each waiting scenario's ``pending`` attribution (applied to its
    next record) and ``ambiguous`` when the share cannot be told.  ``mm_owner`` (mm ->
    scenario, from ksm_enter) is updated in place.  Returns (the gauge check for
    :func:`check_gauges` or None, the scenarios ksmd has still not reaped)."""
    delta = {k: after[k] - before[k] for k in after if k in before}
    owner_of_pid = {pid: lv for lv in lives for pid in lv.all_pids}
    removed = {id(lv): 0 for lv in lives}
    breaks = {id(lv): 0 for lv in lives}   # ksmd's break_cow, by scenario
    unowned_breaks = 0
    last_merge = None
    for ev in events:
        if isinstance(ev, system.Enter):   # a scenario process registered this mm
            lv = owner_of_pid.get(ev.pid)
            if lv is not None:
                mm_owner[ev.mm] = lv
            else:
                mm_owner.pop(ev.mm, None)
        elif isinstance(ev, system.Remove):  # stable nodes removed: by PFN
            owners = [lv for lv in lives if ev.pfn in lv.ksm_pfns]
            if len(owners) == 1:
                removed[id(owners[0])] += 1
            elif len(owners) > 1:
                for lv in owners:
                    lv.ambiguous = lv.ambiguous or f"stable node pfn {ev.pfn} in two scenarios"
        elif isinstance(ev, system.Merge):
            # try_to_merge_two_pages: the first page becomes KSM in place (no KSM page
            # yet, error 0); when merging the second into it fails, break_cow undoes
            # the first (one unshare fault: cow_ksm +1), charged to the first page's mm
            if (ev.with_ksm and ev.err and last_merge and not last_merge.with_ksm
                    and not last_merge.err):
                lv = mm_owner.get(last_merge.mm)
                if lv is not None and id(lv) in breaks:
                    breaks[id(lv)] += 1
                else:
                    unowned_breaks += 1
            last_merge = ev
    # pgreuse: ksmd never reuses a page (its unshare faults copy), and the counter is
    # machine-wide and busy (every fork on the machine moves it): a barrier adds 0.
    delta.pop("pgreuse", None)
    # finished scenarios (killed) lose everything they had in the stable tree at the
    # first full scan after: a dead mm's rmap_items all go
    residual: dict[str, int] = {}
    if isinstance(stmt, (A.KsmSettle, A.KsmScan)):
        for lv in unreaped + [lv for lv in lives if lv.done]:
            if not lv.reaped:
                lv.reaped = True
                for name in ("pages_shared", "pages_sharing"):
                    residual[name] = residual.get(name, 0) - lv.cum.get(name, 0)
        unreaped = []
    single = len(lives) == 1
    if single and not any(residual.values()):
        lv = waiting[0]
        direct = dict(delta)
        direct["stable_nodes_removed"] = removed[id(lv)]
        lv.pending = {"direct": direct}
        return None, unreaped
    if isinstance(stmt, A.KsmSet):
        # a knob write (use_zero_pages) scans nothing: no gauge may move
        moved = [k for k in delta if delta[k]]
        for lv in waiting:
            lv.pending = {"direct": {"stable_nodes_removed": removed[id(lv)]}}
            if moved:
                lv.ambiguous = lv.ambiguous or f"{', '.join(moved)} moved during a knob write"
        return None, unreaped
    moved = [k for k in EVENT_COUNTERS if delta.get(k, 0)]
    # Events during a settle: ksmd counts cow_ksm only when it breaks a page it had just
    # made KSM (break_cow), which needs a page it cannot merge - a pinned one (its twin);
    # with every scenario paused and lru_add_drain_all() at each scan start nothing
    # else holds such a reference.  So a batch's one pinning scenario owns them.
    # With several pinning scenarios in the batch the events cannot be told apart: those
    # scenarios are replayed alone (the others, which cannot have caused them, keep 0).
    pinner = [lv for lv in waiting if lv.prog.has_pins]
    owner = waiting[0] if single else (pinner[0] if len(pinner) == 1 else None)
    by_trace = (not single and moved == ["cow_ksm"] and not unowned_breaks
                and sum(breaks.values()) == delta["cow_ksm"])
    if by_trace:        # every break_cow seen and charged to its scenario
        owner, moved = None, []
    for lv in waiting:
        for name in KSMD_GAUGES:   # machine-wide: not this scenario's alone
            lv.cum.pop(name, None)
        direct = {"stable_nodes_removed": removed[id(lv)]}
        if by_trace:
            direct["cow_ksm"] = breaks[id(lv)]
        if lv is owner:   # (reaping dead mms moves no event counter)
            direct.update({k: v for k, v in delta.items() if k in EVENT_COUNTERS})
        elif moved and owner is None and (lv.prog.has_pins or not pinner):
            lv.ambiguous = lv.ambiguous or f"{', '.join(moved)} moved during a shared settle"
        lv.pending = {"direct": direct, "ksm_stat": True}
    return (waiting, delta, residual), unreaped


def check_gauges(chk) -> None:
    """After every scenario reported its barrier record: the per-scenario gauges must add
    up to the global change, else the batch is ambiguous."""
    if not chk:
        return
    waiting, delta, residual = chk
    for name in GAUGE_COUNTERS:
        if name not in delta:
            continue
        total = residual.get(name, 0)
        for lv in waiting:
            if name in lv.gauge_before:
                total += lv.gauge_after[name] - lv.gauge_before[name]
        if total != delta[name]:
            for lv in waiting:
                lv.ambiguous = lv.ambiguous or (
                    f"{name}: scenarios account for {total:+d}, the kernel moved "
                    f"{delta[name]:+d} during a shared settle")
