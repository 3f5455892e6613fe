"""The kernel facts of ksmdiff/kernel_facts.py as the model follows them: unknown stable
levels and swap fullness run both ways, maybe_mkwrite, the 6.0 mprotect write-upgrade,
5.18's refcount-based swap-in, and 5.9-rc1..rc3 in the reuse_ksm_page era."""

from __future__ import annotations

import pytest

from ksmdiff.model.run import assumptions

from .conftest import V, interp, last, last_of, run, scenario

PIN_KSM = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: pin buf[0]
"""


@pytest.mark.parametrize("version,ksm_after_pin", [
    ("5.4", {True}), ("5.4.46", {True}), ("5.4.47", {False}), ("5.7.3", {False}),
    ("5.8", {False}), ("4.14.232", {False}), ("4.19", {True}), ("4.19.188", {True}),
    ("4.19.189", {False}), ("5.4.y", {True, False}), ("4.19.y", {True, False}),
    ("4.9.300", {True, False}),
])
def test_pin_time_cow_break_follows_the_stable_level(version, ksm_after_pin):
    """17839856fd58 breaks COW at pin time; where the stable level is unknown the model
    runs with and without it and says why."""
    r = run(PIN_KSM, version)
    assert last(r, "A/buf[0].ksm") == ksm_after_pin
    assert r.violations == ()
    if len(ksm_after_pin) == 2:
        assert "stable patch level" in r.records[-1].note
        assert "17839856fd58" in r.records[-1].note
    else:
        assert "stable patch level" not in r.records[-1].note


def test_unknown_level_runs_both_ways_only_when_a_pin_reaches_it():
    no_pin = scenario("A: mmap buf 1\nA: fill buf 0x5a\n")
    with_pin = scenario(PIN_KSM)
    assert assumptions(no_pin, V("5.4.y")) == {}
    assert set(assumptions(with_pin, V("5.4.y"))) == {"gup_breaks_cow"}
    assert assumptions(with_pin, V("5.4.47")) == {}


def test_swap_fullness_is_assumed_only_for_scenarios_that_page_out():
    assert assumptions(scenario("A: mmap buf 1\nA: fill buf 0x01\n"), V("5.4")) == {}
    pageout = scenario("A: mmap buf 1\nA: fill buf 0x01\nA: madvise buf pageout\n",
                       requires="swap")
    assert set(assumptions(pageout, V("5.4"))) == {"swap_full", "swap_writeback"}


KSMD_COPY_PAGEOUT = """A: mmap buf 2
A: madvise buf mergeable
A: fork B
A: fill buf[0] 0x02
A: pin buf[0]
B: fill buf[1] 0x02
ksm settle
B: madvise buf[1] unmergeable
B: fill buf[1] 0x01
B: madvise buf[1] pageout
"""


def test_pageout_of_ksmds_break_cow_copy_may_leave_it_mapped():
    """A pinned tree page makes the merge fail half-way and break_cow() gives B a copy on
    ksmd's CPU; MADV_PAGEOUT from the scenario's CPU may not isolate it (ksmd_pvec)."""
    scn = scenario(KSMD_COPY_PAGEOUT, requires="swap")
    assert set(assumptions(scn, V("6.18"))) == {"swap_full", "swap_writeback", "ksmd_pvec"}
    for version in ("5.4", "6.1", "6.18"):
        r = run(KSMD_COPY_PAGEOUT, version, requires="swap")
        assert last(r, "B/buf[1].swapped") == {True, False}
        assert "LRU-add batch" in r.records[-1].note
        assert r.violations == ()
    # B's own copy (its fill, on the scenario's CPU) is paged out: no pin, no ksmd copy
    own = KSMD_COPY_PAGEOUT.replace("A: pin buf[0]\n", "")
    assert "ksmd_pvec" not in assumptions(scenario(own, requires="swap"), V("6.18"))
    assert last(run(own, "6.18", requires="swap"), "B/buf[1].swapped") == {True}


COW_FREES_SWAP = """A: mmap buf 2
A: fill buf[0] 0x01
A: fill buf[1] 0x01
A: madvise buf mergeable
ksm settle
A: write buf[1] 0x03
A: madvise buf[0] pageout
A: fill buf[0] 0x01
ksm settle
"""


@pytest.mark.parametrize("version,freed", [("5.10", False), ("5.15", True), ("6.18", True)])
def test_a_copied_swapped_in_ksm_page_leaves_the_swap_cache_from_5_14(version, freed):
    """>= 5.14 wp_page_copy() frees the unmapped old page from the swap cache: its stable
    node is stale and the copy does not merge back; before, the page lingers and ksmd
    merges the copy into it.  A write to swap still in flight keeps it (swap_writeback)."""
    quiet = interp(COW_FREES_SWAP, version)
    assert last_of(quiet, "A/buf[0].ksm") == {not freed}
    inflight = interp(COW_FREES_SWAP, version,
                      assume={"swap_full": False, "swap_writeback": True})
    assert last_of(inflight, "A/buf[0].ksm") == {True}
    # (with swap more than half full, do_swap_page() frees it in every era)
    assert last(run(COW_FREES_SWAP, version, requires="swap"), "A/buf[0].ksm") == {
        True, False}


def test_5_9_rc2_still_reuses_a_singly_mapped_ksm_page():
    body = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: write buf[0] 0x01
"""
    assert last(run(body, "5.9-rc2"), "A/buf[0].fault") == {"reused"}
    assert last(run(body, "5.9-rc4"), "A/buf[0].fault") == {"copied"}
    assert "counter.pgreuse" not in run(body, "5.9-rc2").records[-1].fields


UNMERGE_RO = """A: mmap buf 2
A: fill buf 0x5a
A: mprotect buf ro
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: madvise buf[0] unmergeable
"""


@pytest.mark.parametrize("version", ["4.19", "5.4", "5.10", "5.18", "5.19", "6.1", "6.2", "6.12"])
def test_break_ksm_in_a_read_only_vma_leaves_a_read_only_copy(version):
    """wp_page_copy(): maybe_mkwrite(pte_mkdirty(entry), vma); unshare (>= 6.2) leaves the
    copy read-only anyway.  Dirty after the <= 6.1 write fault, clean after an unshare."""
    it = interp(UNMERGE_RO, version)
    pte = it.m.procs["A"].regions["buf"].pages[0].pte
    assert pte.present and not pte.frame.ksm
    assert not pte.writable
    assert pte.dirty == (V(version) < V("6.2"))


@pytest.mark.parametrize("version,pgreuse", [("5.19", {1}), ("6.0", {0}), ("6.1", {0}),
                                             ("6.2", {0}), ("6.12", {0})])
def test_mprotect_rw_after_a_read_only_unmerge(version, pgreuse):
    """6.0-6.1 upgrade the dirty copy, >= 6.2 also the clean unshare copy; 5.19 faults."""
    r = run(UNMERGE_RO + "A: mprotect buf[0] rw\nA: write buf[0] 0x01\n", version)
    assert last(r, "A/buf[0].fault") == {"reused"}
    assert last(r, "counter.pgreuse") == pgreuse


PINNED_PAGEOUT = """A: mmap buf 1
A: fill buf 0x5a
A: pin buf[0]
A: madvise buf pageout
A: write buf[0] 0x01
"""


@pytest.mark.parametrize("version,fault", [("5.4", {"reused"}), ("5.10", {"reused"}),
                                           ("5.17", {"reused"}), ("5.18", {"copied"}),
                                           ("5.19", {"reused"}), ("6.12", {"reused"})])
def test_write_swapin_of_a_pinned_page(version, fault):
    """<= 5.17 reuse_swap_page() counts mapcount + swap count; 5.18 (c145e0b47c77) counts
    page_count, which the pin raises; >= 5.19 the swap pte was exclusive."""
    r = run(PINNED_PAGEOUT, version, requires="swap")
    assert last(r, "A/buf[0].fault") == fault
    assert r.violations == ()


def test_5_18_write_swapin_frees_the_swap_cache_at_page_count_two():
    body = "A: mmap buf 1\nA: fill buf 0x5a\nA: madvise buf pageout\nA: write buf 0x01\n"
    it = interp(body, "5.18")
    f = it.m.procs["A"].regions["buf"].pages[0].pte.frame
    assert not f.swapcache and f.refcount == 1
    # reused (a fresh swap-in read may also have come from a new frame: reclaim elsewhere)
    assert "reused" in last_of(it, "A/buf[0].fault")
    assert it.m.procs["A"].regions["buf"].pages[0].pte.writable


# buf[1]'s frame, shared by A and B since the fork, becomes KSM in place through the
# rmap_items of the one vma that is mergeable; then only A maps it
RMAP_WALK = """A: mmap buf 2
A: fill buf[0] 0x01
A: fill buf[1] 0x01
A: fork B
{who}: madvise buf mergeable
ksm settle
B: fill buf[0] 0x02
B: munmap buf[1]
A: madvise buf[1] pageout
"""


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_pageout_finds_a_ksm_page_only_through_its_rmap_items_anon_vmas(version):
    """rmap_walk_ksm() walks each rmap_item's anon_vma tree: A's pte under B's rmap_items
    (B's own anon_vma, made at the fork) is not found, and the page stays mapped."""
    r = run(RMAP_WALK.format(who="B"), version, requires="swap")
    assert last(r, "A/buf[1].present") == {True}
    assert last(r, "A/buf[1].ksm") == {True}
    assert r.violations == ()


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_pageout_finds_a_childs_pte_under_its_parents_rmap_item(version):
    """B's vma is linked to A's anon_vma at the fork, so A's rmap_item finds B's pte."""
    text = RMAP_WALK.format(who="A").replace(
        "B: fill buf[0] 0x02\nB: munmap buf[1]\nA: madvise buf[1] pageout\n",
        "A: fill buf[0] 0x02\nA: munmap buf[1]\nB: madvise buf[1] pageout\n")
    r = run(text, version, requires="swap")
    assert last(r, "B/buf[1].swapped") == {True}
    assert r.violations == ()


def test_a_ksm_page_without_a_stable_node_is_not_paged_out():
    text = """A: mmap buf 2
A: fill buf[1] 0x01
A: write buf[1] 0x03
A: fork B
A: fill buf[0] 0x01
A: pin buf[0]
A: write buf[0] 0x03
A: madvise buf mergeable
ksm settle
B: madvise buf[1] pageout
"""
    r = run(text, "6.18", requires="swap")
    assert last(r, "B/buf[1].present") == {True}
    assert last(r, "B/buf[1].ksm") == {True}
