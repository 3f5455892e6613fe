"""The probe acts only on its own pages and stops only its own processes: the munmap-hole
repro on the running kernel, and a killed probe's process tree gone (by pidfd and the
stdout lifeline, no pid signalled)."""

from __future__ import annotations

import os
import select
import tempfile
from pathlib import Path

import pytest

from ksmdiff.observe import OK
from ksmdiff.probe import host_version, run_kernel
from ksmdiff.scenario import parse

REPRO = ('scenario "hole"\nprocess A\nA: mmap a 4\nA: munmap a[1]\nA: mmap b 1\n'
         'A: fill b 0x01\nA: munmap a\nA: write b[0] 0x02\n')


def test_munmap_over_a_hole_leaves_the_next_region_alone(state_kept):
    """Before the rule the next mmap landed in a's hole, munmap a took b's page with it and
    the probe's process died at the write."""
    model = pytest.importorskip("ksmdiff.model")
    judge = pytest.importorskip("ksmdiff.judge")
    scn = parse(REPRO)
    run = run_kernel([scn])[0]
    assert run.status == OK, run.reason
    assert not judge.compare(model.run_model(scn, host_version()).records, run.records)
    last = {k: next(iter(v)) for k, v in run.records[-1].fields.items()}
    assert last["A/b[0].present"] and last["A/b[0].content"] == "0x01+0x02"
    assert last["A/b[0].fault"] == "reused"


def test_a_killed_probe_takes_its_processes_with_it(state_kept):
    from ksmdiff.probe import runner, system
    from ksmdiff.probe.build import default_probe
    from ksmdiff.probe.compiler import compile_scenario
    scn = parse('scenario "k"\nprocess A\nA: mmap b 2\nA: fill b 0x21\nA: fork B\n'
                'B: fork C\nksm settle\nA: write b[0] 0x01\n')
    prog = compile_scenario(scn)
    with system.RunLock(system.state_dir(None)), tempfile.TemporaryDirectory() as tmp:
        server = runner._ProbeServer(default_probe(), Path(tmp) / "windows.lock")
        try:
            lv = runner._Live(0, scn, prog, server, host_version(), ())
            lv.wait_start()
            lv.step()                       # up to the settle: every process waits there
            assert lv.status == OK and lv.at_barrier == len(scn.statements) - 2, lv.reason
            assert len(lv.all_pids) == 3
            # safe here: the three are alive and wait for the supervisor's next command
            watch = [os.pidfd_open(pid) for pid in lv.all_pids]
            try:
                lv.kill()                   # the probe by its pidfd, never these pids
                p = select.poll()
                for fd in watch:
                    p.register(fd, select.POLLIN)
                gone = {fd for fd, _ in p.poll(0)}
                assert gone == set(watch), "a scenario process outlived its killed probe"
            finally:
                for fd in watch:
                    os.close(fd)
        finally:
            server.close()


def test_a_hole_stays_reserved_for_its_region(state_kept):
    """After munmap a[1] the probe keeps a's hole mapped PROT_NONE: a[0], the one-page
    hole and a[2..3] stay contiguous in the process's maps, so b cannot land there."""
    from ksmdiff.probe import runner, system
    from ksmdiff.probe.build import default_probe
    from ksmdiff.probe.compiler import compile_scenario
    scn = parse('scenario "r"\nprocess A\nA: mmap a 4\nA: munmap a[1]\nA: mmap b 1\n'
                'A: fill b 0x01\nksm settle\n')
    page = os.sysconf("SC_PAGE_SIZE")
    with system.RunLock(system.state_dir(None)), tempfile.TemporaryDirectory() as tmp:
        server = runner._ProbeServer(default_probe(), Path(tmp) / "windows.lock")
        try:
            lv = runner._Live(0, scn, compile_scenario(scn), server, host_version(), ())
            lv.wait_start()
            lv.step()                       # stops at the settle, before ksmd runs
            assert lv.status == OK, lv.reason
            maps = []
            for line in Path(f"/proc/{lv.pids[0]}/maps").read_text().splitlines():
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                maps.append((lo, hi, line.split()[1]))
            lv.kill()
        finally:
            server.close()
    maps.sort()
    triples = [(x, y, z) for x, y, z in zip(maps, maps[1:], maps[2:])
               if x[1] == y[0] and y[1] == z[0] and y[1] - y[0] == page and y[2] == "---p"
               and x[2] == z[2] == "rw-p" and z[1] - z[0] >= 2 * page]
    # (a[0] may share its vma with b, mapped right below it: equal flags merge)
    assert len(triples) == 1, "\n".join(f"{a:x}-{b:x} {p}" for a, b, p in maps)
