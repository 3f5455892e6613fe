"""Kernels really built from source: the build (instant when cached) and a boot.

Skipped, with the reason, when the machine has no kernel source (a fresh machine), no
qemu or no static busybox.  A build that is not cached takes minutes: these are slow.
"""

import shutil
import subprocess
import time

import pytest

from ksmdiff.errors import EnvironmentProblem
from ksmdiff.lab import build as B
from ksmdiff.lab import store

pytestmark = pytest.mark.slow

INIT = """#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
k=no; [ -r /proc/kpageflags ] && k=yes
echo "LAB-BOOT release=$(/bin/busybox uname -r) ksm_run=$(/bin/busybox cat /sys/kernel/mm/ksm/run) kpageflags=$k"
/bin/busybox reboot -f
"""


def _clean_5_4_source():
    known = B.load_known()
    return known, B.find_source(known, "linux-5.4.59")


def test_build_5_4_is_cached_and_stored():
    known, src = _clean_5_4_source()
    if src is None:
        pytest.skip("no linux-5.4.59 source on this machine (see ksmdiff/lab/known.toml)")
    # built as known.toml says (its fragments): another recipe under the same name would
    # replace the store's 5.4 with a kernel the other lab tests do not expect
    k = next(k for k in known.kernels if k.name == "5.4")
    assert not k.patches
    r = B.build(src, "5.4", config=k.config)     # minutes the first time, instant after
    again = B.build(src, "5.4", config=k.config)
    assert again.cached and again.seconds < 10
    assert again.kernel.release == r.kernel.release
    assert str(again.kernel.version) == "5.4.59"
    assert again.kernel.origin is store.Origin.SOURCE
    assert again.kernel.patches == ()


def _boot(kernel, tmp_path) -> tuple[str, float]:
    """Boot as the lab does (the PVH vmlinux when the kernel has one) to a busybox init."""
    from ksmdiff.lab import guest
    try:
        busybox = guest.find_busybox()
    except EnvironmentProblem as e:
        pytest.skip(str(e))
    c = guest.Cpio()
    for d in ("bin", "dev", "proc", "sys"):
        c.dir(d)
    c.file("bin/busybox", busybox.read_bytes(), 0o755)
    c.file("init", INIT.encode(), 0o755)
    initrd = tmp_path / f"{kernel.name}.cpio"
    initrd.write_bytes(c.finish())
    t = time.monotonic()
    p = subprocess.run(["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "256M",
                        "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
                        "-kernel", str(guest.boot_image(kernel)), "-initrd", str(initrd),
                        "-append", "console=ttyS0 panic=-1 rdinit=/init"],
                       capture_output=True, text=True, timeout=180)
    return p.stdout, time.monotonic() - t


def test_source_built_kernels_boot(tmp_path):
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 not installed")
    kernels = [k for k in store.list_kernels() if k.origin is store.Origin.SOURCE]
    if not kernels:
        pytest.skip("no kernel built from source in the store (ksmdiff lab build)")
    for k in kernels:
        out, secs = _boot(k, tmp_path)
        want = f"LAB-BOOT release={k.release} ksm_run=0 kpageflags=yes"
        assert want in out, (k.name, out[-2000:])
