"""Booting Debian kernels under qemu (slow: tens of seconds each under TCG).

They skip, with the reason, when qemu is missing or the kernel is not in the lab store;
CI fetches the Debian kernels first (``ksmdiff lab fetch``)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ksmdiff.lab import guest, run, store
from ksmdiff.scenario import parse_file

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "corpora" / "seed" / "reuse-only-pte-mapped.scenario"
SUBSET = [SEED, ROOT / "corpora" / "matrix" / "sharer-exits.scenario",
          ROOT / "corpora" / "matrix" / "pageout-swapin-read.scenario"]

pytestmark = pytest.mark.slow


def _need(name: str) -> store.KernelImage:
    why = guest.qemu_available()
    if why:
        pytest.skip(why)
    k = store.get_kernel(name)
    if k is None:
        pytest.skip(f"lab kernel {name} not fetched (ksmdiff lab fetch {name})")
    try:
        guest.find_busybox()
    except Exception as e:
        pytest.skip(str(e))
    return k


def _write_record(cell):
    from ksmdiff.scenario import ast as A
    scn = cell.scenario
    return [r for r in cell.records if isinstance(scn.statements[r.stmt], A.Write)][-1]


def test_corpus_subset_on_debian_6_1_copies_the_seed_case():
    k = _need("6.1")
    scenarios = [parse_file(p) for p in SUBSET]
    boots = []
    cells = run.run_lab(scenarios, ["lab:6.1"], on_boot=boots.append)["lab:6.1"]
    assert boots and boots[0].result is not None, boots[0].reason if boots else "no boot"
    assert boots[0].result["release"] == k.release        # it ran in the guest
    seed = cells[0]
    assert seed.status == "ok", seed.reason
    assert seed.version == k.version and str(k.version).startswith("6.1.")
    w = _write_record(seed)
    assert w.get("A/buf[3].fault") == frozenset({"copied"})      # a new frame, as on >=5.9
    assert not seed.ksm_reuse
    assert not seed.failed and seed.mismatch is None
    swap = cells[2]
    assert swap.status == "ok", swap.reason                     # swap inside the guest


def test_sigterm_leaves_no_qemu_and_no_result(tmp_path):
    _need("6.1")
    out = tmp_path / "run.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "ksmdiff.cli", "run", str(SEED), "--kernel",
                          "lab:6.1", "-q", "--json", str(out)], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    qemu = None
    deadline = time.monotonic() + 120
    while qemu is None and time.monotonic() < deadline and p.poll() is None:
        for task in Path(f"/proc/{p.pid}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for kid in kids:
                try:
                    if b"qemu-system" in Path(f"/proc/{kid}/cmdline").read_bytes():
                        qemu = int(kid)
                except OSError:
                    pass
        time.sleep(0.1)
    assert qemu is not None, "qemu never started"
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode != 0
    time.sleep(0.5)
    assert not Path(f"/proc/{qemu}").exists() or b"qemu" not in \
        Path(f"/proc/{qemu}/cmdline").read_bytes(), "qemu outlived the run"
    assert not out.exists()
    assert not list(tmp_path.glob(".ksmdiff-*"))
