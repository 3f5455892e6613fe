"""NUMA in the model (mm/ksm.c since 3.9, every era): a page's node comes from its vma's
MPOL_BIND policy (``mmap R N node K``), and merge_across_nodes 0 keeps one stable and one
unstable tree per node (get_kpfn_nid())."""

import pytest

from .conftest import ERA_VERSIONS, interp, last, one, run

TWO_NODES = """A: mmap a 2 node 0
A: mmap b 2 node 1
A: fill a 0x2a
A: fill b 0x2a
A: madvise a mergeable
A: madvise b mergeable
"""


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_merge_across_nodes_0_merges_within_a_node_only(version):
    r = run("ksm set merge_across_nodes 0\n" + TWO_NODES + "ksm settle\n", version)
    assert last(r, "counter.pages_shared") == {2}         # one KSM page per node
    assert last(r, "counter.pages_sharing") == {2}
    assert one(last(r, "A/a[0].frame")) == one(last(r, "A/a[1].frame"))
    assert one(last(r, "A/a[0].frame")) != one(last(r, "A/b[0].frame"))


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_merge_across_nodes_1_merges_across_nodes(version):
    r = run(TWO_NODES + "ksm settle\n", version)
    assert last(r, "counter.pages_shared") == {1}
    assert last(r, "counter.pages_sharing") == {3}
    assert len({one(last(r, f"A/{x}[{i}].frame")) for x in "ab" for i in (0, 1)}) == 1


def test_the_trees_hold_their_nodes_pages():
    it = interp("ksm set merge_across_nodes 0\n" + TWO_NODES + "ksm settle\n", "6.1")
    nodes = sorted((n.nid, n.kpfn.nid) for n in it.m.ksm.stable_tree)
    assert nodes == [(0, 0), (1, 1)]                      # stable_node->nid == page's node
    it = interp(TWO_NODES + "ksm settle\n", "6.1")
    (node,) = it.m.ksm.stable_tree
    assert node.nid == 0                                  # get_kpfn_nid(): 0 across nodes


@pytest.mark.parametrize("version", ["4.19", "5.4", "6.1", "6.12"])
def test_pages_come_from_the_policy_node_at_every_allocation(version):
    # first touch, the copy that breaks COW after merging (unmerge-all: break_ksm), and a
    # fork's child writing (the policy is copied with the vma)
    it = interp(TWO_NODES + "ksm settle\nksm unmerge-all\nA: fork B\nB: write b[1] 0x01\n",
                version)
    a, b = it.m.procs["A"].regions, it.m.procs["B"].regions
    assert {s.pte.frame.nid for s in a["a"].pages} == {0}
    assert {s.pte.frame.nid for s in a["b"].pages} == {1}
    assert b["b"].node == 1 and b["b"].pages[1].pte.frame.nid == 1


def test_without_a_node_pages_are_on_node_0():
    it = interp("A: mmap a 1\nA: fill a 0x11\n", "6.1")
    assert it.m.procs["A"].regions["a"].pages[0].pte.frame.nid == 0


@pytest.mark.parametrize("version", ["4.19", "5.8", "6.12"])
def test_ltp_ksm06_flow(version):
    body = TWO_NODES.replace(" 2", " 4") + (
        "ksm unmerge-all\nksm set merge_across_nodes 1\nksm settle\n")
    r = run(body, version)
    assert (last(r, "counter.pages_shared"), last(r, "counter.pages_sharing")) == ({1}, {7})
    r = run(body + "ksm unmerge-all\nksm set merge_across_nodes 0\nksm settle\n", version)
    assert (last(r, "counter.pages_shared"), last(r, "counter.pages_sharing")) == ({2}, {6})
    # while KSM pages exist the knob cannot change (-EBUSY), and the trees stay as they are
    r = run(body + "ksm set merge_across_nodes 0\nksm settle\n", version)
    assert (last(r, "counter.pages_shared"), last(r, "counter.pages_sharing")) == ({1}, {7})


@pytest.mark.parametrize("version", ["5.4", "6.1"])
def test_a_cgroup_changes_nothing_below_its_limit(version):
    body = TWO_NODES + "ksm settle\nA: write a[0] 0x01\n"
    plain = run(body, version)
    grouped = run("A: cgroup g memory-max 100000\n" + body, version)
    assert grouped.status == plain.status == "ok"
    assert grouped.records[-1].fields == plain.records[-1].fields


@pytest.mark.parametrize("version", ["4.19", "5.4", "6.1", "6.12"])
def test_the_task_policy_and_the_cpuset_place_pages_without_a_vma_policy(version):
    it = interp("A: fork C\nA: mempolicy bind 1\nA: fork B\nA: mempolicy default\nA: mmap a 1\n"
                "A: fill a 0x11\nB: mmap b 1\nB: fill b 0x11\nB: mmap c 1 node 0\n"
                "B: fill c 0x11\nC: cgroup cs mems 1\nC: mmap d 1\nC: fill d 0x11\n",
                version)
    node = {(p, r): it.m.procs[p].regions[r].pages[0].pte.frame.nid
            for p, r in (("A", "a"), ("B", "b"), ("B", "c"), ("C", "d"))}
    # A dropped its policy; B inherited bind 1; the vma policy wins; C's cpuset
    assert node == {("A", "a"): 0, ("B", "b"): 1, ("B", "c"): 0, ("C", "d"): 1}


def test_ksmd_and_the_run_2_writer_allocate_with_their_own_policy():
    # break_ksm() at run=2 runs in the writer's task: its default policy (node 0), not
    # the bound task's; a vma policy still holds
    it = interp("A: mempolicy bind 1\nA: mmap a 2\nA: mmap b 2 node 1\nA: fill a 0x11\n"
                "A: fill b 0x22\nA: madvise a mergeable\nA: madvise b mergeable\n"
                "ksm settle\nksm unmerge-all\n", "6.1")
    r = it.m.procs["A"].regions
    assert {s.pte.frame.nid for s in r["a"].pages} == {0}
    assert {s.pte.frame.nid for s in r["b"].pages} == {1}
    assert not it.m.foreign_fault
