"""The corpus on the running kernel: no mismatch with the model, batch == one at a time,
and what this machine's kernel does, measured."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ksmdiff.observe import OK, UNSUPPORTED
from ksmdiff.probe import host_version, run_kernel
from ksmdiff.scenario import parse, parse_file

from _kstate import PKG_ENV, PKG_HOME, ROOT, corpus_paths


@pytest.fixture(scope="module")
def corpus():
    return [parse_file(p) for p in corpus_paths()]


def _fields(run):
    return [{k: v for k, v in r.fields.items()} for r in run.records]


def test_corpus_matches_the_model(corpus, state_kept):
    model = pytest.importorskip("ksmdiff.model")
    judge = pytest.importorskip("ksmdiff.judge")
    version = host_version()
    runs = run_kernel(corpus)
    problems = []
    for scn, run in zip(corpus, runs):
        # (unsupported also: ksm unmerge-all without allow_global, test_unmerge_all.py)
        assert run.status in (OK, UNSUPPORTED), (scn.source, run.status, run.reason)
        if run.status != OK:
            continue
        m = model.run_model(scn, version)
        divs = judge.compare(m.records, run.records)
        problems += [f"{scn.source}: {d.describe()}" for d in divs]
    assert not problems, "\n".join(problems)


def test_cli_run_of_the_corpus_exits_0(state_kept):
    r = subprocess.run([sys.executable, "-m", "ksmdiff.cli", "run", str(ROOT / "corpora"),
                        "--kernel", "host", "-q"], cwd=PKG_HOME, env=PKG_ENV, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_batch_results_equal_one_at_a_time(corpus, state_kept):
    from ksmdiff.observe import ANY
    model = pytest.importorskip("ksmdiff.model")
    batch = run_kernel(corpus, batch=True)
    alone = run_kernel(corpus, batch=False)
    assert any(r.mode == "batch" for r in batch)
    for a, b in zip(batch, alone):
        assert a.status == b.status, a.scenario.source
        fa, fb = _fields(a), _fields(b)
        assert len(fa) == len(fb)
        m = {r.stmt: r for r in model.run_model(a.scenario, host_version()).records}
        for x, y, rec in zip(fa, fb, a.records):
            # pgreuse is absent where a noisy machine made it unmeasurable; fields the
            # model leaves open (a pinned twin churns once per scan) differ between
            # any two runs: compare the rest
            open_ = {k for k, v in m[rec.stmt].fields.items() if v is ANY or len(v) > 1}
            keys = (set(x) | set(y)) - {"counter.pgreuse"} - open_
            diff = {k: (x.get(k), y.get(k)) for k in keys if x.get(k) != y.get(k)}
            assert not diff, (a.scenario.source, diff)


MIXED_ZERO_PAGES = [
    # use_zero_pages=1, real zero pages: merged with the kernel's zero page
    'scenario "z1"\nprocess A\nksm set use_zero_pages 1\nA: mmap b 2\nA: fill b zero\n'
    'A: madvise b mergeable\nksm settle\nA: write b[0] 0x01\nksm settle\n',
    # use_zero_pages=0 (as pinned), real zero pages: merged with each other
    'scenario "z0"\nprocess A\nksm set use_zero_pages 0\nA: mmap b 2\nA: fill b zero\n'
    'A: madvise b mergeable\nksm settle\nksm settle\n',
    # salted pages, indifferent to the knob, though they set it
    'scenario "s1"\nprocess A\nA: mmap b 2\nA: fill b 0x11\nA: madvise b mergeable\n'
    'ksm set use_zero_pages 1\nksm settle\nA: fork B\nB: write b[1] 0x02\nksm settle\n',
    'scenario "s2"\nprocess A\nA: mmap b 2\nA: fill b 0x22\nA: madvise b mergeable\n'
    'ksm settle\nA: write b[0] 0x03\nksm settle\n',
]


def test_use_zero_pages_sets_share_a_batch_with_indifferent_scenarios(state_kept):
    """``ksm set use_zero_pages`` is no batch signature entry: scenarios without real zero
    pages share a settle with either value; the results are those of one-at-a-time runs."""
    scns = [parse(t) for t in MIXED_ZERO_PAGES]
    batch = run_kernel(scns, batch=True)
    alone = run_kernel(scns, batch=False)
    assert sum(r.mode == "batch" for r in batch) >= 3, [(r.mode, r.reason) for r in batch]
    for a, b in zip(batch, alone):
        assert a.status == b.status == OK, (a.reason, b.reason)
        fa, fb = _fields(a), _fields(b)
        for x, y in zip(fa, fb):
            keys = (set(x) | set(y)) - {"counter.pgreuse"}
            diff = {k: (x.get(k), y.get(k)) for k in keys if x.get(k) != y.get(k)}
            assert not diff, (a.scenario.title, diff)
    z1 = {r.stmt: r.fields for r in batch[0].records}[4]
    assert z1["counter.ksm_zero_pages"] == {2} and z1["A/b[0].frame"] == {"Z"}
    z0 = {r.stmt: r.fields for r in batch[1].records}[4]
    assert z0["A/b[0].ksm"] == {True} and z0["counter.ksm_zero_pages"] == {0}


FACTS = """scenario "facts of 6.x: a write to a singly-mapped KSM page copies"
process A
A: mmap buf 4
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[0..2]
A: write buf[3] 0x01
A: fork B
B: read buf[3]
"""


def test_write_fault_on_a_ksm_page_copies_on_this_kernel(state_kept):
    if host_version().mm < (5, 19):
        pytest.skip("cow_ksm and the always-copy era need >= 5.19")
    run = run_kernel([parse(FACTS)])[0]
    assert run.status == OK, run.reason
    recs = {r.stmt: {k: next(iter(v)) for k, v in r.fields.items()} for r in run.records}
    settled = recs[3]
    assert all(settled[f"A/buf[{i}].ksm"] for i in range(4))
    assert {settled[f"A/buf[{i}].frame"] for i in range(4)} == {"A/buf[0]"}
    assert settled["A/buf[0].mapcount"] == 4 and not settled["A/buf[0].exclusive"]
    assert settled["counter.pages_shared"] == 1 and settled["counter.pages_sharing"] == 3
    w = recs[5]
    assert w["A/buf[3].fault"] == "copied" and not w["A/buf[3].ksm"]
    assert w["A/buf[3].content"] == "0x5a+0x01" and w["counter.cow_ksm"] == 1
    forked = recs[6]
    assert forked["A/buf[3].mapcount"] == 2 and forked["B/buf[3].frame"] == "A/buf[3]"
    assert recs[7]["B/buf[3].fault"] == "reused"


def test_unmerge_counts_cow_ksm_per_page(state_kept):
    scn = parse('scenario "u"\nprocess A\nA: mmap b 3\nA: fill b 0x33\nA: madvise b mergeable\n'
                'ksm settle\nA: madvise b unmergeable\nksm settle\n')
    run = run_kernel([scn])[0]
    assert run.status == OK, run.reason
    after = {k: next(iter(v)) for k, v in run.records[4].fields.items()}
    assert after["counter.cow_ksm"] == 3           # one unshare fault per KSM page
    assert len({after[f"A/b[{i}].frame"] for i in range(3)}) == 3
    end = {k: next(iter(v)) for k, v in run.records[5].fields.items()}
    assert end["counter.pages_shared"] == 0 and end["counter.stable_nodes_removed"] == 1


def test_random_scenarios_batch_equals_alone_and_match_the_model(state_kept):
    """Generated scenarios (ksmdiff.gen): the kernel agrees with the model, and a batch
    replay gives what one-at-a-time replays give (fields the model leaves open aside)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from ksmdiff.observe import ANY
    model = pytest.importorskip("ksmdiff.model")
    judge = pytest.importorskip("ksmdiff.judge")
    gen = pytest.importorskip("ksmdiff.gen.strategies")
    version = host_version()

    @settings(max_examples=2, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(gen.scenarios(max_steps=12), min_size=30, max_size=30))
    def check(scns):
        batch = run_kernel(scns, batch=True)
        alone = run_kernel(scns, batch=False)
        problems = []
        for scn, a, b in zip(scns, batch, alone):
            assert a.status == b.status, (a.reason, b.reason)
            if a.status != OK:
                continue
            m = model.run_model(scn, version)
            problems += [f"{d.describe()}" for d in judge.compare(m.records, a.records)]
            mrec = {r.stmt: r for r in m.records}
            for x, y in zip(a.records, b.records):
                open_ = {k for k, v in mrec[x.stmt].fields.items() if v is ANY or len(v) > 1}
                keys = (set(x.fields) | set(y.fields)) - {"counter.pgreuse"} - open_
                diff = {k: (x.fields.get(k), y.fields.get(k)) for k in keys
                        if x.fields.get(k) != y.fields.get(k)}
                if diff:
                    problems.append(f"batch != alone at line {x.line}: {diff}")
        assert not problems, "\n".join(problems[:20])

    check()


OWN_READS = """\
scenario "contents are read by the processes themselves"
process A
A: mmap buf 4
A: fill buf[0] 0x11
A: fill buf[1] zero
A: fork B
B: write buf[0] 0x02
A: mprotect buf ro
B: madvise buf[0] pageout
B: read buf[3]
A: read buf[0]
"""


def test_observation_reads_only_present_pages_and_decodes_them(state_kept):
    """Each process reads its own present pages (no /proc/PID/mem): pages never touched stay
    absent, a paged-out page stays swapped, and the contents decode as before.

    MADV_PAGEOUT skips a page still in another CPU's LRU-add batch (B's copy, when B moved
    CPUs between its write and the pageout: a kernel fact the model allows for), so up to
    five runs are made for one in which the pageout took; every run is checked."""
    for _attempt in range(5):
        run = run_kernel([parse(OWN_READS)])[0]
        assert run.status == OK, run.reason
        recs = [{k: next(iter(v)) for k, v in r.fields.items()} for r in run.records]
        if recs[6]["B/buf[0].swapped"]:
            break
        assert recs[6]["B/buf[0].present"]          # skipped, not lost
    for rec in recs:
        for p in ("A", "B"):
            if f"{p}/buf[2].present" in rec:
                assert not rec[f"{p}/buf[2].present"]       # never faulted in by observing
        if "A/buf[3].present" in rec:
            assert not rec["A/buf[3].present"]
    assert recs[1]["A/buf[0].content"] == "0x11"
    assert recs[2]["A/buf[1].content"] == "zero"
    assert recs[4]["B/buf[0].content"] == "0x11+0x02"
    assert recs[4]["A/buf[0].content"] == "0x11"
    assert recs[5]["A/buf[0].content"] == "0x11"                # read-only: still readable
    assert recs[6]["B/buf[0].swapped"] and not recs[6]["B/buf[0].present"]
    for rec in recs[7:]:                                        # stays out: never read
        assert rec["B/buf[0].swapped"] and not rec["B/buf[0].present"]
    assert recs[8]["B/buf[3].present"] and recs[8]["B/buf[3].content"] == "zero"


def test_pgreuse_noise_from_other_processes_is_never_the_scenarios(state_kept):
    """pgreuse is machine-wide; a process forking in a loop moves it all the time.  Copying
    writes (a KSM page's write fault copies on this kernel) reuse nothing: every measured
    pgreuse is 0, the rest absent (noise the probe caught), never +1."""
    lines = ['scenario "copying writes"', "process A", "A: mmap b 32", "A: fill b 0x5a",
             "A: madvise b mergeable", "ksm settle"]
    lines += [f"A: write b[{i}] 0x{i + 1:02x}" for i in range(32)]
    scn = parse("\n".join(lines) + "\n")
    forker = subprocess.Popen(["sh", "-c", "while :; do /bin/true; done"])
    try:
        seen = []
        for _ in range(5):
            for run in run_kernel([scn] * 4, batch=True):
                assert run.status == OK, run.reason
                seen += [r.fields["counter.pgreuse"] for r in run.records
                         if "counter.pgreuse" in r.fields]
    finally:
        forker.kill()
        forker.wait()
    assert seen and all(v == {0} for v in seen), [v for v in seen if v != {0}][:5]


def test_a_failed_group_leaves_nothing_to_the_next(state_kept, monkeypatch):
    """A batch whose settle times out (a busy machine) ends as environment; what its
    scenarios left in the stable tree is not charged to the next group's first scan."""
    from ksmdiff.probe import runner, system
    pair = ('scenario "p"\nprocess A\nA: mmap b 4\nA: fill b 0x%02x\n'
            'A: madvise b mergeable\nksm settle\nA: write b[0] 0x01\n')
    scan = parse('scenario "s"\nprocess A\nA: mmap b 2\nA: fill b 0x77\n'
                 'A: madvise b mergeable\nksm scan 1\nksm scan 1\n')
    real = system.settle
    calls = []

    def settle(*a, **kw):
        done = real(*a, **kw)
        calls.append(kw)
        if len(calls) == 2:          # the batch's settle (the first is the run's reap)
            raise system.SettleTimeout("ksmd did not settle within 3.0 s (test)")
        return done

    monkeypatch.setattr(runner.system, "settle", settle)
    runs = run_kernel([parse(pair % 0x41), parse(pair % 0x42), scan], batch=True)
    assert [r.status for r in runs[:2]] == ["environment"] * 2, [r.reason for r in runs]
    assert runs[2].status == OK, runs[2].reason
    recs = {r.stmt: r.fields for r in runs[2].records}
    assert recs[3]["counter.pages_shared"] == {0} and recs[4]["counter.pages_shared"] == {1}
