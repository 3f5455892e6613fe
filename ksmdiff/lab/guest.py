"""Boot a lab kernel under qemu and run scenarios (or the race experiment) in it.

The guest is a small initramfs (Debian's static busybox, the kernel's virtio/9p/virtio-blk/
brd modules, ``/init``).  For scenarios (``boot_driver``) it also holds the static probe
and the static driver (driver.c): the init loads the modules, mounts a writable 9p share
(a private temporary directory: the plans in, the transcripts out), swaps on a sparse
virtio disk and starts the driver; no Python and no host tree in the guest
(drive.py makes the records on the host).  For the race experiment (``boot``) the init
mounts the host's root file system read-only over virtio-9p and runs ``python -S -m
ksmdiff.lab.agent`` chrooted into it; the agent writes its result atomically (rename).
qemu runs with mem-merge=off (guest RAM is no KSM candidate of the host), in its own
process group, dying with the thread that started it (PR_SET_PDEATHSIG).  The console
(ttyS0) is kept; its tail is the reason of an environment result when the kernel panics,
hangs or the guest's program dies.

With the driver (bench/bench_lab_compare.py, the 110-scenario corpus, the agent's tree
against this one in one run, load 9-14 on the 2-CPU machine; seconds from qemu's start):

    kernel   first result: agent  driver   whole corpus: agent  driver
    5.4                     20.6     6.5                  96.4    46.6
    5.8                     15.8     9.7                  74.6    38.4
    5.10                    29.7    13.3                 117.0    45.2
    6.1                     30.5    11.0                 104.0    39.4
    6.12                    32.2    13.5                 106.6    39.7
    six-column run (host + 5 kernels): 312.4 s with the agent, 139.7 s with the driver.

A second such run (load 11-13): first results 5.8 / 5.2 / 12.0 / 14.2 / 19.8 s, whole
corpus 33.8 / 28.6 / 43.1 / 48.2 / 64.6 s, six-column run 359.3 s -> 111.8 s.  At load
1.6-5.9 (bench_lab.py, the seed corpus, medians of 3), the first result: 5.4 2.2 s,
5.8 1.9 s, 5.10 4.4 s, 6.1 4.8 s, 6.12 8.1 s.

The first result now comes about 0.5 s after the driver starts; the rest of it is the
boot (5.4.59: 3.6 s to the driver at load 7; Debian 6.1: its kernel 9.4 s of uptime to
the init, modules, the share and swap 3.3 s more).  The corpus' first pass takes
28-36 s in the guest, about 0.3 s a scenario: the reap and the settles (ksmd's full scans,
each bounded), the probe's start and its observations.

The driver replaced a Python agent in the scenarios' guest (the host runner itself, run by
the host's interpreter over the 9p-shared tree).  What the agent cost, measured (the
record of that design):

Python in the guest, measured (bench/bench_lab.py, 34-scenario corpus, one kernel at a
time, on this project's 2-CPU build machine while other jobs kept the load average at 11-12):

    kernel     agent running  first result  corpus done  corpus in guest
    5.10.262        27.0 s        44.6 s        72.9 s         27.3 s
    6.1.192         27.5 s        43.3 s        77.4 s         29.2 s
    6.12.118        33.9 s        68.9 s       191.5 s         47.9 s  (all diverge: re-runs)

and at load 8-9 (after the swap disk and stretched ksmd bounds): 6.1 14.9 / 25.8 / 42.5 /
14.9 s, 5.10 16.8 / 29.5 / 49.7 / 18.7 s.

In the guest ``python -S -c pass`` took 1.2-6.5 s and the agent's imports (runner,
scenario language with lark, judge) 13-26 s of guest time; the host imports the same in
0.6 s.  The 5 s first-result budget is out of reach with an interpreter under TCG on a
loaded machine; what it buys is the host runner itself (knob pins, settles, counters,
tracepoints, swap) running unchanged against every kernel.  Booting the PVH vmlinux
instead of the bzImage (no emulated XZ decompressor) took a trivial init from 28.6 s to
11.6 s at the same load.

Where a boot's time goes (bench_lab.py, 84-scenario corpus, load 4-7; the guest's uptime at
each step, the host's clock for the totals).  5.4.59 before and after the guest's Python
work was cut (result encoded by json's C encoder and written once, no lark import, a
byte-compiled tree, progress beats at most once a second, a 10x slower poll of ksmd):

             kernel  init  python  imports  corpus | host: agent  first  result
    before     3.0   0.3    4.4     13.0    19.4   |       10.6   28.0    59.7
    after      1.8   0.2    2.1      5.2    13.2   |       10.0   22.2    55.3

and 6.1.192 (its kernel 7.6 s and its module loading 4.6 s alone): first result 40.9 ->
37.2 s, result 76.2 -> 73.1 s.  The uptime of 5.4/5.8 is no measure: their tinyconfig
kernels have no HPET or PM timer and count time in jiffies, which fall behind the host's
clock when qemu waits for a CPU (a 5 s sleep measured 5.25 s of uptime).  Under cProfile
the corpus' time in the guest is spread over the runner's Python (decoding probe lines,
sysfs reads, probe I/O, compiling programs): no one part to cut.  What is left above the
5 s target is the interpreter itself (start and imports, 10-15 s on the host's clock):
the way under it was a guest without Python: the driver.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from ksmdiff.errors import EnvironmentProblem
from ksmdiff.lab.store import KernelImage

QEMU = "qemu-system-x86_64"
MEMORY = "1G"
NUMA_NODES = 2                # numa=fake=N: the guest's NUMA nodes (qemu_command)
SWAP_MB = 128                 # the guest's swap: a sparse virtio disk image (or brd)
SWAP_IMAGE = "swap.img"       # in the run's private directory, removed with it
BOOT_TIMEOUT = 240.0          # seconds from qemu start to the agent's start
STEP_TIMEOUT = 180.0          # seconds the agent may go without progress (a scenario done)
CONSOLE_TAIL = 40             # lines of console kept in an environment result
GUEST_OUT = "/tmp/ksmdiff-lab"  # where the result share is mounted in the chroot

# The two guests' inits (the race experiment's agent: INIT; the scenarios' driver:
# INIT_DRIVER) share the start (busybox, /proc, /sys, /dev, modules, a cgroup v2 mount) and
# the swap.
_INIT_START = r"""/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "ksmdiff-lab: init $(uname -r) at $(cut -d' ' -f1 /proc/uptime)"
for m in $(cat /etc/lab-modules); do
    case "$m" in
        */brd.ko) insmod "/lib/modules/$m" rd_nr=1 rd_size=@SWAP_KB@ || echo "ksmdiff-lab: insmod $m failed" ;;
        *) insmod "/lib/modules/$m" || echo "ksmdiff-lab: insmod $m failed" ;;
    esac
done
fail() { echo "ksmdiff-lab: FAILED: $*"; reboot -f; sleep 10; }
# cgroup v2 with the memory and cpuset controllers for the groups' children (scenarios'
# 'cgroup'); a kernel without CONFIG_MEMCG or CONFIG_CPUSETS (or cgroups) leaves it out,
# and the driver says which the root enables
mkdir -p /sys/fs/cgroup
if mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null; then
    for c in memory cpuset; do
        echo +$c > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || echo "ksmdiff-lab: no $c cgroup"
    done
else
    echo "ksmdiff-lab: no cgroup2"
fi
"""

_INIT_SWAP = r"""# swap: the virtio disk (asynchronous, like the host's swap); brd only without one, as
# brd is QUEUE_FLAG_SYNCHRONOUS and do_swap_page then skips the swap cache (a KSM page
# swapped out comes back as a new, non-KSM page)
SWAPDEV=
for d in /dev/vda /dev/ram0; do [ -b $d ] && { SWAPDEV=$d; break; }; done
if [ -n "$SWAPDEV" ]; then
    mkswap $SWAPDEV >/dev/null && swapon $SWAPDEV || echo "ksmdiff-lab: no swap on $SWAPDEV"
else
    echo "ksmdiff-lab: no swap device: scenarios that need swap cannot run"
fi
"""

INIT = (r"""#!/bin/busybox sh
# ksmdiff lab guest init: modules, the host's tree (read-only 9p), swap, the agent.
""" + _INIT_START + r"""H=/host
mkdir -p $H
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 host $H || fail "mount host 9p"
for d in proc sys dev tmp run; do [ -d $H/$d ] || fail "no /$d in the host tree"; done
mount -t proc proc $H/proc
mount -t sysfs sys $H/sys
mount -t devtmpfs dev $H/dev || mount -o bind /dev $H/dev
# the guest's /tmp is its own tmpfs; the host's stays reachable for the paths the agent
# needs there (a virtual environment made under /tmp, as CI makes one): list "keep"
mkdir -p /hosttmp
mount -o bind $H/tmp /hosttmp || fail "bind the host's /tmp"
mount -t tmpfs tmp $H/tmp
mount -t tmpfs run $H/run
mount -t tracefs tracefs $H/sys/kernel/tracing 2>/dev/null || echo "ksmdiff-lab: no tracefs"
mkdir -p $H@OUT@
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out $H@OUT@ || fail "mount out 9p"
if [ -f $H@OUT@/keep ]; then
    while read -r p; do
        mkdir -p "$H$p" && mount -o bind "/hosttmp${p#/tmp}" "$H$p" || fail "bind $p"
    done < $H@OUT@/keep
fi
""" + _INIT_SWAP + r"""echo "ksmdiff-lab: agent at $(cut -d' ' -f1 /proc/uptime)"
chroot $H /bin/sh @OUT@/run.sh
echo "ksmdiff-lab: agent exit $? at $(cut -d' ' -f1 /proc/uptime)"
reboot -f
sleep 10
""")

# The scenarios' guest: no Python, no host tree.  The static probe and the driver are in
# the initramfs; the plans come in and the transcripts go out over the "out" share.
INIT_DRIVER = (r"""#!/bin/busybox sh
# ksmdiff lab guest init: modules, the host's share, swap, the driver.
""" + _INIT_START + r"""mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || echo "ksmdiff-lab: no tracefs"
mkdir -p /out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /out || fail "mount out 9p"
""" + _INIT_SWAP + r"""echo "ksmdiff-lab: driver at $(cut -d' ' -f1 /proc/uptime)"
/bin/ksmdiff-lab-driver /out /bin/ksmdiff-probe
echo "ksmdiff-lab: driver exit $? at $(cut -d' ' -f1 /proc/uptime)"
reboot -f
sleep 10
""")

RUN_SH = """#!/bin/sh
cd /
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME={home} \\
    PYTHONPATH={pythonpath} PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0 \\
    KSMDIFF_STATE_DIR=/run/ksmdiff KSMDIFF_CACHE={cache} \\
    {python} -S -m ksmdiff.lab.agent {out}
"""


# ----------------------------------------------------------------------------- initramfs

class Cpio:
    """A cpio archive in the "newc" format the kernel unpacks as its initramfs."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{x:08X}" for x in (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + nb)
        self.buf.write(b"\0" * (-(110 + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()


def module_load_order(modules: Path | None) -> list[str]:
    """Module files (relative to the modules tree) in an order insmod accepts: every
    module after what modules.dep says it needs."""
    if modules is None or not (modules / "modules.dep").exists():
        return []
    dep: dict[str, list[str]] = {}
    for line in (modules / "modules.dep").read_text().splitlines():
        if ":" in line:
            m, _, d = line.partition(":")
            dep[m.strip()] = d.split()
    order: list[str] = []

    def visit(m: str) -> None:
        if m in order:
            return
        for d in dep.get(m, []):
            visit(d)
        order.append(m)

    for m in dep:
        visit(m)
    return order


def initramfs_entries(kernel: KernelImage, busybox: Path,
                      driver: tuple[Path, Path] | None = None, *,
                      init: str | None = None) -> Cpio:
    """The initramfs: busybox, the kernel's modules and an /init.  ``driver``: (the static
    probe, the static driver) for the scenarios' guest (INIT_DRIVER); else the Python
    agent's guest (INIT, the host's tree over 9p: the race experiment).  ``init``: another
    /init (the programs' guest, programs.py)."""
    c = Cpio()
    for d in ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp", "host"):
        c.dir(d)
    c.file("bin/busybox", busybox.read_bytes(), 0o755)
    if driver is not None:
        c.file("bin/ksmdiff-probe", driver[0].read_bytes(), 0o755)
        c.file("bin/ksmdiff-lab-driver", driver[1].read_bytes(), 0o755)
    c.file("init", (init or (INIT_DRIVER if driver else INIT)).replace("@SWAP_KB@", str(SWAP_MB * 1024))
           .replace("@OUT@", GUEST_OUT).encode(), 0o755)
    order = module_load_order(kernel.modules)
    made = {"lib/modules"}
    for rel in order:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "lib/modules/" + "/".join(parts[:i])
            if d not in made:
                c.dir(d)
                made.add(d)
        c.file(f"lib/modules/{rel}", (kernel.modules / rel).read_bytes())
    c.file("etc/lab-modules", ("\n".join(order) + "\n").encode())
    return c


def find_busybox() -> Path:
    """Debian's busybox-static: fetched into the lab cache, else the host's if static."""
    from ksmdiff.lab.fetch import apt_dir
    cached = apt_dir("bookworm").parent / "busybox"
    if cached.exists():
        return cached
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(p) and _is_static(Path(p)):
            return Path(p)
    raise EnvironmentProblem("no static busybox: run 'ksmdiff lab fetch' (it fetches "
                             "busybox-static) or install busybox-static")


def _is_static(path: Path) -> bool:
    """An ELF executable without a PT_INTERP program header."""
    data = path.read_bytes()[:65536]
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        ptype, = struct.unpack_from("<I", data, phoff + i * phentsize)
        if ptype == 3:
            return False
    return True


def initramfs(kernel: KernelImage, driver: tuple[Path, Path] | None = None, *,
              init: str | None = None) -> Path:
    """The kernel's initramfs, cached by its content."""
    from ksmdiff.probe.build import cache_dir
    data = initramfs_entries(kernel, find_busybox(), driver, init=init).finish()
    h = hashlib.sha256(data).hexdigest()[:16]
    out = cache_dir() / "lab" / "initramfs" / f"{kernel.name}-{h}.cpio"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    return out


# ----------------------------------------------------------------------------- vmlinux

_MAGICS = ((b"\xfd7zXZ\x00", "xz"), (b"\x1f\x8b\x08", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"))


def _decompress(blob: bytes, kind: str) -> bytes | None:
    try:
        if kind == "xz":
            return lzma.LZMADecompressor().decompress(blob)
        if kind == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
        if kind == "zstd":
            r = subprocess.run(["zstd", "-dcq"], input=blob, capture_output=True)
            return r.stdout or None
    except (lzma.LZMAError, zlib.error, OSError):
        return None
    return None


def has_pvh_note(elf: bytes) -> bool:
    """An ELF64 kernel with XEN_ELFNOTE_PHYS32_ENTRY (type 18, owner "Xen"): CONFIG_PVH,
    which qemu's -kernel needs to start an uncompressed vmlinux."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        ptype, _flags, off, _va, _pa, filesz = struct.unpack_from("<IIQQQQ", elf,
                                                                  phoff + i * phentsize)
        if ptype != 4:      # PT_NOTE
            continue
        pos, end = off, off + filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == 18:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def boot_image(kernel: KernelImage) -> Path:
    """What qemu's -kernel gets: the uncompressed vmlinux (cached, beside nothing in the
    store) when the kernel has a PVH entry, else the bzImage.

    Measured on the 2-core build machine (load ~9): Debian 6.1 to a trivial init took
    28.6 s as bzImage (its XZ decompressor runs emulated) and 11.6 s as PVH vmlinux."""
    from ksmdiff.probe.build import cache_dir
    data = kernel.vmlinuz.read_bytes()
    h = hashlib.sha256(data).hexdigest()[:16]
    d = cache_dir() / "lab" / "vmlinux"
    out, no = d / f"{kernel.name}-{h}", d / f"{kernel.name}-{h}.no-pvh"
    if out.exists():
        return out
    if no.exists():
        return kernel.vmlinuz
    d.mkdir(parents=True, exist_ok=True)
    for magic, kind in _MAGICS:
        pos = data.find(magic)
        while pos >= 0:
            elf = _decompress(data[pos:], kind)
            if elf and elf[:4] == b"\x7fELF":
                if has_pvh_note(elf):
                    tmp = out.with_suffix(".tmp")
                    tmp.write_bytes(elf)
                    os.replace(tmp, out)
                    return out
                no.write_text("no PVH entry (CONFIG_PVH): booting the bzImage\n")
                return kernel.vmlinuz
            pos = data.find(magic, pos + 1)
    no.write_text("no compressed vmlinux found in the bzImage\n")
    return kernel.vmlinuz


# ----------------------------------------------------------------------------- qemu

def qemu_command(kernel: KernelImage, initrd: Path, out: Path, *, smp: int = 1,
                 host_tree: bool = True) -> list[str]:
    """``host_tree``: the host's root file system too, read-only (the Python agent's)."""
    # acpi=noirq: PCI interrupts routed by the BIOS's $PIR table, not by ACPI link devices,
    # whose AML ran for 1.5 s per virtio device under TCG (Debian 6.1: the init to the
    # agent's start 7.6-12.7 s before, 4.6-4.9 s after; the source-built kernels have no
    # ACPI and pass the word on to init)
    # numa=fake=2 (CONFIG_NUMA_EMU: Debian's kernels and configs/numa.config): two NUMA
    # nodes of half the guest's memory each, the CPUs on node 0, for the scenarios that
    # place regions on a node (mmap R N node K) and merge_across_nodes 0.  Emulated nodes,
    # not qemu's -numa: that reaches the kernel through ACPI's SRAT only, and the source
    # builds have no ACPI.  A kernel without NUMA_EMU boots with one node (or none) and
    # passes the word on to init; the driver's header says which nodes have memory.
    append = ("console=ttyS0 quiet panic=-1 oops=panic random.trust_cpu=on rdinit=/init "
              f"brd.rd_nr=1 brd.rd_size={SWAP_MB * 1024} mitigations=off no_timer_check "
              f"acpi=noirq numa=fake={NUMA_NODES}")
    # mem-merge=off: qemu marks guest RAM MADV_MERGEABLE by default, and the host's ksmd
    # (a --kernel host run beside the lab) would merge it into the host's KSM counters
    return [QEMU, "-accel", "tcg", "-machine", "pc,mem-merge=off", "-cpu", "max",
            # one CPU per socket: SeaBIOS's MP table (the only CPU list of a kernel without
            # ACPI, as the lab's source builds are) names one CPU per package, so two cores
            # of one socket boot as one CPU
            "-m", MEMORY, "-smp", f"{smp},sockets={smp},cores=1,threads=1",
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
            "-kernel", str(boot_image(kernel)), "-initrd", str(initrd), "-append", append,
            *(["-virtfs", "local,path=/,mount_tag=host,security_model=none,readonly=on,"
                          "multidevs=remap"] if host_tree else []),
            "-virtfs", f"local,path={out},mount_tag=out,security_model=none",
            "-drive", f"file={out / SWAP_IMAGE},format=raw,if=virtio,cache=unsafe"]


def qemu_available() -> str | None:
    """None when qemu can run, else why not."""
    if not shutil.which(QEMU):
        return f"{QEMU} not found (apt-get install qemu-system-x86)"
    return None


@dataclass
class BootResult:
    kernel: KernelImage
    result: dict | None           # the agent's result document, or None
    reason: str = ""              # why there is no result (panic, hang, agent failure)
    console: str = ""
    timings: dict = field(default_factory=dict)   # seconds since qemu start


_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()
_STOP = threading.Event()      # set by kill_all: no new boot starts until reset()


def guest_pythonpath() -> str:
    """The agent runs with ``python -S`` (site's .pth processing cost ~1.5 s under TCG):
    the ksmdiff tree and the directory holding lark, its one third-party import."""
    import ksmdiff
    import lark
    dirs = [str(Path(ksmdiff.__file__).resolve().parent.parent),
            str(Path(lark.__file__).resolve().parent.parent)]
    return ":".join(dict.fromkeys(dirs))


_COMPILED = threading.Lock()
_COMPILED_ONCE: list[bool] = []


def compile_guest_sources() -> None:
    """Byte-compile the ksmdiff tree the guest imports (``__pycache__`` beside the sources,
    as Python itself writes it): the guest mounts the tree read-only and would compile
    every module from source at every boot, under an emulated CPU.  Up-to-date files are
    skipped; an unwritable tree (an installed package, compiled when installed) is left
    as it is.  Once per process."""
    import compileall
    import ksmdiff
    with _COMPILED:
        if _COMPILED_ONCE:
            return
        _COMPILED_ONCE.append(True)
        root = Path(ksmdiff.__file__).resolve().parent
        if os.access(root, os.W_OK):
            compileall.compile_dir(str(root), quiet=2, workers=1)


def host_tmp_paths() -> list[str]:
    """The host paths under /tmp the agent needs (the guest mounts its own tmpfs there):
    the Python environment and the directories on the agent's PYTHONPATH."""
    wanted = [sys.prefix, *guest_pythonpath().split(":")]
    keep: list[str] = []
    for d in sorted({str(Path(p).resolve()) for p in wanted}):
        if d.startswith("/tmp/") and not any(d.startswith(k + "/") for k in keep):
            keep.append(d)
    return keep


def reset() -> None:
    _STOP.clear()


def _preexec() -> None:
    # qemu dies with the thread that started it (the run waits on it in that thread)
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG


def kill_all() -> None:
    """Kill every qemu this process started and is still running (its process group);
    boots not yet started do not start."""
    _STOP.set()
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for p in procs:
        _kill(p)


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)    # its own session: pid == pgid
        except ProcessLookupError:
            pass
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _tail(text: str, n: int = CONSOLE_TAIL) -> str:
    lines = [l.rstrip("\r") for l in text.splitlines()]
    return "\n".join(lines[-n:])


def boot(kernel: KernelImage, job: dict, *, timeout: float = BOOT_TIMEOUT,
         step_timeout: float = STEP_TIMEOUT, smp: int = 1) -> BootResult:
    """One boot of ``kernel`` running ``job`` in the agent; returns its result document
    or, for a panic, hang or failed agent, the reason with the console tail.

    A hang is no start of the agent within ``timeout`` seconds of qemu's start, or no
    progress (a scenario finished, a re-run begun) for ``step_timeout`` seconds after."""
    why = qemu_available()
    if why:
        return BootResult(kernel, None, why)
    from ksmdiff.probe.build import cache_dir, default_probe
    default_probe()                      # the guest's file system is read-only: build now
    compile_guest_sources()
    initrd = initramfs(kernel)
    with tempfile.TemporaryDirectory(prefix=f"ksmdiff-lab-{kernel.name}-") as tmp:
        out = Path(tmp)
        (out / "job.json").write_text(json.dumps(job))
        with open(out / SWAP_IMAGE, "wb") as f:
            f.truncate(SWAP_MB << 20)                      # sparse
        (out / "keep").write_text("".join(f"{d}\n" for d in host_tmp_paths()))
        (out / "run.sh").write_text(RUN_SH.format(
            home=os.path.expanduser("~"),
            pythonpath=guest_pythonpath(),
            cache=str(cache_dir()), python=sys.executable, out=GUEST_OUT))
        console_path = out / "console.log"
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        with open(console_path, "wb") as console:
            p = _spawn(qemu_command(kernel, initrd, out, smp=smp), console)
            if p is None:
                return BootResult(kernel, None, "interrupted before the boot")
            try:
                deadline, beat = t0 + timeout, ""
                while True:
                    rc = p.poll()
                    now = time.monotonic()
                    if "agent" not in timings and (out / "started").exists():
                        timings["agent"] = now - t0
                        deadline = now + step_timeout
                    try:
                        b = (out / "progress").read_text()
                    except OSError:
                        b = beat
                    if b != beat:
                        beat, deadline = b, now + step_timeout
                        if b.startswith("phase:"):      # the agent's steps, for the bench
                            timings.setdefault(b.split()[0], now - t0)
                        elif "first" not in timings:
                            timings["first"] = now - t0
                    if "result" not in timings and (out / "result.json").exists():
                        timings["result"] = now - t0
                    if rc is not None:
                        break
                    if now > deadline:
                        _kill(p)
                        text = console_path.read_text(errors="replace")
                        what = (f"the agent made no progress for {step_timeout:.0f} s "
                                f"(last: {beat.split()[0] if beat else 'none'})"
                                if "agent" in timings else
                                f"the agent did not start within {timeout:.0f} s")
                        return BootResult(kernel, None, f"hang: {what}; console tail:\n"
                                          + _tail(text), text, timings)
                    time.sleep(0.05)
            finally:
                _kill(p)
                with _LIVE_LOCK:
                    _LIVE.discard(p)
        timings["exit"] = time.monotonic() - t0
        text = console_path.read_text(errors="replace")
        if (out / "result.json").exists():
            try:
                result = json.loads((out / "result.json").read_text())
            except json.JSONDecodeError as e:
                return BootResult(kernel, None, f"unreadable result: {e}", text, timings)
            if "started" in result:
                timings["agent_started_in_guest"] = result["started"]
            return BootResult(kernel, result, "", text, timings)
        return _no_result(kernel, p, text, timings)


def _spawn(cmd: list[str], console) -> subprocess.Popen | None:
    """qemu in its own session, killed with the thread that started it; None once
    kill_all stopped the run."""
    with _LIVE_LOCK:
        if _STOP.is_set():
            return None
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=_preexec)
        _LIVE.add(p)
    return p


def _no_result(kernel: KernelImage, p: subprocess.Popen, text: str,
               timings: dict) -> BootResult:
    if "Kernel panic" in text:
        what = "kernel panic"
    elif "FAILED" in text:
        what = "guest setup failed"
    else:
        what = f"qemu exited (status {p.returncode}) without a result"
    return BootResult(kernel, None, f"{what}; console tail:\n" + _tail(text), text, timings)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def boot_driver(kernel: KernelImage, session, *, timeout: float = BOOT_TIMEOUT,
                step_timeout: float = STEP_TIMEOUT) -> BootResult:
    """One boot of ``kernel`` replaying ``session``'s scenarios (drive.LabSession) with the
    guest's C driver and the static probe: no Python in the guest.  The driver reads
    ``plan.N`` from the share and writes ``trans.N`` a scenario at a time, then ``done.N``;
    the session reads each pass and gives the next plan (re-runs) or ends the boot.
    ``result``: the session's result (KernelRuns), or None with the reason (a panic, a
    hang: no start within ``timeout`` s or no scenario done for ``step_timeout`` s, the
    driver dead), with the console tail."""
    why = qemu_available()
    if why:
        return BootResult(kernel, None, why)
    from ksmdiff.lab.drive import driver_path
    from ksmdiff.probe.build import probe_path
    initrd = initramfs(kernel, (probe_path(static=True), driver_path()))
    with tempfile.TemporaryDirectory(prefix=f"ksmdiff-lab-{kernel.name}-") as tmp:
        out = Path(tmp)
        _write_atomically(out / "plan.0", session.first_plan())
        with open(out / SWAP_IMAGE, "wb") as f:
            f.truncate(SWAP_MB << 20)                      # sparse
        console_path = out / "console.log"
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        finished = False
        with open(console_path, "wb") as console:
            p = _spawn(qemu_command(kernel, initrd, out, host_tree=False), console)
            if p is None:
                return BootResult(kernel, None, "interrupted before the boot")
            try:
                session.prepare()                  # the model, while the guest boots
                deadline, n, seen, tail = t0 + timeout, 0, 0, b""
                while True:
                    rc = p.poll()
                    now = time.monotonic()
                    trans = out / f"trans.{n}"
                    try:
                        size = trans.stat().st_size
                    except OSError:
                        size = -1
                    if size >= 0 and "agent" not in timings:
                        timings["agent"] = now - t0        # the driver's first pass began
                        deadline = now + step_timeout
                    if size > seen:
                        with open(trans, "rb") as f:
                            f.seek(seen)
                            chunk = f.read(size - seen)
                        seen += len(chunk)
                        deadline = now + step_timeout      # a scenario (or more) done
                        if "first" not in timings and b"\nZ\n" in tail[-2:] + chunk:
                            timings["first"] = now - t0
                        tail = chunk[-2:]
                    if (out / f"done.{n}").exists():
                        nxt = session.take_pass(trans.read_text(errors="replace"))
                        timings[f"pass{n}"] = now - t0
                        n, seen, tail = n + 1, 0, b""
                        deadline = now + step_timeout
                        if nxt is None:
                            _write_atomically(out / "quit", b"")
                            timings["result"] = time.monotonic() - t0
                            finished = True
                            break
                        _write_atomically(out / f"plan.{n}", nxt)
                    if rc is not None:
                        break
                    if now > deadline:
                        _kill(p)
                        text = console_path.read_text(errors="replace")
                        what = (f"the driver finished no scenario for {step_timeout:.0f} s"
                                if "agent" in timings else
                                f"the driver did not start within {timeout:.0f} s")
                        return BootResult(kernel, None, f"hang: {what}; console tail:\n"
                                          + _tail(text), text, timings)
                    time.sleep(0.05)
            finally:
                _kill(p)                # done: the VM has nothing more to say
                with _LIVE_LOCK:
                    _LIVE.discard(p)
        timings["exit"] = time.monotonic() - t0
        text = console_path.read_text(errors="replace")
        if finished:
            return BootResult(kernel, session.result(), "", text, timings)
        return _no_result(kernel, p, text, timings)
