"""Runner pieces for the reach statements that need no root: per-process counters from a
probe line, the keeper page's share of the ksmd gauges, the compiler's solo reasons."""

from __future__ import annotations

from ksmdiff.probe import runner
from ksmdiff.probe.compiler import compile_scenario
from ksmdiff.probe.decode import ScenarioState
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import parse
from ksmdiff.versions import KernelVersion


def _live(scn, version="6.12"):
    # the decoding state alone (no probe process)
    lv = runner._Live.__new__(runner._Live)
    ScenarioState.__init__(lv, 0, scn, compile_scenario(scn), KernelVersion.parse(version),
                           (), True)
    return lv


def test_per_process_counters_count_from_creation():
    scn = parse('scenario "s"\nprocess A\nA: mmap b 1\nA: fork B\nA: fill b 0x11\n')
    lv = _live(scn)
    lv._record({"s": 0, "p": [], "m": [[0, 2, 1, 0, 0]]})
    # the child's record at its fork: its values then are its baseline (inherited before
    # the fork-counter fix)
    lv._record({"s": 1, "pid": 99, "p": [], "m": [[0, 3, 2, 0, 1], [1, 3, 2, 0, 1]]})
    lv._record({"s": 2, "p": [], "m": [[0, 4, 2, 0, 1], [1, 5, 3, -1, 1]]})
    f = {k: next(iter(v)) for k, v in lv.records[-1].fields.items()}
    assert f["counter.ksm_rmap_items@A"] == 4 and f["counter.ksm_merging_pages@A"] == 2
    assert f["counter.ksm_rmap_items@B"] == 2 and f["counter.ksm_merging_pages@B"] == 1
    assert "counter.ksm_zero_pages@B" not in f          # -1: the kernel has no such value
    assert f["counter.prctl_merge@A"] is True
    # a kernel without the counters leaves them absent
    lv = _live(scn, "5.4")
    lv._record({"s": 0, "p": [], "m": [[0, 2, 1, 0, -1]]})
    assert not [k for k in lv.records[-1].fields if "@" in k]


def test_keeper_share_follows_its_rmap_item():
    k = runner._KeeperItem()
    assert k.share() == {"pages_unshared": 1, "pages_volatile": 0, "pages_skipped": 0}
    k.removed()
    assert k.share()["pages_unshared"] == 0 and k.share()["pages_volatile"] == 0
    k.scan(False)
    assert k.share() == {"pages_unshared": 0, "pages_volatile": 1, "pages_skipped": 0}
    k.scan(False)
    assert k.share()["pages_unshared"] == 1
    # smart scan: ages 0-2 scanned, 3 sets one skip, 4 skipped, ...
    k = runner._KeeperItem()
    for _ in range(13):
        k.scan(True)
    assert k.skipped == 7


def test_session_correction_subtracts_the_keeper():
    sess = runner._Session.__new__(runner._Session)
    sess.keeper = runner._KeeperItem()
    delta = {"pages_unshared": -1, "pages_volatile": 0, "full_scans": -5}
    sess._keeper_correction(A.KsmUnmergeAll(), delta, False)
    assert delta["pages_unshared"] == 0
    delta = {"pages_unshared": 1, "pages_volatile": 1, "full_scans": 1}
    sess._keeper_correction(A.KsmScan(1), delta, False)
    assert delta == {"pages_unshared": 1, "pages_volatile": 0, "full_scans": 1}


def test_compiler_runs_global_scenarios_alone():
    head = 'scenario "s"\nprocess A\nA: mmap b 1\n'
    gauges = compile_scenario(parse(head + "ksm settle\nexpect counter pages_unshared +0\n"))
    assert gauges.quiet and any("ksmd-wide" in r for r in gauges.solo_reasons)
    unmerge = compile_scenario(parse(head + "ksm unmerge-all\n"))
    assert unmerge.unmerge_all and unmerge.quiet and unmerge.solo_reasons
    smart = compile_scenario(parse(head + "ksm set smart_scan 1\nksm scan 1\n"))
    assert any("smart_scan" in r for r in smart.solo_reasons)
    plain = compile_scenario(parse(head + "ksm settle\nexpect counter pages_shared +0\n"
                                   "expect counter A ksm_rmap_items +0\n"))
    assert not plain.quiet and not plain.solo_reasons


def test_unmerge_all_is_refused_without_allow_global_before_any_probe():
    assert "--allow-global" in runner.UNMERGE_ALL_REFUSED
