"""Kernel tests: replay on the running kernel (root and KSM needed; CI runs them).

Every test here is marked ``kernel`` and skips with a reason when the machine cannot run
it.  ``machine_state()`` is what a run must leave exactly as it found it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
import time
from pathlib import Path

import pytest

from _kstate import KSM, machine_state, probe_pids  # noqa: E402


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.kernel)


@pytest.fixture(autouse=True)
def _needs_root_and_ksm():
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (PFNs, kpageflags, KSM knobs)")
    if not (KSM / "run").exists():
        pytest.skip("this kernel has no KSM")


@pytest.fixture
def state_kept():
    """The test must leave the machine as it found it."""
    with quiet():
        before = machine_state()
    yield before
    with quiet():
        after = machine_state()
    assert after == before


@contextmanager
def quiet():
    """Hold the ksmdiff run lock (no other run is changing the machine meanwhile) and let
    processes a run killed vanish."""
    from ksmdiff.probe import system
    with system.RunLock(system.state_dir(None)):
        for _ in range(40):
            if not probe_pids():
                break
            time.sleep(0.05)
        yield
