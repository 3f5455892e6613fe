"""A scenario beyond the probe's old fixed tables (4,096 pages in all, 1,024 a region) runs
on the host kernel: probe.c sizes its tables from the program, and its records of changes
decode to the same states the model predicts."""

from __future__ import annotations

from ksmdiff.observe import OK
from ksmdiff.probe import host_version, run_kernel
from ksmdiff.scenario import parse

PAGES = 2048       # a region twice the old limit; three processes: 6,144 pages in all

SCN = f"""scenario "3 x {PAGES} pages merge into one KSM page"
process P
P: fork A
A: mmap m {PAGES}
A: madvise m mergeable
A: fill m 0x5a
A: fork B
A: fork C
B: fill m 0x5a
C: fill m 0x5a
ksm set max_page_sharing {3 * PAGES}
ksm settle
expect counter pages_shared +1
expect counter pages_sharing +{3 * PAGES - 1}
expect A m same-frame C m[0]
B: write m[{PAGES - 1}] 0x01
expect B m[{PAGES - 1}] copied
expect B m[{PAGES - 1}] not ksm
A: munmap m[0..{PAGES // 2 - 1}]
C: exit
ksm settle
expect counter pages_shared +1
expect counter pages_sharing +{PAGES // 2 + PAGES - 1 - 1}
"""


def test_a_scenario_beyond_4096_pages_runs_on_the_host(state_kept):
    import pytest
    model = pytest.importorskip("ksmdiff.model")
    judge = pytest.importorskip("ksmdiff.judge")
    scn = parse(SCN, "scale.scenario")
    run = run_kernel([scn])[0]
    assert run.status == OK, run.reason
    version = host_version()
    m = model.run_model(scn, version)
    assert m.status == OK
    divs = judge.compare(m.records, run.records)
    assert not divs, [d.describe() for d in divs[:5]]
    expects = judge.evaluate_expects(scn, run.records, version)
    failed = [e for e in expects if e.status != "held"]
    assert not failed and expects, failed[:3]
    # the last record's state is whole: every page of A and B, none of C
    last = run.records[-1].fields
    assert sum(1 for k in last if k.endswith(".present")) == PAGES // 2 + PAGES
    assert not [k for k in last if k.startswith("C/")]


def test_the_model_made_beside_the_kernel_run_judges_the_same(state_kept, monkeypatch):
    """A scenario this size has its model run made in a worker while the kernel runs it; the
    cell (expects, model records, mismatch) is the one the model made afterwards gives."""
    import os
    from ksmdiff import session
    scn = parse(SCN, "scale.scenario")
    assert session._model_ahead_pays([scn])
    here, made_by = os.getpid(), session._models_of

    def in_the_worker(scns, version):
        # the worker makes them; Ahead's fallback (the worker failed) would make them here
        assert os.getpid() != here, "the model was made after the kernel run, not beside it"
        return made_by(scns, version)

    monkeypatch.setattr(session, "_models_of", in_the_worker)
    beside = session.run_host_cells([scn])[0]
    monkeypatch.setattr(session, "_models_of", made_by)
    monkeypatch.setattr(session, "AHEAD_PAGE_STATEMENTS", float("inf"))
    after = session.run_host_cells([scn])[0]
    assert beside.status == after.status == OK, (beside.reason, after.reason)
    assert beside.mismatch is None and after.mismatch is None
    assert [(e.status, e.stmt) for e in beside.expects] == \
        [(e.status, e.stmt) for e in after.expects]
    assert beside.model_records == after.model_records

