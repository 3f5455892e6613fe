"""Judging per-process counters and the prctl merge readback."""

from __future__ import annotations

from ksmdiff.judge import FAILED, HELD, SKIPPED, evaluate_expects
from ksmdiff.observe import Record
from ksmdiff.scenario import parse
from ksmdiff.versions import KernelVersion

SCN = parse('''scenario "j"
requires prctl-merge
process A
expect A prctl merge off
A: prctl merge on
expect A prctl merge on
expect counter A ksm_merging_pages +2
expect counter A ksm_zero_pages +0
''')


def test_readback_and_per_process_counters():
    rec = Record(1, 5, {"counter.prctl_merge@A": frozenset([True]),
                        "counter.ksm_merging_pages@A": frozenset([2])})
    res = evaluate_expects(SCN, [rec], KernelVersion.parse("6.6"))
    assert [r.status for r in res] == [HELD, HELD, HELD, SKIPPED]
    assert "was not observed" in res[3].reason
    rec = Record(1, 5, {"counter.prctl_merge@A": frozenset([False]),
                        "counter.ksm_merging_pages@A": frozenset([1])})
    res = evaluate_expects(SCN, [rec], KernelVersion.parse("6.6"))
    assert [r.status for r in res][1:3] == [FAILED, FAILED]


def test_counter_the_version_lacks_is_skipped():
    rec = Record(1, 5, {})
    res = evaluate_expects(SCN, [rec], KernelVersion.parse("5.4"))
    assert res[2].status == SKIPPED and "has no counter" in res[2].reason
