"""Global settings survive everything: SIGTERM mid-run, SIGKILL mid-run + ``ksmdiff
restore``, two runs at once, a malformed program given to the probe as root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from _kstate import PKG_ENV, PKG_HOME, ROOT, machine_state, probe_pids

JOURNAL = Path("/var/lib/ksmdiff/journal.json")

RUNNER = textwrap.dedent("""
    import sys, json
    from ksmdiff.scenario import parse_file, find_scenarios
    from ksmdiff.probe import run_kernel
    sc = [parse_file(p) for p in find_scenarios([sys.argv[1]])] * int(sys.argv[2])
    runs = run_kernel(sc, batch=sys.argv[3] == "batch")
    print(json.dumps([r.status for r in runs]))
""")


def start_run(copies: int, mode: str = "alone") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(ROOT / "corpora"), str(copies),
                             mode], cwd=PKG_HOME, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=PKG_ENV)


def wait_until_running(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the run holds the lock, wrote its journal and has probes running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {proc.stderr.read()}")
        if JOURNAL.exists():
            try:
                if json.loads(JOURNAL.read_text()).get("pid") == proc.pid and probe_pids():
                    return
            except ValueError:
                pass
        time.sleep(0.01)
    pytest.fail("the run did not start")


def journal_of(proc: subprocess.Popen) -> bool:
    """Is there a journal, and is it this run's?  (Another ksmdiff run on the machine may
    hold the lock and have its own journal meanwhile.)"""
    try:
        return json.loads(JOURNAL.read_text()).get("pid") == proc.pid
    except (OSError, ValueError):
        return False


def pinned_now() -> bool:
    return Path("/sys/kernel/mm/ksm/pages_to_scan").read_text().strip() == "1000000"


def test_sigterm_mid_run_restores_everything(state_kept):
    proc = start_run(40)
    wait_until_running(proc)
    time.sleep(0.3)
    assert pinned_now()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not journal_of(proc)


def test_sigint_mid_run_restores_everything(state_kept):
    proc = start_run(40)
    wait_until_running(proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    assert not journal_of(proc)


def test_sigkill_mid_run_then_restore(state_kept):
    proc = start_run(40)
    wait_until_running(proc)
    time.sleep(0.3)
    proc.kill()
    proc.wait(timeout=30)
    assert journal_of(proc)           # the killed run could not clean up
    assert pinned_now()
    deadline = time.monotonic() + 5   # its probes die with it (PDEATHSIG, supervisor check)
    while probe_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not probe_pids()
    r = subprocess.run([sys.executable, "-m", "ksmdiff.cli", "restore"], cwd=PKG_HOME, env=PKG_ENV,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "restored" in r.stdout or "nothing to restore" in r.stdout  # (or a new run did it)
    assert not journal_of(proc)
    again = subprocess.run([sys.executable, "-m", "ksmdiff.cli", "restore"], cwd=PKG_HOME, env=PKG_ENV,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0


def test_a_new_run_restores_a_killed_runs_journal_first(state_kept):
    proc = start_run(40)
    wait_until_running(proc)
    time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=30)
    assert journal_of(proc)
    ok = start_run(1, "batch")
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, err
    assert set(json.loads(out)) <= {"ok", "unsupported"}


def test_two_concurrent_runs(state_kept):
    a, b = start_run(2, "batch"), start_run(2, "alone")
    outs = [p.communicate(timeout=300) for p in (a, b)]
    for p, (out, err) in zip((a, b), outs):
        assert p.returncode == 0, err
        assert set(json.loads(out)) <= {"ok", "unsupported"}, out


@pytest.mark.parametrize("text", [
    "ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 1\n0 write 0 0 0 0 0x01 0\nend\n",
    "ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 2\n0 mmap 0 0 1\n1 fill 0 0 0 3 0x01\nend\n",
    "garbage\x01\x02",
])
def test_malformed_program_fails_cleanly_as_root(tmp_path, text, state_kept):
    from ksmdiff.probe.build import default_probe
    f = tmp_path / "bad.prog"
    f.write_bytes(text.encode())
    r = subprocess.run([str(default_probe()), str(f)], input=b"go\n", capture_output=True,
                       timeout=30)
    assert r.returncode == 2
    assert r.stdout == b""            # nothing ran: no start line, no records
    assert b"malformed program" in r.stderr


def test_no_swap_or_tracefs_left(state_kept):
    """A run that needs swap and the tracepoint provisions both and leaves neither."""
    from ksmdiff.probe import run_kernel
    from ksmdiff.scenario import parse
    scn = parse('scenario "p"\nrequires swap, tracepoints\nprocess A\nA: mmap b 1\n'
                'A: fill b 0x44\nA: madvise b mergeable\nksm settle\nA: madvise b pageout\n'
                'A: read b\n')
    run = run_kernel([scn])[0]
    assert run.status == "ok", run.reason
    last = {k: next(iter(v)) for k, v in run.records[-2].fields.items()}
    assert last["A/b[0].swapped"] is True and last["A/b[0].present"] is False
    assert machine_state()["swaps"] == state_kept["swaps"]
