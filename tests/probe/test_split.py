"""The runner's pure parts on their own (decode, attribution, plan, result), and the old
names still importable from ksmdiff.probe.runner."""

from __future__ import annotations

from ksmdiff.observe import OK
from ksmdiff.probe import attribution, decode, plan, result, runner, system
from ksmdiff.probe.compiler import compile_scenario
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import parse
from ksmdiff.versions import KernelVersion

V = KernelVersion(5, 4, 59)
SCN = parse('scenario "s"\nprocess A\nA: mmap b 2\nA: fill b 0x11\nA: madvise b mergeable\n'
            'ksm settle\n')
assert isinstance(SCN.statements[3], A.KsmSettle)
COUNTERS = ("cow_ksm", "pgreuse", "pages_shared", "pages_sharing", "stable_nodes_removed")


def state(index=0, scn=SCN) -> decode.ScenarioState:
    return decode.ScenarioState(index, scn, compile_scenario(scn), V, COUNTERS)


def test_old_names_stay_in_the_runner():
    for name in ("KernelRun", "KPF_KSM_NOTE", "EVENT_COUNTERS", "GAUGE_COUNTERS",
                 "PROBE_COUNTERS", "MAX_BATCH", "_pack", "_sets_stable_knobs", "_Plan",
                 "_Live", "_ProbeServer", "_Forked", "_readable", "PROBE_ENV",
                 "run_kernel", "restore", "host_version", "is_root"):
        assert hasattr(runner, name), name
    assert runner.KernelRun is result.KernelRun and runner._pack is plan._pack
    assert issubclass(runner._Live, decode.ScenarioState)


def page(i, first, ksm=1, mapcount=2):
    """A run of one page (wire.PAGE_FIELDS) whose frame's first page is page ``first``."""
    return [0, 0, i, i, 1, 0, 0, 0, first, 0, ksm, 0, mapcount, 0, "0x11"]


def test_a_barrier_record_takes_the_pending_attribution():
    st = state()
    st.pending = {"direct": {"cow_ksm": 1, "stable_nodes_removed": 2, "pages_shared": 1}}
    st._record({"s": 3, "k": None, "kf": 1, "kp": [900], "p": [page(0, 0), page(1, 0)]})
    f = {k: next(iter(v)) for k, v in st.records[-1].fields.items()}
    assert f["counter.cow_ksm"] == 1 and f["counter.stable_nodes_removed"] == 2
    assert f["counter.pages_shared"] == 1 and f["A/b[0].frame"] == f["A/b[1].frame"]
    assert st.ksm_pfns == {900: 3} and st.pending is None and not st.ambiguous
    run = st.result("alone")
    assert run.status == OK and run.mode == "alone" and len(run.records) == 1


def test_gauges_after_a_shared_settle_come_from_the_scenarios_own_state():
    st = state()
    st.pending = {"direct": {}, "ksm_stat": True}
    st._record({"s": 3, "k": [2, 0], "kf": 1, "kp": [900], "p": [page(0, 0), page(1, 0)]})
    assert st.cum["pages_shared"] == 1 and st.cum["pages_sharing"] == 1
    st.pending = {"direct": {}, "ksm_stat": True}
    st._record({"s": 3, "k": None, "kf": 1, "p": []})
    assert "ksm_stat" in st.ambiguous


def test_one_scenario_alone_gets_the_whole_change():
    st = state()
    st.at_barrier = 3
    chk, unreaped = attribution.attribute_barrier(
        SCN.statements[3], [st], [st],
        {"cow_ksm": 5, "pages_shared": 0}, {"cow_ksm": 6, "pages_shared": 1},
        [system.Remove("remove", 77)], {}, [])
    assert chk is None and unreaped == []
    assert st.pending == {"direct": {"cow_ksm": 1, "pages_shared": 1,
                                     "stable_nodes_removed": 0}}


def test_a_shared_settle_charges_removals_by_pfn_and_checks_the_gauges():
    a, b = state(0), state(1)
    a.ksm_pfns, b.ksm_pfns = {10: 1}, {20: 1}
    a.all_pids, b.all_pids = {100}, {200}
    mm = {}
    chk, _ = attribution.attribute_barrier(
        SCN.statements[3], [a, b], [a, b], {"pages_shared": 0, "cow_ksm": 0},
        {"pages_shared": 3, "cow_ksm": 0},
        [system.Enter("enter", 200, "mmB"), system.Remove("remove", 20)], mm, [])
    assert mm == {"mmB": b}
    assert a.pending["direct"]["stable_nodes_removed"] == 0
    assert b.pending["direct"]["stable_nodes_removed"] == 1
    assert a.pending["ksm_stat"] and b.pending["ksm_stat"]
    # the scenarios' own gauges add up to +2 of the kernel's +3: both ambiguous
    a.gauge_before, a.gauge_after = {"pages_shared": 0}, {"pages_shared": 1}
    b.gauge_before, b.gauge_after = {"pages_shared": 0}, {"pages_shared": 1}
    attribution.check_gauges(chk)
    assert "pages_shared" in a.ambiguous and "pages_shared" in b.ambiguous


def test_a_knob_write_that_moves_a_counter_is_ambiguous():
    scn = parse('scenario "s"\nprocess A\nA: mmap b 1\nksm set use_zero_pages 1\n')
    a, b = state(0, scn), state(1, scn)
    chk, _ = attribution.attribute_barrier(scn.statements[1], [a, b], [a, b],
                                           {"pages_shared": 0}, {"pages_shared": 1}, [], {}, [])
    assert chk is None and "moved during a knob write" in a.ambiguous


def test_plan_packs_agreeing_scenarios_together():
    scan = parse('scenario "t"\nprocess A\nA: mmap b 1\nksm scan 2\n')
    progs = {0: compile_scenario(SCN), 1: compile_scenario(SCN), 2: compile_scenario(scan)}
    batches = plan._pack(progs, [0, 1, 2])
    assert sorted(map(sorted, batches)) == [[0, 1], [2]]
    assert not plan._sets_stable_knobs(progs, [0, 1, 2])
