"""The do_wp_page decision table of every era, row by row, through user-level scenarios (and,
for the rows a user cannot reach, through the model's functions directly)."""

import pytest

from ksmdiff.model import memory as M
from ksmdiff.model.machine import Machine
from ksmdiff.model.state import Frame, PageSlot, Process, StableNode
from ksmdiff.scenario.ast import Content
from ksmdiff.versions import Era

from .conftest import ERA_VERSIONS, PAGEOUT_VERSIONS, REUSE_ERA, V, interp, last, last_of, one, run

SINGLE = """A: mmap buf 4
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[0..2]
A: write buf[3] 0x01
"""


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_singly_mapped_ksm_page_write(version):
    """Same PFN only in 5.1-5.8; cow_ksm counts the copy from 5.19."""
    r = run(SINGLE, version)
    assert r.violations == ()
    expected = "reused" if version in REUSE_ERA else "copied"
    assert last(r, "A/buf[3].fault") == {expected}
    assert last(r, "A/buf[3].ksm") == {False}
    assert last(r, "A/buf[3].content") == {"0x5a+0x01"}
    if V(version).mm >= (5, 19):
        assert last(r, "counter.cow_ksm") == {1}
    else:
        assert "counter.cow_ksm" not in r.records[-1].fields
    if V(version).mm >= (5, 9):
        assert last(r, "counter.pgreuse") == {0}      # a KSM copy is no reuse


# ---------------------------------------------------------------- 5.1-5.8, row by row

def test_a2_swapcache_ksm_page_copies_unless_swap_is_full():
    """Row SC=1: a KSM page swapped out and read back stays in the swap cache -> copy.
    But <= 5.17 do_swap_page() calls try_to_free_swap() when swap is more than half full
    (mem_cgroup_swap_full): the page leaves the swap cache with page_count 1 and the
    write's do_wp_page() -> reuse_ksm_page() keeps the frame.  Swap fullness is not in the
    scenario, so the model allows both."""
    body = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: madvise buf[0] pageout
A: read buf[0]
A: write buf[0] 0x01
"""
    it = interp(body, "5.4")                   # the quiet branch: swap not full
    r = run(body, "5.4")
    assert r.records[-2].fields["A/buf[0].fault"] == {"reused"}   # the same frame came back
    assert r.records[-2].fields["A/buf[0].ksm"] == {True}
    assert last(r, "A/buf[0].fault") == {"copied", "reused"}
    assert "more than half full" in r.records[-1].note
    assert r.violations == ()
    # quiet: the old KSM page lingers in the swap cache with its stable node
    (node,) = it.m.ksm.stable_tree
    assert node.kpfn.swapcache and node.kpfn.ksm and node.kpfn.mapcount == 0
    assert one(last_of(it, "A/buf[0].fault")) == "copied"
    # swap over half full: the swap-in frees the swap cache and the write reuses the frame
    full = interp(body, "5.4", assume={"swap_full": True})
    assert one(last_of(full, "A/buf[0].fault")) == "reused"
    assert one(last_of(full, "A/buf[0].ksm")) is False


@pytest.mark.parametrize("version", ["4.19", "5.10", "5.18", "6.1", "6.12"])
def test_swapped_ksm_page_copies_outside_5_1_to_5_8_even_when_swap_is_full(version):
    """Every other era copies a KSM page on write whatever the swap cache holds."""
    body = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: madvise buf[0] pageout
A: read buf[0]
A: write buf[0] 0x01
"""
    if V(version).mm < (5, 4):
        return                                 # no MADV_PAGEOUT
    assert last(run(body, version), "A/buf[0].fault") == {"copied"}


def test_a2_refcount_two_copies_shared():
    """Row rc != 1: mapped by two ptes."""
    r = run("""A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: write buf[0] 0x01
""", "5.4")
    assert last(r, "A/buf[0].fault") == {"copied"}
    assert last(r, "A/buf[1].ksm") == {True} and last(r, "A/buf[1].mapcount") == {1}


def test_a2_refcount_two_copies_pinned():
    """Row rc != 1: a pin (vmsplice) on a singly-mapped KSM page."""
    r = run(SINGLE.replace("A: write", "A: pin buf[3]\nA: write"), "5.4")
    assert last(r, "A/buf[3].fault") == {"copied"}
    assert r.violations == ()


def _ksm_machine(version="5.4", *, node=True, rc=1, swapcache=False):
    m = Machine(V(version))
    p = Process("A")
    slot = PageSlot(0)
    f = Frame(0, Content(0x5a), refcount=rc, mapcount=1, ksm=True, swapcache=swapcache)
    m.frames.append(f)
    if node:
        f.stable_node = StableNode(0, f, f.content)
    slot.pte.present, slot.pte.frame = True, f
    slot.logical = f.content
    return m, p, slot, f


def test_a2_no_stable_node_copies():
    """Row SN=0 (only inside ksmd's merge window): reuse_ksm_page refuses."""
    m, p, slot, f = _ksm_machine(node=False)
    assert M.reuse_ksm_page(m, f) is False
    M.do_wp_page(m, p, slot)
    assert slot.pte.frame is not f and f.freed


def test_a2_freeze_fails_copies():
    """Row freeze(1) fails: the count is not 1 at the cmpxchg."""
    m, p, slot, f = _ksm_machine(rc=2)
    assert M.page_ref_freeze(f, 1) is False and f.refcount == 2
    assert M.reuse_ksm_page(m, f) is False


def test_a2_freeze_ok_reuses_in_place():
    """Row ok: same frame, the page stops being KSM, refcount back to 1."""
    m, p, slot, f = _ksm_machine()
    M.do_wp_page(m, p, slot)
    assert slot.pte.frame is f and slot.pte.writable
    assert not f.ksm and f.stable_node is None and f.refcount == 1 and f.mapcount == 1


def test_page_ref_freeze_primitive():
    f = Frame(0, Content(1), refcount=1)
    assert M.page_ref_freeze(f, 1) and f.refcount == 0
    M.page_ref_unfreeze(f, 1)
    assert f.refcount == 1
    with pytest.raises(AssertionError):
        M.page_ref_unfreeze(f, 1)


@pytest.mark.parametrize("version", ["4.19", "5.10", "5.18", "6.1", "6.18"])
def test_other_eras_copy_even_when_reuse_conditions_hold(version):
    m, p, slot, f = _ksm_machine(version)
    M.do_wp_page(m, p, slot)
    assert slot.pte.frame is not f and f.freed and slot.pte.frame.content == f.content


# ---------------------------------------------------------------- zero page

@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_zero_page_write_copies_without_cow_ksm(version):
    r = run("A: mmap buf 1\nA: read buf\nA: write buf 0x01\n", version)
    assert r.records[1].fields["A/buf[0].frame"] == {"Z"}
    assert r.records[1].fields["A/buf[0].fault"] == {"fresh"}
    assert r.records[1].fields["A/buf[0].content"] == {"zero"}
    assert last(r, "A/buf[0].fault") == {"copied"}
    assert last(r, "A/buf[0].content") == {"zero+0x01"}
    if V(version).mm >= (5, 19):
        assert last(r, "counter.cow_ksm") == {0}


# ---------------------------------------------------------------- non-KSM anon COW per era

FORK_CHILD_EXITS = """A: mmap buf 1
A: fill buf 0x5a
{scan}A: fork B
B: exit
A: write buf 0x01
"""


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_anon_reuse_after_child_exit_drained(version):
    """Every era reuses the only-mapped anon page on a quiet system (mapcount-based
    <= 5.8, refcount-based 5.9+, via wp_can_reuse 5.19+); from 5.9 a per-CPU batch
    reference (even one the harness's own /proc/PID/mem reads cause) may make it copy,
    even after ksmd's lru_add_drain_all."""
    r = run(FORK_CHILD_EXITS.format(scan="A: madvise buf mergeable\nksm scan 1\n"), version)
    if V(version).mm <= (5, 8):
        assert last(r, "A/buf[0].fault") == {"reused"}
    else:
        assert last(r, "A/buf[0].fault") == {"reused", "copied"}
        assert last(r, "counter.pgreuse") == {0, 1}


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_anon_reuse_after_child_exit_fresh_page(version):
    """A fresh page may still sit in a per-CPU LRU-add batch: 5.9+ may copy."""
    r = run(FORK_CHILD_EXITS.format(scan=""), version)
    if V(version).mm <= (5, 8):
        assert last(r, "A/buf[0].fault") == {"reused"}
    else:
        assert last(r, "A/buf[0].fault") == {"reused", "copied"}
        assert last(r, "counter.pgreuse") == {0, 1}


PINNED_AFTER_FORK = """A: mmap buf 1
A: fill buf 0x5a
A: madvise buf mergeable
ksm scan 1
A: pin buf
A: fork B
B: write buf 0x02
A: write buf 0x01
"""


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_pinned_anon_page_written_after_fork(version):
    """<= 5.8 reuse_swap_page() counts mapcount only (the CVE-2020-29374 shape): the pinned
    page is reused; from 5.9 the pin's reference makes do_wp_page copy."""
    r = run(PINNED_AFTER_FORK, version)
    assert r.violations == ()
    assert last(r, "A/buf[0].fault") == ({"reused"} if V(version).mm <= (5, 8) else {"copied"})
    assert last(r, "A/buf[0].content") == {"0x5a+0x01"}
    assert last(r, "B/buf[0].content") == {"0x5a+0x02"}


SWAPIN_THEN_WRITE = """A: mmap buf 1
A: fill buf 0x5a
A: madvise buf pageout
A: read buf
A: write buf 0x01
"""


@pytest.mark.parametrize("version", PAGEOUT_VERSIONS)
def test_anon_swapcache_page_write(version):
    """A read swap-in leaves the page in the swap cache (rc 2): 5.9-5.17 copies (the
    regression 53a05ad9f21d fixed) unless swap is more than half full (do_swap_page's
    try_to_free_swap already dropped the swap cache), <= 5.8 reuse_swap_page and >= 5.18
    reuse."""
    r = run(SWAPIN_THEN_WRITE, version)
    assert r.records[2].fields["A/buf[0].swapped"] == {True}
    # the swap cache keeps the frame on a quiet system; reclaim elsewhere may drop it
    assert r.records[3].fields["A/buf[0].fault"] == {"reused", "copied"}
    era = Era.of(V(version))
    if era is Era.V5_9_TO_5_17:
        assert last(r, "A/buf[0].fault") == {"copied", "reused"}
        assert one(last_of(interp(SWAPIN_THEN_WRITE, version), "A/buf[0].fault")) == "copied"
        full = interp(SWAPIN_THEN_WRITE, version, assume={"swap_full": True})
        assert "reused" in last_of(full, "A/buf[0].fault")
    elif era is Era.V5_18:
        # no PageAnonExclusive yet: the refcount test may see an LRU-batch reference
        assert last(r, "A/buf[0].fault") == {"reused", "copied"}
    else:
        assert last(r, "A/buf[0].fault") == {"reused"}
    assert r.violations == ()


@pytest.mark.parametrize("version", PAGEOUT_VERSIONS)
def test_write_swapin_of_anon_page_reuses_without_pgreuse(version):
    r = run("A: mmap buf 1\nA: fill buf 0x5a\nA: madvise buf pageout\nA: write buf 0x01\n",
            version)
    assert last(r, "A/buf[0].fault") == {"reused", "copied"}
    if V(version).mm >= (5, 9):
        assert last(r, "counter.pgreuse") == {0}


@pytest.mark.parametrize("version", PAGEOUT_VERSIONS)
def test_swapped_ksm_page_write_copies(version):
    """Swap-in returns the same KSM frame (no ksm_swpin_copy); the write copies,
    except on 5.1-5.8 when swap is more than half full: do_swap_page's try_to_free_swap()
    leaves page_count 1 and reuse_ksm_page() keeps the frame."""
    r = run("""A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: madvise buf[0] pageout
A: write buf[0] 0x01
""", version)
    reuse_era = Era.of(V(version)) is Era.V5_1_TO_5_8
    assert last(r, "A/buf[0].fault") == ({"copied", "reused"} if reuse_era else {"copied"})
    if V(version).mm >= (5, 18):
        assert last(r, "counter.ksm_swpin_copy") == {0}
    if V(version).mm >= (5, 19):
        assert last(r, "counter.cow_ksm") == {1}


# ---------------------------------------------------------------- GUP COW break (5.8)

PIN_KSM = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
{unmap}A: pin buf[0]
"""


@pytest.mark.parametrize("version,broken", [("5.4", False), ("5.4.47", True), ("5.7", False),
                                            ("5.7.3", True), ("5.8", True), ("5.9", False),
                                            ("6.18", False)])
def test_pin_breaks_cow_only_with_17839856fd58(version, broken):
    r = run(PIN_KSM.format(unmap=""), version)
    assert last(r, "A/buf[0].ksm") == ({False} if broken else {True})
    assert last(r, "A/buf[1].ksm") == {True}
    assert (last(r, "A/buf[0].frame") == last(r, "A/buf[1].frame")) == (not broken)
    assert r.violations == ()


def test_pin_of_a_singly_mapped_ksm_page_in_5_8_reuses_it_in_place():
    it = interp(PIN_KSM.format(unmap="A: munmap buf[1]\n"), "5.8")
    f = it.m.procs["A"].regions["buf"].pages[0].pte.frame
    (node,) = it.m.ksm.stable_tree
    assert node.kpfn is f and not f.ksm and f.refcount == 2      # pte + pin


# ---------------------------------------------------------------- found on the host (6.18)

@pytest.mark.parametrize("version,pgreuse", [("5.19", {1}), ("6.10", {1}), ("6.11", {0}),
                                             ("6.18", {0})])
def test_read_swapin_of_an_exclusive_page_maps_it_writable_from_6_11(version, pgreuse):
    """>= 6.11 do_swap_page maps an exclusive page writable on a read fault, so the later
    write does not fault (no pgreuse); before, it goes through do_wp_page's AE reuse.
    (The host's 6.18 showed pgreuse +0.)"""
    r = run(SWAPIN_THEN_WRITE, version)
    assert last(r, "A/buf[0].fault") == {"reused"}
    assert last(r, "counter.pgreuse") == pgreuse


SWAPPED_KSM_COPY = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: madvise buf[0] pageout
A: read buf[0]
A: write buf[0] 0x01
ksm scan 1
"""


@pytest.mark.parametrize("version,freed", [("5.10", False), ("5.13", False), ("5.14", True),
                                           ("6.18", True)])
def test_cow_of_a_swapcache_ksm_page_frees_it_from_5_14(version, freed):
    """>= 5.14 wp_page_copy() calls free_swap_cache() on the old page: the swapped-in KSM
    page goes, so its node is stale at the next scan.  Before, it lingers in the swap
    cache with its node.  (The host's 6.18 removed the node.)"""
    it = interp(SWAPPED_KSM_COPY, version)
    assert (it.m.ksm.stable_tree == []) == freed
    if not freed:
        (node,) = it.m.ksm.stable_tree
        assert node.kpfn.swapcache and node.kpfn.mapcount == 0 and not node.hlist
    r = run(SWAPPED_KSM_COPY, version)
    assert last(r, "counter.pages_shared") == {0}
