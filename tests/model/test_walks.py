"""Refcount / mapcount walks of the write-fault paths, on the model's internal state."""

import pytest

from .conftest import interp

MERGE2 = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
"""


def pages(it, proc="A", region="buf"):
    return [s.pte.frame for s in it.m.procs[proc].regions[region].pages]


@pytest.mark.parametrize("version", ["4.19", "5.4", "5.10", "6.1", "6.18"])
def test_b1_two_page_merge(version):
    """An n-way shared KSM page has rc = n and mc = n at rest; the stable node holds no
    reference; the old page is freed."""
    it = interp(MERGE2, version)
    a, b = pages(it)
    assert a is b and a.ksm and a.refcount == 2 and a.mapcount == 2
    (node,) = it.m.ksm.stable_tree
    assert node.kpfn is a and a.stable_node is node and node.rmap_hlist_len == 2
    freed = [f for f in it.m.frames if f.freed]
    assert len(freed) == 1 and freed[0].refcount == 0 and not freed[0].ksm
    for s in it.m.procs["A"].regions["buf"].pages:
        assert not s.pte.writable and not s.pte.dirty    # write_protect_page: clean, ro


@pytest.mark.parametrize("version", ["4.19", "5.10", "6.18"])
def test_b2_copy_of_the_only_mapping_frees_the_ksm_page(version):
    it = interp(MERGE2 + "A: munmap buf[1]\nA: write buf[0] 0x01\n", version)
    (node,) = it.m.ksm.stable_tree               # not removed at fault time (lazily, by ksmd)
    old = node.kpfn
    assert old.freed and old.refcount == 0 and old.mapcount == 0
    new = pages(it)[0]
    assert new is not old and new.refcount == 1 and new.mapcount == 1 and not new.ksm
    assert it.m.procs["A"].regions["buf"].pages[0].pte.writable


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_b2_copy_with_three_mappers_keeps_the_ksm_page(version):
    it = interp("""A: mmap buf 3
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: write buf[0] 0x01
""", version)
    (node,) = it.m.ksm.stable_tree
    k = node.kpfn
    assert k.ksm and k.refcount == 2 and k.mapcount == 2 and not k.freed
    assert pages(it)[1] is k and pages(it)[2] is k


def test_b3_reuse_keeps_frame_and_drops_ksm_identity():
    it = interp(MERGE2 + "A: munmap buf[1]\nA: write buf[0] 0x01\n", "5.4")
    (node,) = it.m.ksm.stable_tree               # the node is stale but still linked
    f = pages(it)[0]
    assert node.kpfn is f and not f.ksm and f.stable_node is None
    assert f.refcount == 1 and f.mapcount == 1 and not f.anon_exclusive   # AE only >= 5.19
    assert f.content.write == 0x01


def test_b3_stale_node_after_reuse_goes_on_the_next_scan():
    it = interp(MERGE2 + "A: munmap buf[1]\nA: write buf[0] 0x01\nksm scan 1\n", "5.4")
    assert it.m.ksm.stable_tree == []
    assert it.m.counter("pages_shared") == {0} and it.m.counter("pages_sharing") == {0}


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_b4_pageout_and_swapin_of_a_ksm_page(version):
    it = interp(MERGE2 + "A: munmap buf[1]\nA: madvise buf[0] pageout\n", version)
    slot = it.m.procs["A"].regions["buf"].pages[0]
    k = slot.pte.swap
    assert not slot.pte.present and k is not None
    assert k.swapcache and k.ksm and k.refcount == 1 and k.mapcount == 0 and k.swap_refs == 1
    assert k.stable_node is it.m.ksm.stable_tree[0]
    it2 = interp(MERGE2 + "A: munmap buf[1]\nA: madvise buf[0] pageout\nA: read buf[0]\n",
                 version)
    slot = it2.m.procs["A"].regions["buf"].pages[0]
    k = slot.pte.frame
    assert k.ksm and k.swapcache and k.refcount == 2 and k.mapcount == 1 and k.swap_refs == 0
    assert not slot.pte.writable


def test_pageout_skips_pages_mapped_twice():
    """madvise_cold_or_pageout_pte_range(): page_mapcount(page) != 1 -> skip."""
    it = interp(MERGE2 + "A: madvise buf pageout\n", "6.18")
    for s in it.m.procs["A"].regions["buf"].pages:
        assert s.pte.present and s.pte.swap is None


@pytest.mark.parametrize("version", ["5.4", "5.10", "6.18"])
def test_fork_takes_a_reference_per_pte(version):
    it = interp("A: mmap buf 1\nA: fill buf 0x5a\nA: fork B\n", version)
    f = pages(it)[0]
    assert pages(it, "B")[0] is f and f.refcount == 2 and f.mapcount == 2
    assert not f.anon_exclusive
    assert not it.m.procs["A"].regions["buf"].pages[0].pte.writable


def test_pin_holds_a_reference_and_unpin_drops_it():
    it = interp("A: mmap buf 1\nA: fill buf 0x5a\nA: pin buf\nA: pin buf\n", "6.18")
    assert pages(it)[0].refcount == 3
    it = interp("A: mmap buf 1\nA: fill buf 0x5a\nA: pin buf\nA: munmap buf\n", "6.18")
    (f,) = it.m.frames
    assert f.refcount == 1 and f.mapcount == 0 and not f.freed   # the pipe keeps it
    it = interp("A: mmap buf 1\nA: fill buf 0x5a\nA: pin buf\nA: munmap buf\nA: unpin buf\n",
                "6.18")
    assert it.m.frames[0].freed
