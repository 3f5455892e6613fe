"""Model semantics of exec (MMF_VM_MERGE_ANY across execve, per era) and of the absolute
per-process counters (ksm_stat after fork, before and after the fork-counter fix)."""

import pytest

from .conftest import interp, last, run

EXEC = """A: prctl merge on
A: fork B
B: exec
B: mmap map 4
B: fill map 0xcf
ksm settle
"""


@pytest.mark.parametrize("version, flag, merged", [
    ("6.4", False, 0),      # before 3c6f33b7273a: execve() drops MMF_VM_MERGE_ANY
    ("6.5", False, 0),
    ("6.6", True, 0),       # the flag, but no mm_slot: ksmd never scans the new mm
    ("6.8", True, 0),
    ("6.8.12", True, 4),    # 3a9e567ca45f in 6.8-stable
    ("6.9", True, 0),
    ("6.10", True, 4),      # ksm_execve()
    ("6.18", True, 4),
])
def test_exec_keeps_merge_any_per_era(version, flag, merged):
    r = run(EXEC, version)
    assert last(r, "counter.prctl_merge@B") == {flag}
    assert last(r, "counter.ksm_merging_pages@B=") == {merged}
    assert last(r, "counter.ksm_merging_pages@B") == {merged}


def test_exec_unmaps_the_old_image_and_its_items_go_at_the_next_scan():
    body = ("A: mmap buf 4\nA: fill buf 0x5a\nA: madvise buf mergeable\nA: fork B\n"
            "ksm settle\nB: exec\n")
    r = run(body, "6.12")
    assert not any(k.startswith("B/") for k in r.records[-1].fields)
    assert last(r, "counter.ksm_rmap_items@B=") == {0}     # the new mm counts from 0
    assert last(r, "counter.pages_sharing") == {7}          # B's old items still there
    r = run(body + "ksm scan 1\n", "6.12")
    assert last(r, "counter.pages_sharing") == {3}


def test_madvise_after_exec_registers_the_mm_on_6_6():
    r = run(EXEC + "B: madvise map mergeable\nksm settle\n", "6.6")
    assert last(r, "counter.ksm_merging_pages@B=") == {4}


def test_a_later_prctl_on_does_not_register_an_exec_d_mm_that_has_the_flag():
    # ksm_enable_merge_any() returns at once when MMF_VM_MERGE_ANY is set
    it = interp(EXEC + "B: prctl merge on\nksm settle\n", "6.6")
    assert not it.m.procs["B"].ksm_entered


FORK = """A: mmap map 8
A: fill map 0xcf
A: madvise map mergeable
ksm settle
A: fork B
"""


@pytest.mark.parametrize("version, child", [
    ("6.1", 8), ("6.12", 8), ("6.17", 8), ("6.17.3", 8),
    ("6.17.4", 0), ("6.18", 0),
])
def test_child_counters_after_fork(version, child):
    r = run(FORK, version)
    assert last(r, "counter.ksm_merging_pages@A=") == {8}
    assert last(r, "counter.ksm_merging_pages@B=") == {child}
    assert last(r, "counter.ksm_rmap_items@B=") == {child}
    assert last(r, "counter.ksm_merging_pages@B") == {0}     # the change since the fork
    r = run(FORK + "ksm settle\n", version)
    assert last(r, "counter.ksm_merging_pages@B=") == {child + 8}


@pytest.mark.parametrize("version, child", [("6.12.53", 8), ("6.12.54", 0), ("6.12.118", 0)])
def test_the_6_12_stable_backport(version, child):
    r = run(FORK, version)
    assert last(r, "counter.ksm_merging_pages@B=") == {child}
