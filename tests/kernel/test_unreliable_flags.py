"""A kernel whose /proc/kpageflags sets KPF_KSM on every anonymous page (v6.10's
stable_page_flags() rewrite before its fix, seen on Debian's 6.12.118): the runner leaves
'ksm' absent and the judge skips expects on it instead of failing them.  The host here reads
its flags correctly, so the check is made to answer as such a kernel would."""

from __future__ import annotations

from _kstate import ROOT

from ksmdiff.probe import run_kernel, system
from ksmdiff.probe.runner import KPF_KSM_NOTE
from ksmdiff.scenario import parse_file
from ksmdiff.session import kernel_cells


def test_the_host_flags_are_read_correctly():
    assert system.kpageflags_ksm_on_plain_anon() is False


def test_no_ksm_field_when_the_flag_is_unreliable(monkeypatch, state_kept):
    seed = parse_file(ROOT / "corpora" / "seed" / "reuse-only-pte-mapped.scenario")
    monkeypatch.setattr(system, "kpageflags_ksm_on_plain_anon", lambda: True)
    run, = run_kernel([seed])
    assert run.status == "ok", run.reason
    assert KPF_KSM_NOTE in run.reason
    assert run.records and not any(k.endswith(".ksm") for r in run.records for k in r.fields)
    assert any(k.endswith(".frame") for r in run.records for k in r.fields)
    cell, = kernel_cells([seed], run.version, "host", [[run]], lambda s: run)
    ksm_expects = [e for e in cell.expects if e.text.endswith(" ksm")]
    assert ksm_expects and all(e.status == "skipped" for e in ksm_expects), cell.expects
    assert not cell.failed and cell.mismatch is None, (cell.failed, cell.mismatch)
