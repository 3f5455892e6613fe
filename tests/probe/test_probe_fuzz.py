"""Fuzz the probe's program reader: whatever bytes it gets, it parses or refuses them
(exit 0 or 2) within a time bound, and never crashes.  ``--check`` runs nothing."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HEADER = b"ksmdiff-probe 1\nsalt 0123456789abcdef\nprocs 3\nregions 2\n"
OPS = [b"mmap", b"fill", b"write", b"read", b"madv", b"mprot", b"munmap", b"fork", b"exit",
       b"pin", b"unpin", b"prctl", b"sync", b"end", b"stmts"]


@pytest.fixture(scope="module")
def exe():
    from ksmdiff.probe.build import probe_path
    try:
        return probe_path()
    except Exception as e:
        pytest.skip(str(e))


def run_check(exe, data: bytes) -> int:
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "p"
        f.write_bytes(data)
        r = subprocess.run([str(exe), "--check", str(f)], capture_output=True, timeout=10)
    assert r.returncode in (0, 2), (r.returncode, data[:200], r.stderr[:300])
    if r.returncode == 2:
        assert r.stderr.startswith(b"ksmdiff-probe: malformed program")
    return r.returncode


tokens = st.one_of(st.sampled_from(OPS), st.integers(-3, 1 << 40).map(lambda n: str(n).encode()),
                   st.sampled_from([b"0x00", b"0xff", b"0x5a", b"z", b"m", b"u", b"d", b"p",
                                    b"r", b"w", b"0x1", b"-1", b""]))
lines = st.lists(tokens, min_size=0, max_size=9).map(lambda ts: b" ".join(ts))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes(exe, data):
    run_check(exe, data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines, max_size=30), st.integers(0, 40))
def test_structured_programs(exe, body, n):
    data = HEADER + b"stmts %d\n" % n + b"\n".join(body) + b"\nend\n"
    run_check(exe, data)
