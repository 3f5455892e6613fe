"""Runner behaviour that needs no root: the not-run path, the API surface, restore with no
journal."""

from __future__ import annotations

import pytest

from ksmdiff import probe
from ksmdiff.errors import InvalidArgument
from ksmdiff.observe import ABSENT, NOT_RUN, History
from ksmdiff.probe import runner
from ksmdiff.scenario import parse
from ksmdiff.versions import KernelVersion

SCN = parse('scenario "s"\nprocess A\nA: mmap b 1\nA: fill b 0x11\nksm settle\n')


def test_api_names():
    for name in ("host_version", "run_kernel", "KernelRun", "restore", "is_root"):
        assert hasattr(probe, name)
    assert isinstance(probe.host_version(), KernelVersion)


def test_without_root_kernel_results_are_not_run(monkeypatch):
    monkeypatch.setattr(runner, "is_root", lambda: False)
    seen = []
    runs = runner.run_kernel([SCN, SCN], progress=lambda d, t: seen.append((d, t)))
    assert [r.status for r in runs] == [NOT_RUN, NOT_RUN]
    assert all("root" in r.reason and not r.records for r in runs)
    assert seen[-1] == (2, 2)


def test_run_kernel_rejects_non_scenarios():
    with pytest.raises(InvalidArgument):
        runner.run_kernel(["not a scenario"])


def test_restore_without_journal_is_a_no_op(tmp_path):
    assert "nothing to restore" in runner.restore(str(tmp_path / "journal.json"))


def test_record_fields_from_probe_lines():
    """_Live._record turns a probe line into observe.Record fields (labels per record)."""
    from ksmdiff.probe.compiler import compile_scenario
    scn = parse('scenario "s"\nprocess A\nA: mmap b 3\nA: fill b 0x11\n')
    from ksmdiff.probe.decode import ScenarioState
    from ksmdiff.versions import KernelVersion
    lv = runner._Live.__new__(runner._Live)
    ScenarioState.__init__(lv, 0, scn, compile_scenario(scn), KernelVersion.parse("6.8"),
                           ("cow_ksm", "pgreuse"))
    lv._record({"s": 1, "c": {"cow_ksm": 0, "pgreuse": 2},
                "p": [[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0, "0x11", "fresh"],
                      [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0, "0x11", "copied"],
                      [0, 0, 2, 2, 0, 1, *[None] * 9]]})
    rec = lv.records[0]
    f = {k: next(iter(v)) for k, v in rec.fields.items()}
    assert f["A/b[0].frame"] == "A/b[0]" and f["A/b[1].frame"] == "A/b[0]"
    assert f["A/b[2].frame"] is None and f["A/b[2].swapped"] is True
    assert "A/b[2].ksm" not in f and "A/b[2].content" not in f
    assert f["A/b[1].fault"] == "copied" and f["A/b[0].mapcount"] == 2
    # a kernel whose KPF_KSM cannot be trusted: the same line leaves 'ksm' absent
    lv.ksm_flag = False
    lv._record({"s": 1, "c": {"cow_ksm": 0, "pgreuse": 0},
                "p": [[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0, "0x11", "fresh"]]})
    g = lv.records[-1].fields
    assert "A/b[0].ksm" not in g and "A/b[0].frame" in g
    assert f["counter.pgreuse"] == 2 and rec.stmt == 1 and rec.line == 4
    # a counter the probe could not measure becomes absent from then on
    lv._record({"s": 1, "c": {"cow_ksm": 0}, "p": [], "g": [[0, 0, 0, 2]]})
    assert "counter.pgreuse" not in lv.records[-1].fields
    # the records keep what changed: the last one lists the pages and counter that went
    assert lv.records[-1].delta["counter.pgreuse"] is ABSENT
    assert lv.records[-1].delta["A/b[0].present"] is ABSENT
    assert not [k for k in lv.records[-1].fields if k.startswith("A/")]


def test_trace_lines_parse(monkeypatch, tmp_path):
    """The tracing instance's trace_pipe lines become (kind, ...) events, in order."""
    import os

    from ksmdiff.probe import system
    lines = (
        "  ksmdiff-probe-5-4242    [001] ..... 100.000001: ksm_enter: mm 00000000cafebabe\n"
        "            ksmd-42      [000] ..... 100.000100: ksm_merge_with_ksm_page: "
        "pfn 77 rmap_item 0000000011111111 mm 00000000cafebabe error 0\n"
        "            ksmd-42      [000] ..... 100.000200: ksm_merge_with_ksm_page: "
        "ksm pfn 78 rmap_item 0000000022222222 mm 00000000cafebabe error -14\n"
        "            ksmd-42      [000] ..... 100.000300: ksm_remove_ksm_page: pfn 12345\n"
        "garbage line\n")
    pipe = tmp_path / "trace_pipe"
    pipe.write_text(lines)
    t = system.Tracer.__new__(system.Tracer)
    t.ok, t.instance, t._fd = True, tmp_path, os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    assert t.take_events() == [("enter", 4242, "00000000cafebabe"),
                               ("merge", False, "00000000cafebabe", 0),
                               ("merge", True, "00000000cafebabe", -14),
                               ("remove", 12345)]
    t.close()


def test_no_compiler_is_a_clear_error(monkeypatch, tmp_path):
    from ksmdiff.errors import EnvironmentProblem
    from ksmdiff.probe import build
    monkeypatch.setenv("KSMDIFF_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(EnvironmentProblem, match="no C compiler"):
        build.default_probe()


def test_swap_header_is_what_mkswap_writes(tmp_path):
    """The swap header written without mkswap(8): same version, last_page and signature."""
    import os
    import shutil
    import struct
    import subprocess
    from ksmdiff.probe import system
    ps = os.sysconf("SC_PAGE_SIZE")
    size = 4 << 20
    ours = system._swap_header(size)
    assert len(ours) == ps and ours[ps - 10:] == b"SWAPSPACE2"
    assert struct.unpack_from("=III", ours, 1024) == (1, size // ps - 1, 0)
    assert ours[:1024] == bytes(1024)
    mkswap = shutil.which("mkswap") or next(
        (p for p in ("/usr/sbin/mkswap", "/sbin/mkswap") if os.path.exists(p)), None)
    if mkswap is None:
        pytest.skip("no mkswap to compare with")
    f = tmp_path / "swap"
    f.write_bytes(bytes(size))
    r = subprocess.run([mkswap, str(f)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"mkswap failed: {r.stderr!r}")
    theirs = f.read_bytes()[:ps]
    assert theirs[ps - 10:] == ours[ps - 10:]
    assert theirs[1024:1036] == ours[1024:1036]     # version, last_page, nr_badpages


def test_batches_of_the_corpus_are_few_and_consistent():
    """Every batch's signatures merge, at most one real-zero-page scenario (use_zero_pages
    0) per batch, the knob setters last; the corpus needs 7 groups, 8 copies of it 12 (the half-failed merge needs its own scan 2)."""
    from pathlib import Path

    from ksmdiff.probe.compiler import compile_scenario, merge_signatures
    from ksmdiff.scenario import find_scenarios, parse_file
    root = Path(__file__).resolve().parents[2]
    # the hand-written corpus (corpora/generated and corpora/regressions grow on their own)
    base = [parse_file(p) for p in find_scenarios([str(root / "corpora" / "matrix"),
                                                   str(root / "corpora" / "seed")])]
    for copies, most in ((1, 7), (8, 12)):
        scns = base * copies
        progs = {i: compile_scenario(s) for i, s in enumerate(scns)}
        batches = runner._pack(progs, [i for i in progs if not progs[i].solo_reasons])
        assert sorted(i for b in batches for i in b) == sorted(
            i for i in progs if not progs[i].solo_reasons)
        assert len(batches) <= most, [len(b) for b in batches]
        for b in batches:
            assert len(b) <= runner.MAX_BATCH
            assert sum(progs[i].zero_merges for i in b) <= 1
            sig = ()
            for i in b:
                sig = merge_signatures(sig, progs[i].signature)
                assert sig is not None
    # the plan: max_page_sharing's group comes last
    from ksmdiff.scenario import implied_features
    plan = runner._Plan(type("S", (), {"version": KernelVersion(6, 18)})(), base,
                        list(range(len(base))), {i: implied_features(s) for i, s in
                                                 enumerate(base)}, True, lambda *a: None,
                        have_swap=True, have_tracer=True)
    try:
        # 7 groups, and ksmd-gauges-ksm-stat alone (it expects machine-wide ksmd gauges);
        # unmerge-all is not planned without allow_global
        assert len(plan.plan) == 8
        assert runner._sets_stable_knobs(plan.progs, plan.plan[-1][1])
        assert not any(runner._sets_stable_knobs(plan.progs, m) for _k, m in plan.plan[:-1])
    finally:
        plan.close()
