"""The host's side of a lab boot (ksmdiff/lab/drive.py): plans for the guest's driver, and
records made from its transcripts with the runner's decoder (no VM needed)."""

import json
import shutil

import pytest

from ksmdiff.lab import drive
from ksmdiff.observe import ENVIRONMENT, OK, UNSUPPORTED
from ksmdiff.probe import wire as W
from ksmdiff.probe.compiler import compile_scenario
from ksmdiff.scenario import parse
from ksmdiff.versions import KernelVersion

V54 = KernelVersion.parse("5.4.59")
MERGE = """scenario "two pages merge"
process A
A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
expect A buf[0] ksm
"""
SCAN = """scenario "a scan"
process A
A: mmap buf 1
ksm scan 3
"""


def _start() -> str:
    return json.dumps({"start": 1, "pid": 100, "fields": list(W.PAGE_FIELDS),
                       "records": W.RECORDS_OF_RUNS, "counters": list(W.COUNTERS)})


def _page(i: int, first: int, ksm: int) -> list:
    """A run of one page (wire.PAGE_FIELDS) whose frame's first page is page ``first``."""
    #      proc region first last present swapped frame: proc region page follows
    return [0, 0, i, i, 1, 0, 0, 0, first, 0,
            # ksm zero mapcount exclusive content
            ksm, 0, 2 if ksm else 1, 0 if ksm else 1, "0x5a"]


def _absent(i: int) -> list:
    return [0, 0, i, i, 0, 0, *[None] * 9]


def _merge_transcript(*, before="pages_shared=0 pages_sharing=0 pages_unshared=0 "
                                "full_scans=10",
                      after="pages_shared=1 pages_sharing=1 pages_unshared=1 full_scans=12",
                      trace=(), ksm_before=0, merged=True,
                      header="H release=5.4.59 ksm=1 tracer=0 swap=1 kpf=0 tracer_reason=x"):
    c = {name: 0 for name in W.COUNTERS}      # every counter measured, none moved
    lines = [header, "S 0", "P " + _start(),
             "P " + json.dumps({"s": 0, "c": c, "p": [_absent(0), _absent(1)]}),
             "P " + json.dumps({"s": 1, "c": c, "p": [_page(0, 0, 0), _page(1, 1, 0)]}),
             "P " + json.dumps({"s": 2, "c": c, **({"kp": [7]} if ksm_before else {}),
                                "p": [_page(0, 0, ksm_before), _page(1, 1, 0)]}),
             "P " + json.dumps({"sync": 3}),
             *("T " + t for t in trace),
             f"B 3 0 before {before} after {after}",
             "P " + json.dumps({"s": 3, "k": [2, 0], "kf": 1, "kp": [7],
                                "p": [_page(0, 0, 1), _page(1, 0, 1)]} if merged else
                               {"s": 3, "k": [0, 0], "kf": 0,
                                "p": [_page(0, 0, 0), _page(1, 1, 0)]}),
             "P " + json.dumps({"end": 1}), "Z", ""]
    return "\n".join(lines)


def _session(text: str, version=V54) -> drive.LabSession:
    return drive.LabSession([parse(text)], version, reruns=2)


def test_the_plan_carries_each_program_and_its_ksm_statements():
    scn = parse(SCAN)
    prog = compile_scenario(scn)
    plan = drive.plan_text([[(0, prog)]], tracer=True).decode()
    lines = plan.splitlines()
    assert lines[0] == "ksmdiff-lab-plan 1"
    assert lines[1].split() == ["timeouts", "30.0", "200", "20.0", "6.0", "20.0", "2"]
    assert lines[2:4] == ["tracer 1", "session"]
    head = lines[4].split()
    assert head[:3] == ["scenario", "0", "1"] and int(head[3]) == len(prog.text.encode())
    assert lines[5] == "barrier 1 scan 3"
    assert plan.endswith(prog.text + "end\n")


def test_a_transcript_becomes_the_runners_records():
    """Probe lines decode as on the host; the counters around the settle, less the keeper
    page's share (its rmap_item stays in the unstable tree: pages_unshared), are the
    scenario's; the records agree with the model of 5.4.59."""
    s = _session(MERGE)
    assert s.take_pass(_merge_transcript()) is None       # no divergence: no re-runs
    run, = s.runs
    assert run.status == OK and run.mode == "alone", run.reason
    last = run.records[-1]
    assert last.fields["A/buf[0].ksm"] == {True}
    assert last.fields["A/buf[0].frame"] == last.fields["A/buf[1].frame"]
    assert last.fields["counter.pages_sharing"] == {1}
    assert "counter.stable_nodes_removed" not in last.fields     # no tracepoint on 5.4
    assert s.result()["release"] == "5.4.59" and s.rerun_runs == {}


def test_trace_lines_charge_the_removed_stable_nodes():
    """A kernel with the ksm tracepoints: a ksm_remove_ksm_page of a frame the scenario
    saw as KSM is its stable node; another frame's is not."""
    v = KernelVersion.parse("6.12.1")
    header = "H release=6.12.1 ksm=1 tracer=1 swap=1 kpf=0 tracer_reason=x"
    ev = "ksmd-30 [000] ....  1.0: ksm_remove_ksm_page: ksm pfn {}"
    for pfn, removed in ((7, 1), (4242, 0)):
        s = _session(MERGE, v)
        s.take_pass(_merge_transcript(header=header, ksm_before=1, trace=(ev.format(pfn),)))
        fields = s.runs[0].records[-1].fields
        assert fields["counter.stable_nodes_removed"] == {removed}, s.runs[0].reason


def test_a_ksm_statement_that_failed_is_an_environment_result_in_the_runners_words():
    scn = parse(SCAN)
    prog = compile_scenario(scn)
    stmt = prog.barriers[1]
    assert drive.barrier_error(stmt, "scan-count", 2, 0) == (
        "ksm scan 3: ksmd did 2 full scans (host too slow to stop it in its sleep)")
    assert drive.barrier_error(stmt, "scan-timeout", 0, 0) == (
        "ksmd did not do 3 full scans in 38.0 s")
    s = _session(SCAN)
    text = "\n".join(["H release=5.4.59 ksm=1 tracer=0 swap=1 kpf=0 tracer_reason=x", "S 0",
                      "P " + _start(), "P " + json.dumps({"s": 0, "c": {}, "p": []}),
                      "P " + json.dumps({"sync": 1}),
                      "B 1 0 before full_scans=1 after full_scans=3",
                      "E 1 scan-count 2 0", "Z", ""])
    s.take_pass(text)
    assert s.runs[0].status == ENVIRONMENT
    assert "ksmd did 2 full scans" in s.runs[0].reason


@pytest.mark.parametrize("lines, words", [
    (["X 3  mmap: Cannot allocate memory"], "probe exited with code 3: mmap: Cannot"),
    (["Q"], "probe silent for 90 s"),
    (["P " + json.dumps({"s": 0, "error": "madvise: EINVAL"})], "probe: madvise: EINVAL"),
    ([], "the probe stopped before its end"),
])
def test_a_dead_probe_is_an_environment_result(lines, words):
    """(X: its exit status and stderr; Q: silent for the runner's LINE_TIMEOUT)"""
    s = _session(SCAN)
    s.take_pass("\n".join(["H release=r ksm=1 tracer=0 swap=1 kpf=0 tracer_reason=x",
                           "S 0", "P " + _start(), *lines, "Z", ""]))
    assert s.runs[0].status == ENVIRONMENT and words in s.runs[0].reason


def test_scenarios_the_guest_never_reported_are_environment_results():
    s = _session(SCAN)
    s.take_pass("H release=r ksm=1 tracer=0 swap=1 kpf=0 tracer_reason=x\n"
                "F cannot set /sys/kernel/mm/ksm/run=0: Permission denied\n")
    assert s.runs[0].status == ENVIRONMENT and "cannot set" in s.runs[0].reason
    s = _session(SCAN)
    s.take_pass("")                                        # a pass cut short
    assert s.runs[0].reason == drive.NO_RESULT


def test_what_the_guest_lacks_is_said_as_the_host_runner_says_it():
    s = _session(MERGE)
    s.take_pass(_merge_transcript(header="H release=r ksm=0 tracer=0 swap=0 kpf=0 "
                                         "tracer_reason=no tracefs"))
    assert s.runs[0].reason == "this kernel has no KSM (/sys/kernel/mm/ksm missing)"


def test_a_kernel_whose_kpageflags_marks_every_anon_page_ksm_says_so():
    s = _session(MERGE)
    s.take_pass(_merge_transcript(header="H release=r ksm=1 tracer=1 swap=1 kpf=1 "
                                         "tracer_reason=x"))
    run, = s.runs
    assert run.status == OK and "81401cebfc15" in run.reason
    assert "A/buf[0].ksm" not in run.records[-1].fields     # never guessed
    assert s.result()["kpageflags_ksm_on_plain_anon"] is True


def test_unsupported_scenarios_never_reach_the_guest():
    text = MERGE.replace("process A", "requires prctl-merge\nprocess A")
    s = _session(text)
    assert s.runs[0].status == UNSUPPORTED and s.total() == 0
    assert b"scenario" not in s.first_plan()


def test_a_divergent_scenario_is_replayed_in_fresh_runs():
    """Records that differ from the model of the kernel's version (here: the pages never
    merged) are replayed RERUNS more times, each in a session of its own."""
    s = _session(MERGE)
    text = _merge_transcript(merged=False)
    nxt = s.take_pass(text)
    assert nxt is not None and nxt.decode().count("session\n") == 2
    assert nxt.decode().count("scenario ") == 2
    assert s.take_pass(text + text.replace("S 0", "S 1")) is None
    assert len(s.rerun_runs[0]) == 2 and all(r.status == OK for r in s.rerun_runs[0])


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="no C compiler")
def test_the_driver_builds_static(tmp_path, monkeypatch):
    monkeypatch.setenv("KSMDIFF_CACHE", str(tmp_path))
    try:
        exe = drive.driver_path()
    except Exception as e:           # no static C library on this machine
        pytest.skip(f"cannot build the static driver: {e}")
    from ksmdiff.lab.guest import _is_static
    assert _is_static(exe)
    assert drive.driver_path() == exe                       # cached


def test_a_damaged_transcript_line_fails_its_scenario_only():
    s = _session(SCAN)
    s.take_pass("\n".join(["H release=r ksm=1 tracer=0 swap=1 kpf=0 tracer_reason=x", "S 0",
                           "P " + _start(), "B 9 0 before after", "Z", ""]))
    assert s.runs[0].status == ENVIRONMENT and "bad transcript line" in s.runs[0].reason


def test_a_knob_or_userfaultfd_the_guest_lacks_makes_the_scenario_unsupported():
    """As the host runner says it: a knob with no file (merge_across_nodes without
    CONFIG_NUMA), uffd-wp without CONFIG_USERFAULTFD."""
    text = MERGE.replace("ksm settle", "ksm set merge_across_nodes 0\nksm settle")
    s = _session(text)
    s.take_pass(_merge_transcript(header="H release=r ksm=1 tracer=0 swap=1 kpf=0 uffd=1 "
                                         "knobs=run,pages_shared tracer_reason=x"))
    assert s.runs[0].status == UNSUPPORTED
    assert "no merge_across_nodes knob" in s.runs[0].reason
    assert "CONFIG_NUMA is off" in s.runs[0].reason
    h = drive.parse_header("release=r uffd=0 knobs=a,b tracer_reason=no tracefs here")
    assert not h.uffd and h.knobs == {"a", "b"} and h.tracer_reason == "no tracefs here"


def test_the_guests_seconds_of_each_scenario_come_back_with_the_result():
    """An M line (the driver's CLOCK_MONOTONIC seconds of the reap and of the rest) goes
    into the result for benchmarks; it changes no record."""
    s = _session(MERGE)
    text = _merge_transcript().replace("\nZ\n", "\nM 0.250000 1.500000\nZ\n")
    assert s.take_pass(text) is None
    assert s.runs[0].status == OK, s.runs[0].reason
    assert s.result()["guest_seconds"] == {0: (0.25, 1.5)}
    plain = _session(MERGE)
    plain.take_pass(_merge_transcript())
    assert plain.result()["guest_seconds"] == {}
    assert plain.runs[0].records == s.runs[0].records


def test_a_node_or_cgroup_controller_the_guest_lacks_makes_the_scenario_unsupported():
    """The header's nodes (has_memory) and cgroup (the cgroup2 root's subtree_control)."""
    placed = MERGE.replace("A: mmap buf 2", "A: mmap buf 2 node 1")
    grouped = MERGE.replace("A: mmap buf 2", "A: cgroup g memory-max 4096\nA: mmap buf 2")
    base = "H release=r ksm=1 tracer=0 swap=1 kpf=0 uffd=1 knobs=run"
    for text, header, needle in (
            (placed, base + " nodes=0 cgroup=memory tracer_reason=x", "memory on node 0 only"),
            (placed, base + " nodes=none cgroup=none tracer_reason=x", "CONFIG_NUMA is off"),
            (grouped, base + " nodes=0-1 cgroup= tracer_reason=x", "memory controller"),
            (grouped, base + " nodes=0-1 cgroup=none tracer_reason=x", "no cgroup v2")):
        s = _session(text)
        s.take_pass(_merge_transcript(header=header))
        assert s.runs[0].status == UNSUPPORTED and needle in s.runs[0].reason, header
    s = _session(placed)             # (the transcript is MERGE's: same statements)
    s.take_pass(_merge_transcript(header=base + " nodes=0-1 cgroup=cpu,memory tracer_reason=x"))
    assert s.runs[0].status == OK, s.runs[0].reason
    h = drive.parse_header("release=r nodes=0-1 cgroup=memory,pids tracer_reason=x")
    assert h.nodes == {0, 1} and h.cgroup == {"memory", "pids"}
    old = drive.parse_header("release=r tracer_reason=x")    # a driver that said neither
    assert not old.nodes_said and not old.cgroup_said
