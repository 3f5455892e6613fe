"""The probe's build: hardened flags, cached by source and flags, and a static build to a
path of the caller's choosing (the lab's initramfs)."""

from __future__ import annotations

import pytest

from ksmdiff.errors import EnvironmentProblem
from ksmdiff.probe import build


def test_hardening_flags():
    assert "-D_FORTIFY_SOURCE=2" in build.CFLAGS and "-O2" in build.CFLAGS
    assert "-fstack-protector-strong" in build.CFLAGS


def test_static_build_to_a_given_path(tmp_path):
    out = tmp_path / "sub" / "ksmdiff-probe"
    try:
        got = build.build_probe(static=True, out=out)
    except EnvironmentProblem as e:
        pytest.skip(f"no static build here: {e}")
    assert got == out and out.stat().st_mode & 0o111
    elf = out.read_bytes()
    assert elf[:4] == b"\x7fELF"
    import struct
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    types = [struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types                    # no PT_INTERP: static


def test_cache_key_covers_the_flags(monkeypatch):
    before = build._flags_hash(False)
    monkeypatch.setattr(build, "CFLAGS", build.CFLAGS + ["-g"])
    assert build._flags_hash(False) != before
    assert build._flags_hash(True) != build._flags_hash(False)
