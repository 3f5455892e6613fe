"""What a kernel run of one scenario gives: :class:`KernelRun` (the records and status of
one scenario on one kernel), the counters a probe measures, and the note for a kernel whose
/proc/kpageflags cannot tell KSM pages apart.  Pure: shared by the host runner and the lab."""

from __future__ import annotations

from dataclasses import dataclass

from ksmdiff.observe import Record
from ksmdiff.probe import wire as W
from ksmdiff.scenario.ast import Scenario
from ksmdiff.status import RunStatus
from ksmdiff.versions import KernelVersion

EVENT_COUNTERS = ("cow_ksm", "ksm_swpin_copy", "pgreuse")
GAUGE_COUNTERS = ("pages_shared", "pages_sharing", "ksm_zero_pages")
PROBE_COUNTERS = W.COUNTERS
assert set(PROBE_COUNTERS) == set(EVENT_COUNTERS + GAUGE_COUNTERS)


@dataclass(frozen=True)
class KernelRun:
    scenario: Scenario
    version: KernelVersion
    status: RunStatus
    reason: str = ""
    records: tuple[Record, ...] = ()
    mode: str = ""                   # "batch" | "alone" | ""
    salt: int | None = None


KPF_KSM_NOTE = ("/proc/kpageflags reports KPF_KSM for an anonymous page KSM never merged "
                "(stable_page_flags() of v6.10, dee3d0bef2b0, before its fix 81401cebfc15): "
                "'ksm' is not observable on this kernel, so expects on it are skipped")
