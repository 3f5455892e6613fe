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

# -z now: no lazy binding.  A first call through the PLT writes the GOT, a private page
# that a fork shares: after the sibling exits that write is a reuse fault (pgreuse) of the
# probe's own, inside a counter window.
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wl,-z,now"]


def source_text() -> bytes:
    return resources.files("ksmdiff.probe").joinpath("probe.c").read_bytes()


def source_hash() -> str:
    return hashlib.sha256(source_text()).hexdigest()[:16]


def cache_dir() -> Path:
    env = os.environ.get("KSMDIFF_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ksmdiff"


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
    marker = cache_dir() / f"no-static-{source_hash()}"
    if not marker.exists():
        try:
            return probe_path(static=True)
        except EnvironmentProblem as e:
            if "no C compiler" in str(e):
                raise
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(e))       # no static libc here: do not retry every run
    return probe_path(static=False)


def probe_path(static: bool = False, *, rebuild: bool = False) -> Path:
    """The probe executable for the current source, building it if needed."""
    src = source_text()
    h = hashlib.sha256(src + (b"static" if static else b"")).hexdigest()[:16]
    out = cache_dir() / f"ksmdiff-probe-{h}{'-static' if static else ''}"
    if out.exists() and not rebuild:
        return out
    cc = find_compiler()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        c = Path(tmp) / "probe.c"
        c.write_bytes(src)
        exe = Path(tmp) / "probe"
        cmd = [cc, *CFLAGS, *(["-static"] if static else []), "-o", str(exe), str(c)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise EnvironmentProblem(f"building the probe failed ({' '.join(cmd)}):\n{r.stderr}")
        os.replace(exe, out)  # atomic: a concurrent build of the same hash is harmless
    return out
