"""``mmap R N node K`` (NUMA placement) and ``P: cgroup G [memory-max PAGES]``: syntax,
round trip, the validator's rules, what a machine must have to run them."""

from __future__ import annotations

import pytest

from ksmdiff.errors import InputError
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import parse, print_scenario
from ksmdiff.scenario.validate import (CGROUP_HEADROOM_PAGES, MAX_CGROUPS, MAX_NODE,
                                       cgroup_controllers, placement_nodes, uses_cgroups)

HEAD = 'scenario "t"\nprocess A\n'


def test_mmap_on_a_node_round_trips():
    scn = parse(HEAD + "A: mmap a 2 node 1\nA: mmap node 3\n")
    a, b = scn.statements
    assert (a.region, a.npages, a.node) == ("a", 2, 1)
    assert (b.region, b.node) == ("node", None)       # 'node' is still a region name
    text = print_scenario(scn)
    assert "A: mmap a 2 node 1\n" in text and "A: mmap node 3\n" in text
    assert parse(text) == scn
    assert placement_nodes(scn) == {1}


def test_a_node_is_part_of_equality():
    assert parse(HEAD + "A: mmap a 1 node 0\n") != parse(HEAD + "A: mmap a 1\n")


@pytest.mark.parametrize("body, message", [
    (f"A: mmap a 1 node {MAX_NODE + 1}\n", f"node {MAX_NODE + 1} is out of range"),
    ("A: mmap a 1 node\n", "Expected"),
    ("A: mmap a 1 node x\n", "Expected"),
])
def test_bad_nodes_are_refused_with_a_position(body, message):
    with pytest.raises(InputError) as info:
        parse(HEAD + body, "n.scenario")
    assert "n.scenario" in info.value.render() and info.value.location.line == 3
    assert message.lower() in info.value.render().lower()


def test_cgroup_round_trips_and_names_its_controllers():
    scn = parse(HEAD + "A: cgroup ltp memory-max 262144\nA: fork B\nB: cgroup ltp\n"
                "A: cgroup other\n")
    first, _fork, move, other = scn.statements
    assert isinstance(first, A.Cgroup) and first.memory_max == 262144
    assert move.memory_max is None and other.group == "other"
    assert parse(print_scenario(scn)) == scn
    assert uses_cgroups(scn) and cgroup_controllers(scn) == {"memory"}
    plain = parse(HEAD + "A: cgroup g\n")
    assert uses_cgroups(plain) and cgroup_controllers(plain) == frozenset()


def test_a_limit_the_scenario_could_reach_is_refused():
    need = 8 + CGROUP_HEADROOM_PAGES
    ok = parse(HEAD + f"A: cgroup g memory-max {need}\nA: mmap a 8\n")
    assert ok.statements[0].memory_max == need
    with pytest.raises(InputError) as info:
        parse(HEAD + f"A: cgroup g memory-max {need - 1}\nA: mmap a 8\n", "c.scenario")
    assert info.value.location.line == 3
    assert "could be reached" in info.value.render() and str(need) in info.value.render()


@pytest.mark.parametrize("body, message", [
    ("A: cgroup g memory-max 5000\nA: cgroup g memory-max 5000\n", "memory-max and mems are set there"),
    ("A: cgroup g memory-max 0\n", "memory-max 0"),
    ("B: cgroup g\n", "unknown process 'B'"),
    ("A: exit\nA: cgroup g\n", "process A has exited"),
    ("".join(f"A: cgroup g{i}\n" for i in range(MAX_CGROUPS + 1)), "more than"),
])
def test_bad_cgroup_statements_are_refused(body, message):
    with pytest.raises(InputError) as info:
        parse(HEAD + body)
    assert message in info.value.render()


def test_mempolicy_and_cpuset_round_trip_and_name_their_nodes():
    scn = parse(HEAD + "A: mempolicy bind 1\nA: cgroup cs memory-max 4096 mems 1\n"
                "A: mempolicy default\nA: fork B\n")
    pol, grp, default, _ = scn.statements
    assert isinstance(pol, A.Mempolicy) and pol.node == 1 and default.node is None
    assert (grp.memory_max, grp.mems) == (4096, 1)
    assert "A: mempolicy bind 1\n" in print_scenario(scn)
    assert "A: cgroup cs memory-max 4096 mems 1\n" in print_scenario(scn)
    assert parse(print_scenario(scn)) == scn
    assert placement_nodes(scn) == {1}
    assert cgroup_controllers(scn) == {"memory", "cpuset"}


@pytest.mark.parametrize("body, message", [
    ("A: mmap a 1\nA: cgroup cs mems 1\n", "enters a cpuset while it maps a"),
    ("A: cgroup cs mems 1\nA: mmap a 1 node 0\n", "outside A's cpuset"),
    ("A: cgroup cs mems 1\nA: mempolicy bind 0\n", "set_mempolicy would fail"),
    ("A: mempolicy bind 0\nA: cgroup cs mems 1\n", "outside the cpuset's mems"),
    ("A: cgroup cs mems 1\nA: fork B\nB: mmap a 1 node 0\n", "outside B's cpuset"),  # inherited
    ("A: mempolicy bind 64\n", "node 64 is out of range"),
    ("A: cgroup cs mems 64\n", "node 64 is out of range"),
    ("A: cgroup cs\nA: cgroup cs mems 1\n", "memory-max and mems are set there"),
])
def test_bad_placements_are_refused(body, message):
    with pytest.raises(InputError) as info:
        parse(HEAD + body)
    assert message in info.value.render()


def test_a_process_that_maps_nothing_may_enter_a_cpuset_after_its_children_did():
    scn = parse(HEAD + "A: fork B\nB: mmap a 1\nB: fill a 0x11\nB: exit\nA: cgroup cs mems 1\n"
                "A: fork C\nC: mmap a 1\n")
    assert scn.statements[4].mems == 1
