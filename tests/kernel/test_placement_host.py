"""Node placement and cgroups on the host kernel: a placement the machine can honour runs
and matches the model; one it cannot (a node without memory, no NUMA), or a cgroup
controller the cgroup2 root lacks, is unsupported with the reason, and nothing runs."""

from __future__ import annotations

import pytest

from ksmdiff.observe import OK, UNSUPPORTED
from ksmdiff.probe import host_version, run_kernel, system
from ksmdiff.scenario import parse

NODE = """scenario "placed"
process A
A: mmap a 3 node {n}
A: fill a 0x2a
A: madvise a mergeable
ksm settle
expect counter pages_shared +1
expect counter pages_sharing +2
"""
GROUP = """scenario "grouped"
process P
P: cgroup g memory-max 4096
P: mmap a 2
P: fill a 0x2a
"""


def test_a_node_with_memory_runs_and_matches_the_model(state_kept):
    from ksmdiff import judge, model
    nodes = system.memory_nodes()
    if not nodes:
        pytest.skip("this kernel has no NUMA (no /sys/devices/system/node/has_memory)")
    scn = parse(NODE.format(n=min(nodes)))
    run = run_kernel([scn])[0]
    assert run.status == OK, run.reason
    assert not judge.compare(model.run_model(scn, host_version()).records, run.records)


def test_a_node_without_memory_is_unsupported(state_kept):
    nodes = system.memory_nodes() or frozenset()
    missing = next(n for n in range(64) if n not in nodes)
    run = run_kernel([parse(NODE.format(n=missing))])[0]
    assert run.status == UNSUPPORTED and f"node {missing}" in run.reason
    assert run.records == ()


def test_a_memory_cgroup_needs_the_controller_on_cgroup2(state_kept):
    have = system.cgroup_controllers()
    run = run_kernel([parse(GROUP)])[0]
    if have is not None and "memory" in have:
        assert run.status == OK, run.reason
        assert not list(system.cgroup2_root().glob("ksmdiff-probe-*"))   # removed at its end
    else:
        assert run.status == UNSUPPORTED and "cgroup" in run.reason
        assert run.records == ()


def test_a_task_policy_on_a_node_with_memory_runs(state_kept):
    from ksmdiff import judge, model
    nodes = system.memory_nodes()
    if not nodes:
        pytest.skip("this kernel has no NUMA (no /sys/devices/system/node/has_memory)")
    scn = parse(f'scenario "bound task"\nprocess P\nP: mempolicy bind {min(nodes)}\nP: fork A\n'
                "A: mmap a 2\nA: fill a 0x2a\nP: mempolicy default\nA: madvise a mergeable\n"
                "ksm settle\nexpect counter pages_sharing +1\n")
    run = run_kernel([scn])[0]
    assert run.status == OK, run.reason
    assert not judge.compare(model.run_model(scn, host_version()).records, run.records)
