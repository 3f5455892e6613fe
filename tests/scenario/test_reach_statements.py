"""The statements for porting the kernel's KSM tests: ksm unmerge-all (ksm set run 2),
per-process counters, prctl merge readback, the ksmd gauges, smart_scan."""

from __future__ import annotations

import pytest

from ksmdiff.errors import InputError
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import implied_features, parse, print_scenario

HEAD = 'scenario "t"\nprocess A\nA: mmap buf 4\n'


def test_unmerge_all_and_run_2_are_one_statement():
    a = parse(HEAD + "ksm unmerge-all\n")
    b = parse(HEAD + "ksm set run 2\n")
    assert a == b
    assert isinstance(a.statements[-1], A.KsmUnmergeAll)
    assert print_scenario(b).rstrip().endswith("ksm unmerge-all")


@pytest.mark.parametrize("value", ["0", "1", "3"])
def test_run_other_than_2_is_refused(value):
    with pytest.raises(InputError) as info:
        parse(HEAD + f"ksm set run {value}\n", "r.scenario")
    assert info.value.location.line == 4
    assert "ksm settle" in info.value.render() and "ksm set run 2" in info.value.render()


def test_per_process_counter_round_trip():
    text = HEAD + "expect counter A ksm_merging_pages +4 on >=6.1\nexpect counter pages_unshared -1\n"
    scn = parse(text)
    c = scn.statements[-2]
    assert (c.proc, c.counter, c.delta) == ("A", "ksm_merging_pages", 4)
    assert scn.statements[-1].proc is None
    assert parse(print_scenario(scn)) == scn


def test_prctl_readback_round_trip_and_implies_prctl_merge():
    scn = parse(HEAD + "expect A prctl merge on on >=6.4\nexpect A prctl merge off\n")
    assert [type(s) for s in scn.statements[-2:]] == [A.ExpectPrctl, A.ExpectPrctl]
    assert scn.statements[-2].on and not scn.statements[-1].on
    assert parse(print_scenario(scn)) == scn
    assert "prctl-merge" in implied_features(scn)


def test_smart_scan_knob_implies_smart_scan():
    scn = parse(HEAD + "ksm set smart_scan 1\n")
    assert "smart-scan" in implied_features(scn)
    assert parse(print_scenario(scn)) == scn


@pytest.mark.parametrize("body, message", [
    ("expect counter A frobs +1\n", "unknown per-process counter 'frobs'"),
    ("expect counter Z ksm_rmap_items +1\n", "unknown process 'Z'"),
    ("expect counter ksm_merging_pages +1\n", "a per-process counter"),
    ("A: exit\nexpect counter A ksm_rmap_items +0\n", "process A has exited"),
    ("expect Z prctl merge on\n", "unknown process 'Z'"),
    ("expect A prctl merge maybe\n", "unknown prctl merge value"),
    ("ksm set smart_scan 2\n", "out of range"),
])
def test_errors(body, message):
    with pytest.raises(InputError) as info:
        parse(HEAD + body, "e.scenario")
    assert message in info.value.render()


def test_mlock_force_write_and_prot_none_round_trip():
    scn = parse(HEAD + "A: fill buf 0x11\nA: mlock buf[0..1]\nA: munlock buf[0]\n"
                "A: mprotect buf[2..3] none\nA: force-write buf[2] 0x01\n")
    kinds = [type(s) for s in scn.statements[-4:]]
    assert kinds == [A.Mlock, A.Munlock, A.Mprotect, A.ForceWrite]
    assert parse(print_scenario(scn)) == scn


@pytest.mark.parametrize("body, message", [
    ("A: mprotect buf none\nA: read buf[0]\n", "PROT_NONE page"),
    ("A: mprotect buf none\nA: write buf[0] 0x01\n", "read-only page"),
    ("A: mprotect buf none\nA: mlock buf\n", "mlock of a PROT_NONE page"),
    ("A: mlock buf\nA: madvise buf[0] pageout\n", "mlocked page fails (EINVAL)"),
    ("A: mlock buf\nA: madvise buf[1] dontneed\n", "mlocked page fails (EINVAL)"),
    ("A: mlock buf\nA: mprotect buf none\n", "not modelled"),
])
def test_mlock_and_prot_none_errors(body, message):
    with pytest.raises(InputError) as info:
        parse(HEAD + body, "e.scenario")
    assert message in info.value.render()


def test_mlock_is_not_inherited_and_munlock_ends_it():
    parse(HEAD + "A: mlock buf\nA: fork B\nB: madvise buf pageout\n")
    parse(HEAD + "A: mlock buf\nA: munlock buf\nA: madvise buf pageout\n")
    parse(HEAD + "A: mlock buf\nA: munmap buf\nA: mmap buf 2\nA: madvise buf pageout\n")
