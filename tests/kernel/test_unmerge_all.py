"""ksm unmerge-all on the host: refused without allow_global (nothing written), and with
it the run unmerges, matches the model, and leaves every knob as it was."""

from __future__ import annotations

from ksmdiff.observe import OK, UNSUPPORTED
from ksmdiff.probe import host_version, run_kernel
from ksmdiff.scenario import parse_file

from _kstate import ROOT, machine_state

SCN = ROOT / "corpora" / "matrix" / "unmerge-all.scenario"


def test_refused_without_allow_global(state_kept):
    run = run_kernel([parse_file(SCN)])[0]
    assert run.status == UNSUPPORTED and "--allow-global" in run.reason
    assert run.records == ()


def test_with_allow_global_matches_the_model_and_restores(state_kept):
    from ksmdiff import judge, model
    scn = parse_file(SCN)
    run = run_kernel([scn], allow_global=True)[0]
    assert run.status == OK, run.reason
    m = model.run_model(scn, host_version())
    assert not judge.compare(m.records, run.records)
    assert machine_state()["knobs"]["run"] == state_kept["knobs"]["run"]
