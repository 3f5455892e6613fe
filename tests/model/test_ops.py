"""fork / exit / munmap / dontneed / swap / unmerge / mprotect / prctl."""

import pytest

from ksmdiff.observe import ANY

from .conftest import ERA_VERSIONS, PAGEOUT_VERSIONS, V, interp, last, one, run

KSM2 = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
"""


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_fork_shares_and_write_isolates(version):
    r = run("""A: mmap buf 1
A: fill buf 0x5a
A: fork B
B: write buf 0x01
""", version)
    f = r.records[-2].fields
    assert f["A/buf[0].frame"] == f["B/buf[0].frame"] and f["A/buf[0].mapcount"] == {2}
    assert f["A/buf[0].exclusive"] == {False}
    assert last(r, "B/buf[0].fault") == {"copied"}
    assert last(r, "A/buf[0].content") == {"0x5a"}
    assert last(r, "B/buf[0].content") == {"0x5a+0x01"}
    assert last(r, "A/buf[0].exclusive") == {True}
    assert r.violations == ()


def test_exit_removes_the_process_from_records():
    r = run("A: mmap buf 1\nA: fill buf 0x5a\nA: fork B\nB: exit\n", "6.18")
    assert not any(k.startswith("B/") for k in r.records[-1].fields)
    assert last(r, "A/buf[0].mapcount") == {1}


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_munmap_drops_fields_and_mmap_again_is_fresh(version):
    r = run("""A: mmap buf 2
A: fill buf 0x5a
A: munmap buf[1]
A: munmap buf[0]
A: mmap buf 1
A: write buf 0x01
""", version)
    assert "A/buf[1].present" not in r.records[2].fields
    assert last(r, "A/buf[0].fault") == {"fresh"}
    assert last(r, "A/buf[0].content") == {"zero+0x01"}


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_dontneed_zaps_and_the_next_touch_is_fresh(version):
    r = run("A: mmap buf 1\nA: fill buf 0x5a\nA: madvise buf dontneed\nA: read buf\n",
            version)
    assert r.records[2].fields["A/buf[0].present"] == {False}
    assert last(r, "A/buf[0].fault") == {"fresh"} and last(r, "A/buf[0].frame") == {"Z"}
    assert last(r, "A/buf[0].content") == {"zero"}


@pytest.mark.parametrize("version", PAGEOUT_VERSIONS)
def test_pageout_then_read_returns_the_same_frame_on_a_quiet_system(version):
    r = run("A: mmap buf 1\nA: fill buf 0x5a\nA: madvise buf pageout\nA: read buf\n", version)
    po = r.records[2].fields
    assert po["A/buf[0].swapped"] == {True} and po["A/buf[0].present"] == {False}
    assert po["A/buf[0].frame"] == {None} and "A/buf[0].content" not in po
    assert last(r, "A/buf[0].fault") == {"reused", "copied"}   # copied: reclaim elsewhere
    assert last(r, "A/buf[0].content") == {"0x5a"}


@pytest.mark.parametrize("version", ["4.19", "5.0", "5.3"])
def test_pageout_is_unsupported_before_5_4(version):
    r = run("A: mmap buf 1\nA: fill buf 0x5a\nA: madvise buf pageout\n", version)
    assert r.status == "unsupported" and "swap (MADV_PAGEOUT" in r.reason and r.records == ()


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_fork_of_a_swapped_page_shares_the_swap_cache_page(version):
    r = run("""A: mmap buf 1
A: fill buf 0x5a
A: madvise buf pageout
A: fork B
B: read buf
A: read buf
""", version)
    assert r.records[3].fields["B/buf[0].swapped"] == {True}
    assert last(r, "A/buf[0].frame") == last(r, "B/buf[0].frame")
    assert last(r, "A/buf[0].mapcount") == {2}
    assert r.violations == ()


# ---------------------------------------------------------------- unmerge

@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_unmerge_gives_every_page_a_new_frame(version):
    r = run(KSM2 + "A: madvise buf unmergeable\n", version)
    assert last(r, "A/buf[0].ksm") == {False} and last(r, "A/buf[1].ksm") == {False}
    assert last(r, "A/buf[0].frame") != last(r, "A/buf[1].frame")
    assert last(r, "A/buf[0].content") == {"0x5a"}
    if V(version).mm >= (5, 19):
        assert last(r, "counter.cow_ksm") == {2}         # unmerging counts cow_ksm (seen on 6.18)
    # counters move only when ksmd next runs
    assert last(r, "counter.pages_shared") == {1} and last(r, "counter.pages_sharing") == {1}
    assert r.violations == ()


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_unmerge_counters_drop_at_the_next_scan(version):
    r = run(KSM2 + "A: madvise buf unmergeable\nksm scan 1\n", version)
    assert last(r, "counter.pages_shared") == {0} and last(r, "counter.pages_sharing") == {0}
    if V(version).mm >= (6, 2):
        assert last(r, "counter.stable_nodes_removed") == {1}


def test_unmerge_in_5_1_to_5_8_copies_because_break_ksm_holds_a_reference():
    """break_ksm() keeps follow_page(FOLL_GET)'s reference across handle_mm_fault(), so
    even a singly-mapped KSM page is copied, not reused in place."""
    it = interp(KSM2 + "A: munmap buf[1]\nA: madvise buf[0] unmergeable\n", "5.4")
    (node,) = it.m.ksm.stable_tree
    new = it.m.procs["A"].regions["buf"].pages[0].pte.frame
    assert new is not node.kpfn and node.kpfn.freed


@pytest.mark.parametrize("version,pgreuse", [("5.10", 0), ("6.1", 0), ("6.2", 1), ("6.18", 1)])
def test_write_after_unmerge(version, pgreuse):
    """<= 6.1 break_ksm is a write fault (pte writable: the next write does not fault);
    >= 6.2 it is an unshare fault (pte read-only, page exclusive: the next write reuses
    it through do_wp_page, counted by pgreuse)."""
    r = run(KSM2 + "A: madvise buf unmergeable\nA: write buf[0] 0x01\n", version)
    assert last(r, "A/buf[0].fault") == {"reused"}
    assert last(r, "counter.pgreuse") == {pgreuse}
    it = interp(KSM2 + "A: madvise buf unmergeable\n", version)
    assert it.m.procs["A"].regions["buf"].pages[0].pte.writable == (pgreuse == 0)


def test_unmergeable_on_a_region_never_made_mergeable_does_nothing():
    r = run("A: mmap buf 1\nA: fill buf 0x5a\nA: madvise buf unmergeable\n", "6.18")
    assert last(r, "A/buf[0].frame") == {"A/buf[0]"} and r.violations == ()


# ---------------------------------------------------------------- mprotect

@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_mprotect_rw_does_not_make_a_ksm_page_writable(version):
    r = run(KSM2 + "A: mprotect buf ro\nA: mprotect buf rw\nA: write buf[0] 0x01\n", version)
    assert last(r, "A/buf[0].fault") == {"copied"}
    assert last(r, "A/buf[1].content") == {"0x5a"}
    assert r.violations == ()


@pytest.mark.parametrize("version,pgreuse", [("5.10", {0, 1}), ("5.18", {0, 1}),
                                             ("5.19", {1}), ("6.0", {0}), ("6.1", {0}),
                                             ("6.18", {0})])
def test_mprotect_rw_on_an_exclusive_anon_page(version, pgreuse):
    """>= 6.0 change_pte_range() maps a dirty exclusive anon page writable at once
    (64fe24a3e05e, MM_CP_TRY_CHANGE_WRITABLE); before, the next write goes through
    do_wp_page: 5.19 reuses the PageAnonExclusive page (pgreuse), 5.9-5.18 may copy if an
    LRU batch holds the page."""
    r = run("A: mmap buf 1\nA: fill buf 0x5a\nA: mprotect buf ro\nA: mprotect buf rw\n"
            "A: write buf 0x01\n", version)
    assert "reused" in last(r, "A/buf[0].fault")
    assert last(r, "counter.pgreuse") == pgreuse


# ---------------------------------------------------------------- prctl (>= 6.4)

def test_prctl_merge_on_marks_all_and_future_regions():
    r = run("""A: mmap buf 1
A: fill buf 0x5a
A: prctl merge on
A: mmap later 1
A: fill later 0x5a
ksm settle
""", "6.4")
    assert last(r, "A/buf[0].ksm") == {True} and last(r, "A/later[0].ksm") == {True}


def test_prctl_merge_off_unmerges_everything():
    r = run("""A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
A: prctl merge on
ksm settle
A: prctl merge off
ksm settle
""", "6.18")
    assert last(r, "A/buf[0].ksm") == {False}
    assert last(r, "counter.cow_ksm") == {2}
    assert last(r, "counter.pages_shared") == {0}


def test_prctl_off_without_on_is_a_no_op():
    r = run(KSM2 + "A: prctl merge off\n", "6.18")
    assert last(r, "A/buf[0].ksm") == {True}


def test_prctl_is_inherited_by_fork():
    r = run("""A: prctl merge on
A: fork B
B: mmap buf 2
B: fill buf 0x5a
ksm settle
""", "6.18")
    assert last(r, "B/buf[0].ksm") == {True}


@pytest.mark.parametrize("version", ["4.19", "5.10", "6.18"])
def test_fork_skips_a_vma_without_anon_vma(version):
    """copy_page_range() does not copy a vma that never had an anonymous page: the child's
    zero-page ptes are not there (found on the host's 6.18), and its first write is fresh."""
    r = run("A: mmap buf 1\nA: read buf\nA: fork B\nB: write buf 0x01\n", version)
    fork = r.records[2].fields
    assert fork["A/buf[0].frame"] == {"Z"} and fork["B/buf[0].present"] == {False}
    assert last(r, "B/buf[0].fault") == {"fresh"}
    r = run("A: mmap buf 2\nA: fill buf[1] 0x5a\nA: read buf[0]\nA: fork B\n", version)
    assert last(r, "B/buf[0].frame") == {"Z"}           # this vma has an anon_vma


def test_swapped_ksm_page_keeps_the_exact_prediction():
    """The swap-in of a KSM page is predicted exactly (same frame, still KSM)."""
    r = run("""A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: madvise buf[0] pageout
A: read buf[0]
""", "6.18")
    assert last(r, "A/buf[0].fault") == {"reused"} and last(r, "A/buf[0].ksm") == {True}


@pytest.mark.parametrize("version", ["5.10", "6.18"])
def test_zero_pte_of_a_possibly_merged_vma_may_or_may_not_be_copied(version):
    """A zero-page-only region next to a written one may share its anon_vma through a vma
    merge (found on the host): the child's pte is then copied.  The model allows both."""
    r = run("A: mmap w 1\nA: fill w 0x5a\nA: mmap z 1\nA: read z\nA: fork B\n"
            "B: read z\n", version)
    fork = r.records[4].fields
    assert fork["B/z[0].present"] == {True, False} and fork["B/z[0].frame"] == {"Z", None}
    assert last(r, "B/z[0].fault") == {"reused", "fresh"}
    assert last(r, "B/z[0].present") == {True}
    r = run("A: mmap z 1\nA: read z\nA: fork B\n", version)       # no anon_vma anywhere
    assert last(r, "B/z[0].present") == {False}


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_munmap_of_a_swapped_page_drops_the_swap_cache_page(version):
    it = interp("A: mmap buf 1\nA: fill buf 0x5a\nA: madvise buf pageout\nA: munmap buf\n",
                version)
    (f,) = it.m.frames
    assert f.freed and not f.swapcache and f.swap_refs == 0
    r = run("A: mmap buf 1\nA: fill buf 0x5a\nA: madvise buf pageout\nA: fork B\n"
            "A: madvise buf dontneed\nB: read buf\n", version)
    assert r.violations == () and last(r, "B/buf[0].content") == {"0x5a"}


def test_zap_of_ksm_zero_pages_uncounts_them():
    r = run("""ksm set use_zero_pages 1
A: mmap buf 2
A: fill buf zero
A: madvise buf mergeable
ksm settle
A: munmap buf[0]
A: madvise buf[1] dontneed
""", "6.18")
    assert r.records[-3].fields["counter.ksm_zero_pages"] == {2}
    assert last(r, "counter.ksm_zero_pages") == {0}


@pytest.mark.parametrize("version,counted", [("6.6", None), ("6.12", None), ("6.12.54", 4),
                                             ("6.17", None), ("6.17.4", 4), ("6.18", 4)])
def test_fork_of_ksm_zero_pages(version, counted):
    """>= 6.18, 6.17.4 and 6.12.54 fork counts the child's KSM zero ptes (the host's 6.18:
    2 -> 4, then -1 per write or zap); elsewhere the global delta is unpredictable (ANY)."""
    r = run("""ksm set use_zero_pages 1
A: mmap buf 2
A: fill buf zero
A: madvise buf mergeable
ksm settle
A: fork B
B: write buf[0] 0x01
B: exit
""", version)
    fork = r.records[-3].fields
    assert fork["B/buf[0].frame"] == {"Z"}
    if counted is None:
        assert fork["counter.ksm_zero_pages"] is ANY
    else:
        assert fork["counter.ksm_zero_pages"] == {counted}
        assert last(r, "counter.ksm_zero_pages") == {2}


def test_pin_of_a_read_only_ksm_page_in_5_8_keeps_the_pte_read_only():
    it = interp(KSM2 + "A: mprotect buf ro\nA: pin buf[0]\n", "5.8")
    s = it.m.procs["A"].regions["buf"].pages[0]
    assert not s.pte.frame.ksm and not s.pte.writable


def test_a_possible_vma_merge_is_sticky_and_inherited():
    """Found on the host: a zero-page-only vma that merged with a written neighbour keeps
    the anon_vma after the neighbour is unmapped, and passes it on through fork."""
    r = run("A: mmap w 1\nA: fill w 0x5a\nA: mmap z 1\nA: read z\nA: fork B\n"
            "B: munmap w\nB: fork C\n", "6.18")
    assert last(r, "C/z[0].present") == {True, False}


def test_a_split_region_may_hold_vmas_without_anon_vma():
    """Found on the host: munmap of a middle page splits the vma before any anonymous
    page exists; a zero-page-only part then has no anon_vma and fork skips it, although
    another part of the same region was written later."""
    r = run("A: mmap buf 3\nA: munmap buf[1]\nA: read buf[0]\nA: fill buf[2] 0x5a\n"
            "A: fork B\n", "6.18")
    assert last(r, "B/buf[0].present") == {True, False}
    assert last(r, "B/buf[2].present") == {True}
