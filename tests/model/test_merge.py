"""The ksmd merge path: scans, pins, max_page_sharing, use_zero_pages, lazy removal."""

import pytest

from ksmdiff.observe import ANY

from .conftest import ERA_VERSIONS, V, at, interp, last, one, run

TWO = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
"""


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_first_merge_needs_two_scans(version):
    """cmp_and_merge_page(): the first scan only records the checksum (a new rmap_item
    starts from 0); the second puts the first page in the unstable tree and merges the
    second with it."""
    r1 = run(TWO + "ksm scan 1\n", version)
    assert last(r1, "A/buf[0].ksm") == {False} and last(r1, "counter.pages_shared") == {0}
    r2 = run(TWO + "ksm scan 2\n", version)
    assert last(r2, "A/buf[0].ksm") == {True}
    assert last(r2, "A/buf[0].frame") == last(r2, "A/buf[1].frame") == {"A/buf[0]"}
    assert last(r2, "A/buf[0].mapcount") == {2}
    assert last(r2, "counter.pages_shared") == {1}
    assert last(r2, "counter.pages_sharing") == {1}


@pytest.mark.parametrize("version,scans", [("5.4", 1), ("6.10", 1), ("6.11", 2), ("6.18", 2)])
def test_merge_into_an_existing_ksm_page(version, scans):
    """<= 6.10 searches the stable tree before the checksum (one scan suffices);
    >= 6.11 (d58a361b0350) wants a stable checksum first."""
    body = TWO + "ksm settle\nA: mmap other 1\nA: fill other 0x5a\nA: madvise other mergeable\n"
    r = run(body + "ksm scan 1\n", version)
    assert last(r, "A/other[0].ksm") == ({True} if scans == 1 else {False})
    r = run(body + f"ksm scan {scans}\n", version)
    assert last(r, "A/other[0].ksm") == {True}
    assert last(r, "A/other[0].frame") == last(r, "A/buf[0].frame")
    assert last(r, "A/buf[0].mapcount") == {3}
    assert last(r, "counter.pages_shared") == {1} and last(r, "counter.pages_sharing") == {2}


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_different_contents_do_not_merge(version):
    r = run("""A: mmap buf 2
A: fill buf[0] 0x5a
A: fill buf[1] 0x5b
A: madvise buf mergeable
ksm settle
""", version)
    assert last(r, "A/buf[0].ksm") == {False} and last(r, "counter.pages_shared") == {0}


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_merge_across_processes(version):
    r = run("""A: mmap buf 1
A: fill buf 0x5a
A: madvise buf mergeable
A: fork B
B: write buf 0x01
B: write buf 0x00
A: write buf 0x01
A: write buf 0x00
ksm settle
""".replace("0x00", "0x5a"), version)
    # both wrote the fill byte back: equal content in two private pages, then merged
    assert last(r, "A/buf[0].ksm") == {True} and last(r, "B/buf[0].ksm") == {True}
    assert last(r, "A/buf[0].frame") == last(r, "B/buf[0].frame")
    assert last(r, "A/buf[0].mapcount") == {2}
    assert r.violations == ()


# ---------------------------------------------------------------- pins

PIN = """A: mmap buf 2
A: fill buf 0x5a
A: pin buf[0]
A: madvise buf mergeable
ksm settle
"""


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_pinned_page_is_never_merged(version):
    r = run(PIN, version)
    assert last(r, "A/buf[0].ksm") == {False} and last(r, "A/buf[1].ksm") == {False}
    assert last(r, "A/buf[0].frame") != last(r, "A/buf[1].frame")
    assert last(r, "counter.pages_shared") == {0} and last(r, "counter.pages_sharing") == {0}
    if V(version).mm >= (5, 19):
        assert last(r, "counter.cow_ksm") is ANY     # the twin churns once per scan
    assert r.violations == ()


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_pinned_twin_churns_every_scan(version):
    """Each full scan makes the unpinned twin KSM in place, fails on the pinned page and
    breaks the twin again: a new frame per scan."""
    it = interp(PIN.replace("ksm settle", "ksm scan 2"), version)
    twin1 = it.m.procs["A"].regions["buf"].pages[1].pte.frame
    it = interp(PIN.replace("ksm settle", "ksm scan 3"), version)
    twin2 = it.m.procs["A"].regions["buf"].pages[1].pte.frame
    assert twin1.fid != twin2.fid and not twin2.ksm
    assert len([f for f in it.m.frames if f.freed]) == 2


def test_unpinned_page_merges_later():
    r = run(PIN + "A: unpin buf[0]\nksm settle\n", "6.18")
    assert last(r, "A/buf[0].ksm") == {True} and last(r, "A/buf[1].ksm") == {True}


# ---------------------------------------------------------------- max_page_sharing

@pytest.mark.parametrize("version", ["4.19", "5.4", "6.6", "6.18"])
def test_max_page_sharing_makes_new_dups(version):
    r = run("""ksm set max_page_sharing 2
A: mmap buf 5
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
""", version)
    frames = [one(last(r, f"A/buf[{i}].frame")) for i in range(5)]
    ksm = [one(last(r, f"A/buf[{i}].ksm")) for i in range(5)]
    # two dups of two sharers each, one page left over (no partner under the limit)
    assert sorted(ksm) == [False, True, True, True, True]
    groups = {}
    for f, k in zip(frames, ksm):
        if k:
            groups.setdefault(f, 0)
            groups[f] += 1
    assert sorted(groups.values()) == [2, 2]
    assert last(r, "counter.pages_shared") == {2} and last(r, "counter.pages_sharing") == {2}
    assert max(one(last(r, f"A/buf[{i}].mapcount")) for i in range(5)) == 2


def test_forked_ksm_page_may_exceed_max_page_sharing():
    """stable_tree_search()'s "ksm page forked" path appends the child's rmap_item even
    when the dup is full (max_page_sharing_bypass)."""
    r = run("""ksm set max_page_sharing 2
A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: fork B
ksm settle
""", "6.18")
    assert last(r, "A/buf[0].mapcount") == {4}
    assert last(r, "counter.pages_shared") == {1} and last(r, "counter.pages_sharing") == {3}


# ---------------------------------------------------------------- use_zero_pages

ZERO = """ksm set use_zero_pages 1
A: mmap buf 3
A: fill buf zero
A: madvise buf mergeable
ksm settle
"""


@pytest.mark.parametrize("version", ["4.19", "5.4", "6.1", "6.6", "6.18"])
def test_use_zero_pages_maps_the_zero_page(version):
    r = run(ZERO + "A: write buf[0] 0x01\n", version)
    settle = r.records[-2].fields
    for i in range(3):
        assert settle[f"A/buf[{i}].frame"] == {"Z"}
        assert settle[f"A/buf[{i}].ksm"] == {False}
        assert settle[f"A/buf[{i}].mapcount"] == {0}
        assert settle[f"A/buf[{i}].content"] == {"zero"}
    assert settle["counter.pages_shared"] == {0}
    assert last(r, "A/buf[0].fault") == {"copied"}
    assert last(r, "A/buf[0].content") == {"zero+0x01"}
    if V(version).mm >= (6, 6):
        assert settle["counter.ksm_zero_pages"] == {3}
        assert last(r, "counter.ksm_zero_pages") == {2}
    if V(version).mm >= (5, 19):
        assert last(r, "counter.cow_ksm") == {0}
    assert r.violations == ()


def test_use_zero_pages_requires_the_feature():
    r = run(ZERO, "4.9")
    assert r.status == "unsupported" and "zero-pages" in r.reason


def test_zero_filled_pages_merge_normally_without_use_zero_pages():
    r = run(ZERO.replace("ksm set use_zero_pages 1\n", ""), "6.18")
    assert last(r, "A/buf[0].ksm") == {True} and last(r, "A/buf[0].mapcount") == {3}


@pytest.mark.parametrize("version,unshared", [("6.1", False), ("6.6", True), ("6.18", True)])
def test_unmerge_of_ksm_zero_pages(version, unshared):
    """>= 6.6 break_ksm() also unshares KSM-placed zero pages (79271476b336)."""
    r = run(ZERO + "A: madvise buf unmergeable\n", version)
    assert last(r, "A/buf[0].frame") == ({"A/buf[0]"} if unshared else {"Z"})
    if unshared:
        assert last(r, "counter.ksm_zero_pages") == {0}
        assert last(r, "A/buf[0].content") == {"zero"}


# ---------------------------------------------------------------- lazy removal

@pytest.mark.parametrize("version", ["5.4", "6.4", "6.18"])
def test_stale_node_is_removed_lazily(version):
    """The fault never touches the stable tree; the first full scan afterwards removes the
    node (ksm:ksm_remove_ksm_page) and drops pages_shared."""
    body = TWO + "ksm settle\nA: munmap buf[1]\nA: write buf[0] 0x01\nksm scan 1\n"
    r = run(body, version)
    fault, scan = r.records[-2].fields, r.records[-1].fields
    assert fault["counter.pages_shared"] == {1} and fault["counter.pages_sharing"] == {1}
    assert scan["counter.pages_shared"] == {0} and scan["counter.pages_sharing"] == {0}
    if V(version).mm >= (6, 2):
        assert fault["counter.stable_nodes_removed"] == {0}
        assert scan["counter.stable_nodes_removed"] == {1}


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_copy_by_one_of_two_sharers_keeps_the_node(version):
    body = TWO + "ksm settle\nA: write buf[0] 0x01\nksm scan 1\n"
    r = run(body, version)
    assert r.records[-2].fields["counter.pages_sharing"] == {1}      # not at fault time
    assert last(r, "counter.pages_shared") == {1} and last(r, "counter.pages_sharing") == {0}
    assert last(r, "A/buf[1].ksm") == {True} and last(r, "A/buf[1].mapcount") == {1}
    if V(version).mm >= (6, 2):
        assert last(r, "counter.stable_nodes_removed") == {0}


@pytest.mark.parametrize("version", ["6.18"])
def test_exit_leaves_stale_nodes_for_the_next_scan(version):
    body = """A: mmap buf 1
A: fill buf 0x5a
A: madvise buf mergeable
A: fork B
B: write buf 0x01
B: write buf 0x5a
ksm settle
B: exit
A: exit
"""
    r = run(body + "ksm scan 1\n", version)
    exit_rec = r.records[-2].fields
    assert exit_rec["counter.stable_nodes_removed"] == {0}
    assert exit_rec["counter.pages_shared"] == {1}
    assert last(r, "counter.stable_nodes_removed") == {1}
    assert last(r, "counter.pages_shared") == {0} and last(r, "counter.pages_sharing") == {0}


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_fork_adds_a_sharer_at_the_next_scan(version):
    body = TWO + "ksm settle\nA: fork B\n"
    r = run(body + "ksm scan 1\n", version)
    assert r.records[-2].fields["counter.pages_sharing"] == {1}
    assert last(r, "counter.pages_sharing") == {3}      # B's two rmap_items joined
    assert last(r, "B/buf[0].ksm") == {True} and last(r, "B/buf[0].mapcount") == {4}


def test_swapped_ksm_zero_refcount_node_survives_max_page_sharing_change():
    """remove_all_stable_nodes() drops the node of an unmapped swap-cache KSM page, which
    keeps PageKsm with no node: its swap-in is then copied (ksm_swpin_copy)."""
    body = TWO + """ksm settle
A: munmap buf[1]
A: madvise buf[0] pageout
ksm scan 1
ksm set max_page_sharing 16
A: read buf[0]
"""
    r = run(body, "6.18")
    assert r.records[-2].fields["counter.stable_nodes_removed"] == {1}
    assert last(r, "A/buf[0].fault") == {"copied"}
    assert last(r, "A/buf[0].ksm") == {False}
    assert last(r, "counter.ksm_swpin_copy") == {1}
    assert r.violations == ()


def test_knob_change_refused_while_pages_are_counted_shared():
    """max_page_sharing_store(): ksm_pages_shared != 0 -> -EBUSY, even when the node is
    only lazily kept (the host refuses it too).  The model keeps the old value and says so
    in the record's note."""
    r = run(TWO + "ksm settle\nA: write buf 0x01\nksm set max_page_sharing 2\n", "6.18")
    assert "EBUSY" in r.records[-1].note
    r = run(TWO + "ksm settle\nA: write buf 0x01\nksm scan 1\nksm set max_page_sharing 2\n",
            "6.18")
    assert r.records[-1].note == ""


# ---------------------------------------------------------------- KSM page without a node

ORPHAN = """A: mmap buf 3
A: write buf 0x01
A: pin buf
A: madvise buf mergeable
A: fork B
A: unpin buf[2]
ksm scan 2
"""


@pytest.mark.parametrize("version", ["5.4", "5.10", "6.18"])
def test_failed_two_page_merge_can_leave_a_ksm_page_without_a_stable_node(version):
    """Found on the host's 6.18: the twin of a pinned page is shared with a fork child;
    try_to_merge_two_pages() makes it KSM (NULL stable node), fails on the pinned page and
    breaks only the scanning process's pte.  The child keeps a KSM page that no stable
    node names, and write_protect_page() never takes a KSM page again
    (page_address_in_vma(): page_anon_vma() is NULL), so it stays that way."""
    it = interp(ORPHAN + "ksm scan 3\n", version)
    f = it.m.procs["B"].regions["buf"].pages[2].pte.frame
    assert f.ksm and f.stable_node is None and f.mapcount == 1
    assert it.m.ksm.stable_tree == []
    r = run(ORPHAN, version)
    assert last(r, "B/buf[2].ksm") == {True} and last(r, "A/buf[2].ksm") == {False}
    assert last(r, "counter.pages_shared") == {0}


@pytest.mark.parametrize("version,fault", [("5.4", {"copied"}), ("6.18", {"copied"})])
def test_a2_no_stable_node_row_is_reachable_from_user_level(version, fault):
    """K && !SN is not only a state inside ksmd's merge window: the orphan
    above reaches it from user space: rc 1, not swap cache, no node -> reuse_ksm_page()
    refuses and 5.1-5.8 copies."""
    r = run(ORPHAN + "B: write buf[2] 0x02\n", version)
    assert last(r, "B/buf[2].fault") == fault
    assert last(r, "B/buf[2].content") == {"zero+0x02"}
    assert r.violations == ()


# ---------------------------------------------------------------- unmapped KSM pages

@pytest.mark.parametrize("keep", ["A: pin r0[0]\nA: munmap r0\n",
                                  "A: munmap r0[1]\nA: madvise r0[0] pageout\n"])
def test_a_node_without_rmap_items_takes_no_new_sharer(keep):
    """Host-observed (6.18): once every rmap_item left a node (its page kept only by a
    pin or the swap cache), the node stays valid but is no merge target."""
    body = ("A: mmap r0 2\nA: fill r0 0x5b\nA: madvise r0 mergeable\nksm settle\n" + keep +
            "ksm scan 2\nA: mmap r1 1\nA: fill r1 0x5b\nA: madvise r1 mergeable\n"
            "ksm settle\n")
    r = run(body, "6.18")
    assert last(r, "A/r1[0].ksm") == {False}
    assert last(r, "counter.pages_shared") == {0}
    it = interp(body, "6.18")
    (node,) = it.m.ksm.stable_tree
    assert node.kpfn.mapcount == 0 and node.kpfn.ksm


def test_stale_node_no_item_names_may_go_on_any_later_scan():
    """Once nothing names it, a stale node goes when any tree walk passes it -- other KSM
    users' walks included: the counter may be one less."""
    r = run("""A: mmap r0 2
A: fill r0 0x5b
A: madvise r0 mergeable
ksm settle
A: pin r0[0]
A: munmap r0
ksm scan 2
A: unpin r0[0]
ksm scan 2
""", "6.18")
    assert r.records[-3].fields["counter.stable_nodes_removed"] == {0}
    assert last(r, "counter.stable_nodes_removed") == {0, 1}


def test_an_unmapped_ksm_page_whose_node_has_items_takes_a_sharer():
    """Host-observed (6.18): what blocks a merge is the node's empty hlist, not the page
    being unmapped -- here another mm's rmap_items still name the node."""
    r = run("""A: mmap r0 2
A: fill r0 0x5a
A: madvise r0 mergeable
ksm settle
A: fork B
ksm scan 1
B: munmap r0
A: pin r0[0]
A: fill r0[1] 0x5a
A: munmap r0[0]
ksm scan 2
""", "6.18")
    assert last(r, "A/r0[1].ksm") == {True}
    assert last(r, "counter.pages_shared") == {1} and last(r, "counter.pages_sharing") == {0}
