"""The short ways that keep a large scenario cheap give the answers of the long way:
counter increments applied late, the fact table, the unstable tree's removal by key,
ksmd's walk over an mm whose regions all hold its rmap_items (and over one that has items
of a gone region), the already-merged page a scan passes over, a run of pages merging
into one node, the stable-tree walk that removes stale nodes after choosing, the LRU
drain of the newest frames, do_wp_page's era variant and the invariant check's fast
paths."""

import pytest

from ksmdiff.model import ksm as K
from ksmdiff.model import memory as M
from ksmdiff.model.invariants import check
from ksmdiff.model.machine import MAX_COUNTER_CHOICES, Machine
from ksmdiff.observe import ANY
from ksmdiff.scenario.ast import Content

from .conftest import V, interp, last_of


def test_counter_increments_apply_in_any_order():
    """count() adds up in ``_pending``; the set of possible values moves by the sum when
    it is read or a choice is added, as it would have moved by each increment."""
    m = Machine(V("6.8"))
    m.count("a")
    m.count("a", -1)
    assert m.counters == {"a": frozenset([0])}   # (+1 -1: the counter exists, at 0)
    m.count("b", 2)
    m.count_choices("b", (0, -1))
    m.count("b", 3)
    assert m.counter("b") == frozenset([5, 4])
    m.count_any("c")
    m.count("c", 7)
    assert m.counter("c") is ANY
    assert m.counter("never") == frozenset([0])
    for i in range(7):                         # 2**7 sums > MAX_COUNTER_CHOICES: ANY
        m.count_choices("d", (0, 1 << (10 + i)))
        m.count("d")
    assert MAX_COUNTER_CHOICES < 2 ** 7 and m.counter("d") is ANY


def test_has_reads_the_fact_table_once_per_name():
    m = Machine(V("6.8"))
    assert m.has("anon_exclusive") is True and m.has("ksm_checksum_first") is False
    assert Machine(V("5.4")).has("anon_exclusive") is False


DISTINCT = """A: mmap buf 3
A: write buf[0] 0x01
A: write buf[1] 0x02
A: write buf[2] 0x03
A: madvise buf mergeable
ksm scan 2
"""


def test_an_unstable_item_leaves_the_tree_by_its_key():
    it = interp(DISTINCT, "6.8")
    m = it.m
    items = [m.procs["A"].rmap_items[k] for k in sorted(m.procs["A"].rmap_items)]
    assert all(i.unstable for i in items) and len(m.ksm.unstable_tree) == 3
    K.remove_rmap_item_from_tree(m, items[1])
    assert not items[1].unstable and items[1].tree_key is None
    assert [e[0] for e in m.ksm.unstable_tree.values()] == [items[0], items[2]]
    K.ksm_do_scan_full(m)                      # a new scan: the tree restarts
    assert all(i.unstable for i in items) and len(m.ksm.unstable_tree) == 3


MERGED = """A: mmap buf 4
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
"""


@pytest.mark.parametrize("version", ["5.4", "6.8", "6.18"])
def test_a_scan_over_merged_pages_changes_nothing(version):
    it = interp(MERGED, version)
    m = it.m
    page = m.procs["A"].regions["buf"].pages[0].pte.frame
    before = (page.refcount, page.mapcount, dict(m.counters))
    K.ksm_do_scan_full(m)
    m.count("full_scans", -1)
    assert (page.refcount, page.mapcount, dict(m.counters)) == before
    assert page.refcount == page.mapcount == 4 and len(page.stable_node.hlist) == 4


@pytest.mark.parametrize("version", ["5.4", "6.18"])
def test_items_of_a_gone_region_go_at_the_next_scan(version):
    """A region munmapped and mapped again is a new vma (a new mmap sequence): the old
    rmap_items go at the next scan (their KSM page went with the munmap), the new pages
    get new ones."""
    it = interp(MERGED + "A: munmap buf\nA: mmap buf 2\nA: fill buf 0x5a\n"
                "A: madvise buf mergeable\nksm scan 1\n", version)
    p = it.m.procs["A"]
    seq = p.regions["buf"].seq
    assert sorted(p.rmap_items) == [(seq, 0), (seq, 1)]
    assert it.m.ksm.stable_tree == []
    assert last_of(it, "counter.pages_shared") == {0}


WALKS = [
    MERGED + "A: fill buf[1] 0x01\nA: mprotect buf[2] none\nksm scan 2\n",
    MERGED + "A: munmap buf[1]\nA: pin buf[2]\nA: fill buf[3] 0x5a\nksm scan 3\n",
    "A: fork B\n" + MERGED + "B: mmap buf 3\nB: fill buf 0x5a\nB: madvise buf mergeable\n"
    "ksm scan 2\nA: madvise buf[0..1] unmergeable\nksm scan 1\nA: exit\nksm scan 1\n",
    "ksm set smart_scan 1\n" + MERGED + "A: fill buf[3] 0x01\nksm scan 6\n",
]


@pytest.mark.parametrize("version", ["5.4", "6.1", "6.8", "6.18"])
@pytest.mark.parametrize("body", range(len(WALKS)))
def test_the_walk_over_regions_is_the_sorted_walk(version, body, monkeypatch):
    """ksmd's walk over an mm whose rmap_items all lie in its regions gives what the
    general walk (the sorted union of candidate pages and rmap_items) gives."""
    text = WALKS[body]
    if "smart_scan" in text and V(version).mm < (6, 7):
        pytest.skip("smart scan is >= 6.7")
    fast = interp(text, version)
    monkeypatch.setattr(K, "_scan_mm", K._scan_mm_with_gone_regions)
    slow = interp(text, version)
    assert [r.fields for r in fast.records] == [r.fields for r in slow.records]
    assert fast.violations == slow.violations == []


def test_the_stable_tree_walk_removes_stale_nodes_and_picks_the_fullest():
    it = interp(MERGED, "6.8")
    m = it.m
    node = m.ksm.stable_tree[0]
    page = m.alloc_page(Content(0x5a))
    assert K.stable_tree_search(m, page) is node.kpfn
    node.kpfn.stable_node = None               # the keyhole no longer matches: stale
    assert K.stable_tree_search(m, page) is None
    assert m.ksm.stable_tree == [] and all(i.head is None for i in
                                           m.procs["A"].rmap_items.values())


def test_equal_contents_of_different_writers_pass_and_a_differing_one_is_caught():
    """Two processes that filled the same byte merge into one KSM page: each holds its own
    (equal) content; the check remembers an equal pair and still catches a change."""
    body = """A: fork B
A: mmap buf 3
B: mmap buf 3
A: fill buf 0x5a
B: fill buf 0x5a
A: madvise buf mergeable
B: madvise buf mergeable
ksm settle
"""
    from ksmdiff.scenario import parse
    from ksmdiff.model.run import Interpreter
    it = Interpreter(parse('scenario "t"\nprocess P\nP: fork A\n' + body), V("6.8"), None)
    it.run()
    assert check(it.m, 0, 1) == []
    b = it.m.procs["B"].regions["buf"].pages
    assert b[0].pte.frame is it.m.procs["A"].regions["buf"].pages[0].pte.frame
    assert b[0].logical is not b[0].pte.frame.content
    b[2].logical = Content(0x5a, 0x01)
    got = check(it.m, 0, 1)
    assert [v.prop for v in got] == ["isolation"] and "B/buf[2]" in got[0].detail


def test_the_lru_drain_reaches_every_frame_allocated_since_the_last_one():
    it = interp(MERGED, "6.8")
    m = it.m
    old = list(m.live_frames())
    assert old and not any(f.maybe_pvec for f in old)
    new = [m.alloc_page(Content(0x01)) for _ in range(3)]
    m.put_page(new[1])                         # freed: no longer live
    assert m.live_frames() == old + [new[0], new[2]]
    new[2].ksmd_pvec = True                    # (as break_cow marks ksmd's copy)
    K.lru_add_drain_all(m)
    assert not new[0].maybe_pvec and not new[2].maybe_pvec and new[1].maybe_pvec
    assert not new[2].ksmd_pvec


# ksmd merging a run of pages into one node (_merge_into_last_node) against the long
# way (cmp_and_merge_page for every page): each scenario crosses one of the conditions
# under which the short way must hand a page back
RUNS = {
    "ksm01": "A: fork B\nA: fork C\n" + "".join(
        f"{c}: mmap m 8\n{c}: madvise m mergeable\n" for c in "ABC") + "".join(
        f"A: fill m 0x{a:02x}\nB: fill m 0x{b:02x}\nC: fill m 0x{c:02x}\nksm settle\n"
        for a, b, c in ((0x63, 0x61, 0x61), (0x63, 0x62, 0x61), (0x64, 0x64, 0x64),
                        (0x64, 0x64, 0x64))) + "B: write m[7] 0x65\nksm settle\n" + "".join(
        f"{c}: madvise m unmergeable\n" for c in "ABC") + "ksm settle\n",
    "full-nodes": "ksm set max_page_sharing 3\nA: mmap m 10\nA: fill m 0x5a\n"
                  "A: madvise m mergeable\nksm settle\nA: fill m[2..6] 0x5a\nksm scan 2\n",
    "pinned": "A: mmap m 8\nA: fill m 0x5a\nA: pin m[3]\nA: madvise m mergeable\n"
              "ksm settle\nA: unpin m[3]\nksm scan 1\n",
    "forked": "A: mmap m 8\nA: fill m 0x5a\nA: fork B\nA: write m[5] 0x5a\nB: fill m[6] 0x5a\n"
              "A: madvise m mergeable\nB: madvise m mergeable\nksm settle\n",
    "swapped": "A: mmap m 8\nA: fill m 0x5a\nA: madvise m[2..3] pageout\nA: read m[2]\n"
               "A: madvise m mergeable\nksm settle\n",
    "zero": "ksm set use_zero_pages 1\nA: mmap m 8\nA: fill m 0x5a\nA: fill m[4..7] 0x00\n"
            "A: madvise m mergeable\nksm settle\n",
    "nodes": "ksm set merge_across_nodes 0\nA: mmap a 4 node 0\nA: mmap b 4 node 1\n"
             "A: fill a 0x2a\nA: fill b 0x2a\nA: madvise a mergeable\nA: madvise b mergeable\n"
             "ksm settle\n",
    "checksum": "A: mmap m 8\nA: fill m 0x5a\nA: madvise m mergeable\nksm scan 1\n"
                "A: fill m[4..7] 0x5b\nksm scan 1\nA: fill m[4..7] 0x5a\nksm scan 3\n",
}


def _state(it):
    m = it.m
    frames = {}
    out = []
    for p in m.procs.values():
        for r in p.regions.values():
            for s in r.pages:
                f = s.pte.frame
                if f is not None and not f.zero:
                    f = frames.setdefault(id(f), (len(frames), f.refcount, f.mapcount, f.ksm,
                                                  f.anon_exclusive, f.swapcache))
                out.append((p.name, r.name, s.index, s.pte.present, s.pte.writable,
                            s.pte.dirty, f if f is None or isinstance(f, tuple) else "Z"))
        out.append(sorted((k, i.head is not None, i.unstable, str(i.oldchecksum))
                          for k, i in p.rmap_items.items()))
    out.append(sorted(len(n.hlist) for n in m.ksm.stable_tree))
    return out, dict(m.counters)


@pytest.mark.parametrize("version", ["4.19", "5.4", "5.10", "6.1", "6.8", "6.12", "6.18"])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_merging_a_run_of_pages_is_the_long_way(version, name, monkeypatch):
    text = RUNS[name]
    if "pageout" in text and V(version).mm < (5, 4):
        pytest.skip("MADV_PAGEOUT is >= 5.4")
    if "use_zero_pages" in text and V(version).mm < (4, 11):
        pytest.skip("use_zero_pages is >= 4.11")
    calls = []
    real = K._merge_into_last_node
    def recorded(*a):
        calls.append(real(*a))
        return calls[-1]
    monkeypatch.setattr(K, "_merge_into_last_node", recorded)
    short = interp(text, version)
    monkeypatch.setattr(K, "_merge_into_last_node", lambda *a: False)
    long = interp(text, version)
    assert [r.fields for r in short.records] == [r.fields for r in long.records]
    assert short.violations == long.violations == []
    assert _state(short) == _state(long)
    if name in ("ksm01", "full-nodes", "forked"):
        assert True in calls                   # (the short way was taken)
    if name in ("full-nodes", "pinned", "swapped"):
        assert False in calls                  # (... and refused)


def test_the_era_variant_of_do_wp_page_is_looked_up_once():
    it = interp("A: mmap m 2\nA: fill m 0x01\nA: fork B\nA: fill m 0x02\n", "5.4")
    assert it.m.era_variant == {"do_wp_page": M._DO_WP_PAGE[it.m.era]}


def test_a_writable_pte_of_a_shared_frame_is_named_with_its_other_mappers():
    it = interp("A: mmap buf 2\nA: fill buf 0x5a\nA: fork B\n", "6.8")
    s = it.m.procs["B"].regions["buf"].pages[1]
    s.pte.writable = True
    got = [v for v in check(it.m, 0, 1) if v.prop == "writable-exclusive"]
    assert len(got) == 1 and got[0].detail.startswith("B/buf[1] is writable but ")
    assert got[0].detail.endswith("is also mapped by A/buf[1]")


def test_a_paged_out_page_is_still_checked_and_an_empty_one_is_not():
    it = interp("A: mmap buf 3\nA: fill buf[0..1] 0x5a\nA: madvise buf[1] pageout\n", "6.8")
    pages = it.m.procs["A"].regions["buf"].pages
    assert not pages[1].pte.present and pages[1].pte.swap is not None
    assert pages[2].pte.frame is None and check(it.m, 0, 1) == []
    pages[1].logical = Content(0x5a, 0x01)
    got = check(it.m, 0, 1)
    assert [v.prop for v in got] == ["isolation"] and "A/buf[1]" in got[0].detail


def test_a_records_changes_put_as_runs_read_as_points():
    """sync puts a record's changes as runs of pages while they come in page order and
    turns a column into points (index -> value, the later value winning) when a run
    comes out of order (model/run.py _put_run): either way the column reads what the
    points put one by one would."""
    import random

    from ksmdiff.model.run import _put_run
    from ksmdiff.observe import runs_from_points, runs_in_order

    rng = random.Random(7)
    values = [frozenset([v]) for v in ("a", "b", "c")]
    for _ in range(400):
        points: dict = {}
        want: dict = {}
        pos = rng.randrange(5)
        for _put in range(rng.randrange(1, 12)):
            if rng.random() < 0.2:
                pos = rng.randrange(40)          # (out of order: a later sync, others)
            lo = pos
            hi = lo + rng.choice([0, 0, 1, 5])
            v = rng.choice(values)
            _put_run(points, "col", lo, hi, v)
            for i in range(lo, hi + 1):
                want[i] = v
            pos = hi + 1 + rng.choice([0, 0, 0, 2])
        got = points["col"]
        if type(got) is list:
            assert all(a[1] < b[0] for a, b in zip(got, got[1:]))
            assert runs_in_order(got) == runs_from_points(want)
        else:
            assert got == want
