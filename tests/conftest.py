"""Shared test setup.

Every test in the pure packages' test folders runs inside ``ksmdiff.internal.audit.pure()``:
scenario, model, judge, kspec and generator code cannot open anything under /sys, /proc or
/dev, nor start a process, while it runs.  A test that must touch the system (the probe, the
kernel runner, the CLI run in a subprocess) lives elsewhere or is marked ``system``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ksmdiff.internal.audit import pure

PURE_DIRS = {"scenario", "model", "judge", "kspec", "gen", "audit"}
ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    config.addinivalue_line("markers", "system: may touch the system even in a pure folder")


def pytest_sessionstart(session):
    """CI tests the installed wheel: refuse to test the checkout by accident."""
    import ksmdiff
    here = Path(ksmdiff.__file__).resolve()
    if os.environ.get("KSMDIFF_REQUIRE_INSTALLED") and ROOT in here.parents:
        raise pytest.UsageError(
            f"KSMDIFF_REQUIRE_INSTALLED is set but ksmdiff was imported from the source tree "
            f"({here}); run the installed package's `pytest`, not `python -m pytest`")


@pytest.fixture(autouse=True)
def _pure_code_stays_off_the_system(request):
    folder = Path(str(request.node.fspath)).parent.name
    if folder in PURE_DIRS and request.node.get_closest_marker("system") is None:
        with pure():
            yield
    else:
        yield


@pytest.fixture
def repo_root() -> Path:
    return ROOT
