"""Compile the C probe with the system compiler into a cache keyed by the source hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from ksmdiff.errors import EnvironmentProblem
from ksmdiff.internal.resources import cache_dir  # noqa: F401  (the lab imports it from here)

# -z now: no lazy binding.  A first call through the PLT writes the GOT, a private page
# that a fork shares: after the sibling exits that write is a reuse fault (pgreuse) of the
# probe's own, inside a counter window.
# The probe runs as root and parses what it is given: _FORTIFY_SOURCE=2 (checked string and
# memory calls where the size is known; it needs -O) and -fstack-protector-strong.
CFLAGS = ["-std=c11", "-O2", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong", "-Wall",
          "-Wextra", "-Wno-unused-parameter", "-Wl,-z,now"]


def source_text() -> bytes:
    return resources.files("ksmdiff.probe").joinpath("probe.c").read_bytes()


def source_hash() -> str:
    return hashlib.sha256(source_text()).hexdigest()[:16]


def find_compiler() -> str:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return shutil.which(cc)  # type: ignore[return-value]
    raise EnvironmentProblem(
        "no C compiler found (tried $CC, cc, gcc, clang): the kernel probe is C and is built "
        "on first use; install gcc (e.g. apt-get install gcc) or set CC")


def default_probe() -> Path:
    """The probe the runner uses: static when the C library allows it (exec is faster, no
    dynamic loader writing private pages), else dynamic with -z now."""
    marker = cache_dir() / f"no-static-{_flags_hash(True)}"
    if not marker.exists():
        try:
            return probe_path(static=True)
        except EnvironmentProblem as e:
            if "no C compiler" in str(e):
                raise
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(e))       # no static libc here: do not retry every run
    return probe_path(static=False)


def _key(source: bytes, static: bool) -> str:
    """The cache key of a C program: its source and every flag it is built with."""
    key = source + "\0".join(CFLAGS + (["-static"] if static else [])).encode()
    return hashlib.sha256(key).hexdigest()[:16]


def _flags_hash(static: bool) -> str:
    return _key(source_text(), static)


def compile_c(source: bytes, name: str, out: Path, *, static: bool = False) -> Path:
    """Compile one libc-only C file (the probe, the lab's driver and race program) with
    :data:`CFLAGS` to ``out``.  The file appears atomically: a concurrent build of the same
    source is harmless."""
    cc = find_compiler()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        c = Path(tmp) / f"{name}.c"
        c.write_bytes(source)
        exe = Path(tmp) / name
        cmd = [cc, *CFLAGS, *(["-static"] if static else []), "-o", str(exe), str(c)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise EnvironmentProblem(f"building {name}.c failed ({' '.join(cmd)}):\n{r.stderr}")
        os.replace(exe, out)
    return out


def cached_c(source: bytes, name: str, *, static: bool = False, rebuild: bool = False) -> Path:
    """``source`` compiled into the cache under a name keyed by source and flags."""
    out = cache_dir() / f"ksmdiff-{name}-{_key(source, static)}{'-static' if static else ''}"
    if out.exists() and not rebuild:
        return out
    return compile_c(source, name, out, static=static)


def build_probe(static: bool = False, out: str | os.PathLike | None = None) -> Path:
    """Compile the probe to ``out`` (default: the cache, see :func:`probe_path`) and return
    its path.  ``static=True`` links it statically (the lab's initramfs has no C library)."""
    if out is None:
        return probe_path(static=static, rebuild=True)
    return compile_c(source_text(), "probe", Path(out), static=static)


def probe_path(static: bool = False, *, rebuild: bool = False) -> Path:
    """The probe executable for the current source, building it if needed."""
    return cached_c(source_text(), "probe", static=static, rebuild=rebuild)
