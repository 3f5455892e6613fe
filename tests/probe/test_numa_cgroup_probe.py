"""Node placement and cgroups in the probe program: the compiler's lines, the probe's
reader (``--check``), and what the runner asks of a machine (no root needed)."""

from __future__ import annotations

import pytest

from ksmdiff.probe import system
from ksmdiff.probe.compiler import (beyond_cgroups, beyond_nodes, compile_scenario,
                                    parse_node_list)
from ksmdiff.scenario import parse

from test_compiler import probe_check

NODES = 'scenario "n"\nprocess A\nA: mmap a 2 node 1\nA: mmap b 1\nA: fill a 0x11\n'
GROUPS = ('scenario "c"\nprocess P\nP: cgroup g memory-max 5000\nP: fork A\nA: cgroup h\n'
          'A: cgroup g\n')


def _body(text: str) -> list[str]:
    return text.splitlines()[5:-1]


def test_a_node_goes_on_the_mmap_line():
    assert _body(compile_scenario(parse(NODES)).text)[:2] == ["0 mmap 0 0 2 1", "1 mmap 0 1 1"]


def test_groups_are_numbered_by_first_use():
    assert _body(compile_scenario(parse(GROUPS)).text) == [
        "0 cgroup 0 0 5000 -", "1 fork 0 1", "2 cgroup 1 1 max -", "3 cgroup 1 0 max -"]


def test_the_probe_reads_both(tmp_path):
    for text in (NODES, GROUPS):
        r = probe_check(tmp_path, compile_scenario(parse(text)).text)
        assert r.returncode == 0, r.stderr


HDR = "ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 1\n"


@pytest.mark.parametrize("line, needle", [
    ("0 mmap 0 0 1 64", "bad node"),
    ("0 mmap 0 0 1 0 0", "takes 3 fields"),
    ("0 cgroup 0 8 max -", "bad cgroup"),
    ("0 cgroup 0 0 0 -", "bad memory.max pages"),
    ("0 cgroup 0 0 max", "takes 4 fields"),
])
def test_the_probe_refuses_bad_lines(tmp_path, line, needle):
    r = probe_check(tmp_path, HDR + line + "\nend\n")
    assert r.returncode == 2 and needle in r.stderr.decode(), r.stderr


def test_node_lists():
    assert parse_node_list("0") == {0}
    assert parse_node_list("0-1,4\n") == {0, 1, 4}
    assert parse_node_list("") == frozenset()


def test_what_a_machine_must_have():
    nodes, groups = parse(NODES), parse(GROUPS)
    assert beyond_nodes(nodes, frozenset({0, 1})) is None
    assert "memory on node 0 only" in beyond_nodes(nodes, frozenset({0}))
    assert "CONFIG_NUMA is off" in beyond_nodes(nodes, None)
    assert beyond_nodes(groups, None) is None                # no placement: no need
    assert beyond_cgroups(groups, frozenset({"memory", "pids"})) is None
    assert "memory controller" in beyond_cgroups(groups, frozenset({"pids"}))
    assert "no cgroup v2" in beyond_cgroups(groups, None)
    assert beyond_cgroups(nodes, None) is None


def test_stale_groups_of_dead_probes_go(tmp_path, monkeypatch):
    root = tmp_path / "cg"
    root.mkdir()
    dead, live, busy, other = (root / "ksmdiff-probe-999999999-0", root /
                               f"ksmdiff-probe-{__import__('os').getpid()}-0",
                               root / "ksmdiff-probe-999999998-1", root / "user.slice")
    for d in (dead, live, busy, other):
        d.mkdir()
        (d / "cgroup.procs").write_text("")
    (busy / "cgroup.procs").write_text("1234\n")
    monkeypatch.setattr(system, "cgroup2_root", lambda: root)
    # a real cgroup directory loses its files with rmdir; here they are plain files
    monkeypatch.setattr(type(dead), "rmdir", lambda self: __import__("shutil").rmtree(self))
    assert system.remove_stale_cgroups() == [str(dead)]
    assert not dead.exists() and live.exists() and busy.exists() and other.exists()


def test_mempolicy_and_cpuset_lines(tmp_path):
    scn = parse('scenario "p"\nprocess P\nP: mempolicy bind 1\nP: cgroup cs mems 1\n'
                'P: mempolicy default\n')
    body = _body(compile_scenario(scn).text)
    assert body == ["0 mpol 0 1", "1 cgroup 0 0 max 1", "2 mpol 0 -"]
    assert probe_check(tmp_path, compile_scenario(scn).text).returncode == 0
    assert "cpuset controller" in beyond_cgroups(scn, frozenset({"memory"}))
    assert "node 1" in beyond_nodes(scn, frozenset({0}))
    for line, needle in (("0 mpol 0 64", "bad node"), ("0 mpol 0", "takes 2 fields"),
                         ("0 cgroup 0 0 max 64", "bad cpuset node")):
        r = probe_check(tmp_path, HDR + line + "\nend\n")
        assert r.returncode == 2 and needle in r.stderr.decode(), r.stderr
