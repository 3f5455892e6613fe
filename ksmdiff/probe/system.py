"""The machine side of a kernel run: KSM knobs, the journal, the lock, tracefs, swap.

Everything here changes global state of the machine, so every change is written to a
journal on disk *before* it is made, and :func:`restore_journal` undoes exactly what the
journal says (idempotent; safe when there is nothing to undo).  ``ksmdiff restore`` calls
it for a journal that a killed run left behind; a new run does the same when it finds one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import subprocess
import threading
import time
from typing import NamedTuple
from dataclasses import dataclass, field
from pathlib import Path

from ksmdiff.errors import EnvironmentProblem
from ksmdiff.probe.compiler import KSMD_GAUGES, parse_node_list

KSM_DIR = Path("/sys/kernel/mm/ksm")
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
TRACEFS = Path("/sys/kernel/tracing")
DEFAULT_STATE_DIR = Path(os.environ.get("KSMDIFF_STATE_DIR", "/var/lib/ksmdiff"))
JOURNAL_NAME = "journal.json"
LOCK_NAME = "lock"
SWAPFILE_NAME = "swapfile"
SWAPFILE_MB = 64

# The knobs every run pins, plus the model's assumptions, in the order they are written.
# run goes to 0 first (ksmd paused) and the advisor off before pages_to_scan (EINVAL while an
# advisor is active).  NEVER run=2.
PINS: tuple[tuple[str, str], ...] = (
    ("run", "0"),
    ("advisor_mode", "none"),
    ("sleep_millisecs", "0"),
    ("pages_to_scan", "1000000"),   # > every page of a batch: one batch = one full scan
    ("smart_scan", "0"),
    ("use_zero_pages", "0"),
    ("max_page_sharing", "256"),
    ("merge_across_nodes", "1"),
)
MODEL_KNOBS = {"use_zero_pages": "0", "max_page_sharing": "256", "merge_across_nodes": "1"}

SETTLE_GAUGES = ("pages_shared", "pages_sharing", "pages_unshared", "ksm_zero_pages",
                 "stable_node_chains", "stable_node_dups")


class SettleTimeout(EnvironmentProblem):
    pass


def _read(path: Path) -> str:
    with open(path) as f:
        return f.read().strip()


# Open descriptors of the KSM sysfs files (and /proc/vmstat), read with pread at offset 0
# (which makes sysfs and seq_file generate the value again): a settle polls full_scans a
# few thousand times a second, and an open+read+close costs several times a pread.
_FDS: dict[tuple[str, int], int] = {}
_FD_LOCK = threading.Lock()


def _fd(path: str, mode: int) -> int:
    key = (path, mode)
    fd = _FDS.get(key)
    if fd is None:
        with _FD_LOCK:
            fd = _FDS.get(key)
            if fd is None:
                fd = _FDS[key] = os.open(path, mode | os.O_CLOEXEC)
    return fd


def _ksm_read(name: str) -> str:
    return os.pread(_fd(f"{KSM_DIR}/{name}", os.O_RDONLY), 4096, 0).decode().strip()


def close_fds() -> None:
    """Close the cached descriptors (end of a run)."""
    with _FD_LOCK:
        fds = list(_FDS.values())
        _FDS.clear()
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _selected(value: str) -> str:
    """``always [madvise] never`` -> ``madvise``; a plain value stays."""
    m = re.search(r"\[([^\]]+)\]", value)
    return m.group(1) if m else value


def ksm_available() -> bool:
    return (KSM_DIR / "run").exists()


def cgroup2_root() -> Path | None:
    """The first cgroup2 mount (the one the probe makes its groups under), or None."""
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 3 and f[2] == "cgroup2":
            return Path(f[1].replace("\\040", " "))
    return None


def cgroup_controllers() -> frozenset[str] | None:
    """The controllers the cgroup2 root enables for its children (cgroup.subtree_control),
    or None without a cgroup2 mount."""
    root = cgroup2_root()
    if root is None:
        return None
    try:
        return frozenset((root / "cgroup.subtree_control").read_text().split())
    except OSError:
        return frozenset()


_PROBE_GROUP = re.compile(r"ksmdiff-probe-(\d+)-\d+")


def remove_stale_cgroups() -> list[str]:
    """Remove the groups a killed probe left (ksmdiff-probe-PID-G under the cgroup2 root,
    PID no longer running, no process in it); the paths removed."""
    root = cgroup2_root()
    gone: list[str] = []
    if root is None:
        return gone
    try:
        entries = list(root.iterdir())
    except OSError:
        return gone
    for d in entries:
        m = _PROBE_GROUP.fullmatch(d.name)
        if not m or Path(f"/proc/{m.group(1)}").exists():
            continue
        try:
            if (d / "cgroup.procs").read_text().strip():
                continue
            d.rmdir()
            gone.append(str(d))
        except OSError:
            continue
    return gone


NODE_DIR = Path("/sys/devices/system/node")


def memory_nodes() -> frozenset[int] | None:
    """The NUMA nodes with memory (has_memory), or None when the kernel has no NUMA
    (drivers/base/node.c is built with CONFIG_NUMA only)."""
    try:
        return parse_node_list((NODE_DIR / "has_memory").read_text())
    except FileNotFoundError:
        return None


_WRITABLE: dict[str, list[str]] = {}


def writable_knobs() -> list[str]:
    """The writable files of /sys/kernel/mm/ksm (fixed for a boot: looked up once)."""
    got = _WRITABLE.get(str(KSM_DIR))
    if got is not None:
        return list(got)
    out = []
    for p in sorted(KSM_DIR.iterdir()):
        try:
            if p.stat().st_mode & 0o200:
                out.append(p.name)
        except OSError:
            pass
    if out:
        _WRITABLE[str(KSM_DIR)] = out
    return list(out)


def read_knob(name: str) -> str:
    return _selected(_ksm_read(name))


def write_knob(name: str, value: str) -> None:
    if name == "run" and str(value).strip() == "2":
        raise AssertionError("ksmdiff never writes run=2")
    os.pwrite(_fd(f"{KSM_DIR}/{name}", os.O_WRONLY), str(value).encode(), 0)


def unmerge_everything(*, allow_global: bool) -> None:
    """``ksm unmerge-all``: run=2 (KSM_RUN_UNMERGE: unmerge_and_remove_all_rmap_items()
    unmerges every KSM page of the machine, every process's, and resets full_scans), then
    run=0 again (ksmd stays paused between ksm statements).  Only with ``allow_global``
    (``--allow-global``, or inside a lab VM); the run's journal restores ``run``."""
    if not allow_global:
        raise AssertionError("run=2 without allow_global")
    os.pwrite(_fd(f"{KSM_DIR}/run", os.O_WRONLY), b"2", 0)
    write_knob("run", "0")


def read_int(name: str) -> int:
    try:
        return int(_ksm_read(name))
    except (OSError, ValueError):
        return -1


def read_vmstat(names=("cow_ksm", "ksm_swpin_copy", "pgreuse")) -> dict[str, int]:
    out = {}
    text = os.pread(_fd("/proc/vmstat", os.O_RDONLY), 1 << 16, 0).decode()
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k in names:
            out[k] = int(v)
    return out


def read_counters() -> dict[str, int]:
    out = read_vmstat()
    for n in ("pages_shared", "pages_sharing", "ksm_zero_pages", *KSMD_GAUGES):
        v = read_int(n)
        if v >= 0:
            out[n] = v
    return out


def gauges() -> tuple[int, ...]:
    return tuple(read_int(n) for n in SETTLE_GAUGES)


# ----------------------------------------------------------------------------- journal

@dataclass
class Journal:
    path: Path
    data: dict = field(default_factory=dict)
    # setup steps may run in threads (swap while the tracer starts): one writer at a time
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        # Written whole and renamed into place: a run killed at any point leaves the old
        # journal or the new one.  Not fsync'd (that was 1-4 ms a write, four writes a run):
        # the journal is for a killed process, whose writes the page cache keeps; a machine
        # that crashes boots with its own KSM knobs, no swap and no tracefs mount (what a
        # lost journal would have undone), and an unreadable journal is reported, then
        # replaced by the next run's.
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def update(self, **kw) -> None:
        with self._lock:
            self.data.update(kw)
            self._save()

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def state_dir(journal_dir: str | os.PathLike | None) -> Path:
    d = Path(journal_dir) if journal_dir else DEFAULT_STATE_DIR
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


class RunLock:
    """An exclusive flock: two runs never fight over the knobs (the second one waits)."""

    def __init__(self, directory: Path, timeout: float = 900.0, notify=None):
        self.path = directory / LOCK_NAME
        self.timeout = timeout
        self.notify = notify
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.timeout
        told = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if not told and self.notify:
                self.notify(f"waiting for another ksmdiff run to finish (lock {self.path})")
                told = True
            if time.monotonic() > deadline:
                os.close(self.fd)
                self.fd = None
                raise EnvironmentProblem(
                    f"another ksmdiff run holds {self.path} for more than {self.timeout:.0f} s")
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# ----------------------------------------------------------------------------- knobs

def snapshot() -> dict:
    knobs = {n: read_knob(n) for n in writable_knobs()}
    thp = _selected(_read(THP_ENABLED)) if THP_ENABLED.exists() else None
    return {"knobs": knobs, "thp": thp}


def pin_knobs(extra: dict[str, str] | None = None) -> list[str]:
    """Write the pins (only those that differ).  merge_across_nodes cannot change while KSM
    pages exist (-EBUSY): then the run is an environment problem."""
    values = dict(PINS)
    if extra:
        values.update(extra)
    present = set(writable_knobs())
    changed = []
    for name, _v in PINS:
        if name not in present:
            continue
        value = values[name]
        if read_knob(name) == value:
            continue
        changed.append(name)
        try:
            write_knob(name, value)
        except OSError as e:
            if name in ("merge_across_nodes", "max_page_sharing") and e.errno == errno.EBUSY:
                drain_stable_nodes()
                try:
                    write_knob(name, value)
                    continue
                except OSError:
                    pass
            raise EnvironmentProblem(f"cannot set /sys/kernel/mm/ksm/{name}={value}: "
                                     f"{os.strerror(e.errno or 0)}") from None
    return changed


def drain_stable_nodes(timeout: float = 2.0) -> bool:
    """Let ksmd drop stale stable nodes (of dead processes) so that knobs that need no KSM
    pages can be written.  Never run=2: only scans."""
    if read_int("pages_shared") == 0 and read_int("pages_sharing") == 0:
        return True
    was = read_knob("run")
    deadline = time.monotonic() + timeout
    try:
        write_knob("run", "1")
        while time.monotonic() < deadline:
            if read_int("pages_shared") == 0 and read_int("pages_sharing") == 0:
                return True
            time.sleep(0.002)
        return False
    finally:
        if was != "1":
            stop_ksmd(read_knob("sleep_millisecs"))


def restore_knobs(saved: dict[str, str]) -> list[str]:
    """Write back every knob that differs from ``saved``; run last.  Returns messages."""
    msgs = []
    present = set(writable_knobs())
    order = [k for k in saved if k != "run"]
    # advisor_mode before pages_to_scan? pages_to_scan is refused while an advisor is on,
    # so restore pages_to_scan first, advisor_mode after it.
    order.sort(key=lambda k: (k == "advisor_mode", k))
    for name in order + (["run"] if "run" in saved else []):
        if name not in present:
            continue
        want = saved[name]
        if name == "run" and want == "2":
            want = "0"
        try:
            if read_knob(name) == want:
                continue
            try:
                write_knob(name, want)
            except OSError as e:
                if e.errno == errno.EBUSY and drain_stable_nodes():
                    write_knob(name, want)
                else:
                    raise
            msgs.append(f"{name}={want}")
        except OSError as e:
            msgs.append(f"FAILED {name}={want}: {os.strerror(e.errno or 0)}")
    return msgs


# ----------------------------------------------------------------------------- ksmd control

IDLE_SECONDS = 0.025
PAUSE_SLEEP_MS = 1000
# how often a wait for ksmd (settle, scan_exact) reads its counters: between reads the
# runner sleeps, leaving the CPU to ksmd (at nice 5, it yields to a busier poller)
POLL_SECONDS = 0.0002


def stop_ksmd(sleep_after: str = "0") -> None:
    """run=0, at a scan boundary, without a fight for ksm_thread_mutex.

    ksmd holds ksm_thread_mutex for each batch of pages_to_scan pages (a full scan here:
    a batch ends where a scan ends) and, with sleep_millisecs=0, takes it again at once:
    a plain run=0 write waits behind it for 0.3 to 25 ms (measured on 6.18, 2 CPUs).  So
    first sleep_millisecs=PAUSE_SLEEP_MS (its store takes no mutex): ksmd finishes the scan
    it is in and sleeps; run=0 then takes the free mutex (or waits for that one scan), and
    sleep_millisecs goes back to ``sleep_after``, which wakes ksmd to find run=0 (since
    4.20 a sleep_millisecs write wakes ksmd).  Never run=2."""
    write_knob("sleep_millisecs", str(PAUSE_SLEEP_MS))
    try:
        write_knob("run", "0")
    finally:
        write_knob("sleep_millisecs", sleep_after)


_KSMD: list = []     # [pid] of the ksmd kernel thread, looked up once


def ksmd_state() -> str | None:
    """The scheduler state of ksmd (``R`` running or waiting for a CPU, ``S`` asleep, ...),
    None when it cannot be read."""
    if not _KSMD:
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if _read(Path("/proc", d, "comm")) == "ksmd":
                        _KSMD.append(int(d))
                        break
                except OSError:
                    continue
        else:
            return None
    try:
        with open(f"/proc/{_KSMD[0]}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


class _Progress:
    """Is ksmd getting anywhere?  With no mm on its list, scan_get_next_rmap_item returns at
    once without counting a full scan: full_scans then never moves (seen on 6.18 after the
    last mergeable mm went), and a wait for it would only time out.  No progress of either
    full_scans or pages_scanned for IDLE_SECONDS, with ksmd asleep waiting for work (``S``:
    ksmd_should_run() is false), means ksmd has nothing to scan.  Any other state is a ksmd
    that is busy but slow: ``R``, waiting for a CPU (ksmd runs at nice 5), or ``D``, waiting
    in the lru_add_drain_all() that starts each scan for the per-CPU work on a CPU that
    busy processes hold.  On a busy machine both lasted longer than IDLE_SECONDS (with two
    busy loops on 2 CPUs: a settle taken for done before its first merge, mprotect-roundtrip
    not merging about one run in 30); the caller's timeout bounds that wait."""

    def __init__(self):
        self.mark = (read_int("full_scans"), read_int("pages_scanned"))
        self.since = time.monotonic()

    def idle(self) -> bool:
        now = (read_int("full_scans"), read_int("pages_scanned"))
        t = time.monotonic()
        if now != self.mark:
            self.mark, self.since = now, t
            return False
        return t - self.since > IDLE_SECONDS and ksmd_state() in ("S", None)


# A settle's or scan's bounded wait: SETTLE_TIMEOUT for the small scenarios, and
# SCAN_SECONDS_PER_PAGE more per page the batch maps (each full scan reads and checksums
# every mergeable page, and a merging scan write-protects and replaces them): LTP ksm01 at
# 3 x 32,768 pages took ksmd about 1 s a merging scan on a 2-CPU host under load 8.
SETTLE_TIMEOUT = 3.0
SCAN_SECONDS_PER_PAGE = 1e-4


def settle_timeout(pages: int) -> float:
    """The bounded wait of a settle over ``pages`` mapped pages (see SCAN_SECONDS_PER_PAGE)."""
    return SETTLE_TIMEOUT + pages * SCAN_SECONDS_PER_PAGE


def settle(*, min_scans: int = 2, timeout: float = SETTLE_TIMEOUT) -> int:
    """Run ksmd (sleep_millisecs=0) until nothing changes any more: at least ``min_scans``
    full scans, then full scans until one ran without any gauge changing (or ksmd has
    nothing to scan).  ksmd is paused (run=0) at a scan boundary afterwards.  Returns the
    number of full scans."""
    start = read_int("full_scans")
    deadline = time.monotonic() + timeout
    write_knob("run", "1")
    try:
        prog = _Progress()
        target = start + min_scans
        while read_int("full_scans") < target:
            if prog.idle():
                return read_int("full_scans") - start
            if time.monotonic() > deadline:
                raise SettleTimeout(f"ksmd did not finish {min_scans} full scans in {timeout} s")
            time.sleep(POLL_SECONDS)
        while True:
            g1 = gauges()
            s1 = read_int("full_scans")
            while read_int("full_scans") < s1 + 2:
                if prog.idle():
                    return read_int("full_scans") - start
                if time.monotonic() > deadline:
                    raise SettleTimeout(f"ksmd did not settle within {timeout} s")
                time.sleep(POLL_SECONDS)
            if gauges() == g1:
                break
            if time.monotonic() > deadline:
                raise SettleTimeout(f"KSM counters still changing after {timeout} s")
    finally:
        stop_ksmd()   # waits until ksmd finished its current batch = full scan
    return read_int("full_scans") - start


def scan_exact(n: int, *, sleep_ms: int = 20, timeout: float | None = None,
               pages: int = 0) -> int:
    """Exactly ``n`` more full scans: ksmd sleeps ``sleep_ms`` between scans and run=0 is
    written inside the sleep after the n-th.  Returns the scans done (== n unless the host
    was too slow, which the caller reports as an environment result)."""
    start = read_int("full_scans")
    timeout = (timeout if timeout is not None
               else 2.0 + n * (sleep_ms / 1000 * 3 + pages * SCAN_SECONDS_PER_PAGE))
    deadline = time.monotonic() + timeout
    write_knob("sleep_millisecs", str(sleep_ms))
    try:
        write_knob("run", "1")
        try:
            prog = _Progress()
            while read_int("full_scans") < start + n:
                if prog.idle() and time.monotonic() - prog.since > sleep_ms / 1000 * 2 + 0.01:
                    return n   # nothing to scan: every scan would be empty
                if time.monotonic() > deadline:
                    raise SettleTimeout(f"ksmd did not do {n} full scans in {timeout:.1f} s")
                time.sleep(POLL_SECONDS)
        finally:
            write_knob("run", "0")
    finally:
        write_knob("sleep_millisecs", "0")
    return read_int("full_scans") - start


# ----------------------------------------------------------------------------- syscalls

_LIBC = None


def _libc():
    """libc through ctypes, for mount/umount2/swapon/swapoff: a direct system call instead
    of a fork+exec of mount(8), umount(8), mkswap(8), swapon(8), swapoff(8) (each several
    ms).  None when unavailable (then the commands are used)."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes
            lib = ctypes.CDLL(None, use_errno=True)
            for name in ("mount", "umount2", "swapon", "swapoff"):
                getattr(lib, name)
            _LIBC = lib
        except (OSError, AttributeError, ImportError):
            _LIBC = False
    return _LIBC or None


def _call(fn, *args) -> None:
    """A libc call that returns -1 and sets errno on failure -> OSError."""
    import ctypes
    if fn(*args) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _syscall_or_tool(fn: str, args: tuple, argv: list[str]) -> str:
    """Call libc's ``fn(*args)``, or run ``argv`` where libc cannot be loaded; "" on
    success, else the reason."""
    lib = _libc()
    if lib is None:
        r = subprocess.run(argv, capture_output=True, text=True)
        return "" if r.returncode == 0 else r.stderr.strip() or f"exit {r.returncode}"
    try:
        _call(getattr(lib, fn), *args)
        return ""
    except OSError as e:
        return e.strerror or str(e)


def _sys_mount_tracefs(target: str) -> str:
    """mount -t tracefs nodev TARGET."""
    return _syscall_or_tool("mount", (b"nodev", os.fsencode(target), b"tracefs", 0, None),
                            ["mount", "-t", "tracefs", "nodev", target])


def _sys_umount(target: str) -> str:
    return _syscall_or_tool("umount2", (os.fsencode(target), 0), ["umount", target])


# ----------------------------------------------------------------------------- tracefs

class Enter(NamedTuple):
    """ksm_enter: the process ``pid`` registered ``mm`` (hashed pointer) with KSM."""
    kind: str
    pid: int
    mm: str


class Remove(NamedTuple):
    """ksm_remove_ksm_page: the stable node of frame ``pfn`` went."""
    kind: str
    pfn: int


class Merge(NamedTuple):
    """ksm_merge_with_ksm_page: a merge of a page of ``mm`` into a KSM page
    (``with_ksm``) or into another plain page (try_to_merge_two_pages' first half);
    ``err`` 0 on success."""
    kind: str
    with_ksm: bool
    mm: str
    err: int


class Tracer:
    """The ksm:ksm_remove_ksm_page event in a private tracing instance."""

    EVENT = "ksm/ksm_remove_ksm_page"
    # for attributing ksmd's break_cow (cow_ksm) in a shared settle: which mm a merge
    # attempt was for, and which process registered that mm
    EXTRA = ("ksm/ksm_merge_with_ksm_page", "ksm/ksm_enter")

    def __init__(self, journal: Journal):
        self.journal = journal
        self.instance: Path | None = None
        self.ok = False
        self.reason = ""
        self._fd: int | None = None

    def start(self) -> bool:
        try:
            if not (TRACEFS / "instances").exists():
                self.journal.update(tracefs_mounted=str(TRACEFS))
                err = _sys_mount_tracefs(str(TRACEFS))
                if err:
                    self.journal.update(tracefs_mounted=None)
                    self.reason = f"cannot mount tracefs: {err}"
                    return False
            if not (TRACEFS / "events" / self.EVENT).exists():
                self.reason = "no ksm:ksm_remove_ksm_page tracepoint"
                return False
            inst = TRACEFS / "instances" / f"ksmdiff-{os.getpid()}"
            self.journal.update(trace_instance=str(inst))
            inst.mkdir(exist_ok=True)
            self.instance = inst
            with open(inst / "events" / self.EVENT / "enable", "w") as f:
                f.write("1")
            for ev in self.EXTRA:
                if (inst / "events" / ev / "enable").exists():
                    with open(inst / "events" / ev / "enable", "w") as f:
                        f.write("1")
            self.ok = True
            self.clear()
            return True
        except OSError as e:
            self.reason = f"tracing unavailable: {e}"
            return False

    def _pipe(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.instance / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK)
        return self._fd

    def clear(self) -> None:
        self.take()

    def take(self) -> list[int]:
        """PFNs of the stable nodes removed since the last take."""
        return [e[1] for e in self.take_events() if e[0] == "remove"]

    def take_events(self) -> list[tuple]:
        """Events since the last take, in order (a consuming read of the instance's
        trace_pipe; truncating ``trace`` would cost an RCU grace period):
        Remove, Enter and Merge (named tuples whose first field is the kind)."""
        if not self.ok or not self.instance:
            return []
        chunks = []
        fd = self._pipe()
        while True:
            try:
                b = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not b:
                break
            chunks.append(b)
        return parse_trace(b"".join(chunks).decode(errors="replace"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_TRACE_LINE = re.compile(r"-(\d+)\s+\[\d+\][^:]*:\s*(ksm_\w+): (.*)$")


def parse_trace(text: str) -> list[tuple]:
    """trace_pipe lines to events, in order: Remove, Enter and Merge (named tuples whose
    first field is the kind); other lines are skipped.  Also the lab's (its guest driver
    returns the lines verbatim)."""
    out: list[tuple] = []
    for line in text.splitlines():
        m = _TRACE_LINE.search(line)
        if not m:
            continue
        pid, name, rest = int(m.group(1)), m.group(2), m.group(3).split()
        try:
            if name == "ksm_remove_ksm_page":
                out.append(Remove("remove", int(rest[rest.index("pfn") + 1])))
            elif name == "ksm_enter":
                out.append(Enter("enter", pid, rest[rest.index("mm") + 1]))
            elif name == "ksm_merge_with_ksm_page":
                out.append(Merge("merge", rest[0] == "ksm", rest[rest.index("mm") + 1],
                                 int(rest[rest.index("error") + 1])))
        except (ValueError, IndexError):
            continue
    return out


def stop_tracing(data: dict) -> list[str]:
    msgs = []
    inst = data.get("trace_instance")
    if inst and Path(inst).exists():
        for ev in (Tracer.EVENT,) + Tracer.EXTRA:
            try:
                with open(Path(inst) / "events" / ev / "enable", "w") as f:
                    f.write("0")
            except OSError:
                pass
        try:
            os.rmdir(inst)
            msgs.append(f"removed tracing instance {inst}")
        except OSError as e:
            msgs.append(f"FAILED to remove tracing instance {inst}: {e.strerror}")
    mnt = data.get("tracefs_mounted")
    if mnt and os.path.ismount(mnt):
        err = _sys_umount(mnt)
        msgs.append(f"unmounted {mnt}" if not err else f"FAILED to unmount {mnt}: {err}")
    return msgs


# ----------------------------------------------------------------------------- swap

def swap_active() -> bool:
    with open("/proc/swaps") as f:
        return len(f.read().strip().splitlines()) > 1


def _swap_header(size: int) -> bytes:
    """The first page of a swap area, as mkswap(8) writes it (``union swap_header``, v1):
    1024 boot bytes, then version 1, last_page, nr_badpages 0, a uuid, an empty label;
    "SWAPSPACE2" in the last 10 bytes of the page."""
    import struct
    ps = os.sysconf("SC_PAGE_SIZE")
    page = bytearray(ps)
    struct.pack_into("=III16s", page, 1024, 1, size // ps - 1, 0, os.urandom(16))
    page[ps - 10:] = b"SWAPSPACE2"
    return bytes(page)


def _write_swapfile(path: Path, size: int, *, preallocate: bool) -> None:
    """A swap file without holes: blocks reserved by fallocate (ext4 and xfs swap on
    unwritten extents, swapon(2) refuses a file with holes) or written with zeros; then the
    header.  fsync'd (swapon would do it anyway)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if preallocate:
            os.posix_fallocate(fd, 0, size)
        else:
            chunk = b"\0" * (1 << 20)
            for off in range(0, size, len(chunk)):
                os.pwrite(fd, chunk, off)
        os.pwrite(fd, _swap_header(size), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _swapon(path: Path) -> str:
    """swapon(2) (swapon(8) without libc access)."""
    return _syscall_or_tool("swapon", (os.fsencode(str(path)), 0), ["swapon", str(path)])


def _swapoff(path: str) -> str:
    return _syscall_or_tool("swapoff", (os.fsencode(path),), ["swapoff", path])


def provision_swap(journal: Journal, directory: Path, pages: int = SWAPFILE_MB * 256) -> str:
    """Swap for MADV_PAGEOUT: use what is there, or add a swap file (removed afterwards)
    big enough for ``pages`` pages.  The header is written here and swapon(2) called
    directly (no mkswap(8) / swapon(8) processes)."""
    if swap_active():
        return "existing swap"
    path = directory / SWAPFILE_NAME
    journal.update(swapfile=str(path))
    size = max(4, min(SWAPFILE_MB, pages // 256 + 2)) << 20
    err = ""
    for preallocate in (True, False):
        try:
            _write_swapfile(path, size, preallocate=preallocate)
        except OSError as e:
            err = f"cannot write {path}: {e.strerror or e}"
            continue       # no fallocate here: zeros
        err = _swapon(path)
        if not err:
            return f"swap file {path}"
        # a filesystem that does not swap on preallocated (unwritten) extents: zeros
    raise EnvironmentProblem(f"swapon {path} failed: {err}")


def remove_swap(data: dict) -> list[str]:
    path = data.get("swapfile")
    if not path:
        return []
    msgs = []
    with open("/proc/swaps") as f:
        active = any(line.split()[0] == path for line in f.read().splitlines()[1:])
    if active:
        err = _swapoff(path)
        msgs.append(f"swapoff {path}" if not err else f"FAILED swapoff {path}: {err}")
    if os.path.exists(path):
        os.unlink(path)
        msgs.append(f"removed {path}")
    return msgs


# ----------------------------------------------------------------------------- restore

def kill_pids(pids) -> list[str]:
    msgs = []
    for pid in pids or ():
        try:
            # only our own probes: check the executable name before killing a recorded pid
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm.startswith("ksmdiff-probe"):
            try:
                os.kill(pid, 9)
                msgs.append(f"killed probe {pid}")
            except OSError:
                pass
    return msgs


class Teardown:
    """Remove the tracing instance (and unmount tracefs) and the swap file, in two threads.

    Both are slow in the kernel, and independent: rmdir of a tracing instance waits for
    RCU grace periods (tracepoint_synchronize_unregister: tasks-trace RCU, then RCU; ~45 ms
    on a small VM), swapoff(2) for its own (~18 ms).  Started as soon as neither is needed,
    they overlap each other and the rest of the restore.  Idempotent, like the functions
    they run; :meth:`join` waits for both (a run never returns before that)."""

    def __init__(self, data: dict):
        self._msgs: dict[str, list[str]] = {}
        self._threads = []
        jobs = []
        if data.get("trace_instance") or data.get("tracefs_mounted"):
            jobs.append(("tracing", stop_tracing))
        if data.get("swapfile"):
            jobs.append(("swap", remove_swap))
        for key, fn in jobs:
            t = threading.Thread(target=self._run, args=(key, fn, dict(data)),
                                 name=f"ksmdiff-teardown-{key}")
            t.start()
            self._threads.append(t)

    def _run(self, key: str, fn, data: dict) -> None:
        try:
            self._msgs[key] = fn(data)
        except Exception as e:   # reported (journal kept), never lost in a thread
            self._msgs[key] = [f"FAILED {key} teardown: {e}"]

    def join(self) -> list[str]:
        for t in self._threads:
            t.join()
        return self._msgs.get("tracing", []) + self._msgs.get("swap", [])


def restore_journal(path: Path, teardown: Teardown | None = None) -> str:
    """Undo what the journal at ``path`` says.  ``teardown``: one already started for this
    journal's data (it is joined, and its work checked again here)."""
    if not path.exists():
        if teardown is not None:
            teardown.join()
        return "nothing to restore"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        if teardown is not None:
            teardown.join()
        return f"journal {path} unreadable ({e}); nothing restored"
    msgs = kill_pids(data.get("probe_pids"))
    early = teardown
    if early is None:
        teardown = Teardown(data)     # tracing and swap in threads, the knobs meanwhile
    knob_msgs: list[str] = []
    try:
        snap = data.get("snapshot") or {}
        knob_msgs += restore_knobs(snap.get("knobs") or {})
        thp = snap.get("thp")
        if thp and THP_ENABLED.exists() and _selected(_read(THP_ENABLED)) != thp:
            with open(THP_ENABLED, "w") as f:
                f.write(thp)
            knob_msgs.append(f"transparent_hugepage/enabled={thp}")
    finally:
        td_msgs = teardown.join()
    if early is not None:
        # what the early teardown could not do (or did not know about): again, and only
        # the outcome counts
        td_msgs = [m for m in td_msgs if not m.startswith("FAILED")]
        td_msgs += stop_tracing(data) + remove_swap(data)
    msgs += td_msgs + knob_msgs
    failed = [m for m in msgs if m.startswith("FAILED")]
    if not failed:
        path.unlink(missing_ok=True)
    head = "restored" if not failed else "restore INCOMPLETE"
    body = "; ".join(msgs) if msgs else "all settings were already as before"
    return f"{head} from {path}: {body}"


class Keeper:
    """One mergeable page with unique random content in the runner itself, so that ksmd's
    list of mms is never empty: with an empty list full_scans stops moving and every wait
    for a scan would end in the idle check.  It never merges (nothing else has its bytes)."""

    def __init__(self):
        import mmap
        self.map = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.map.write(os.urandom(mmap.PAGESIZE))
        try:
            self.map.madvise(mmap.MADV_MERGEABLE)
        except (AttributeError, OSError):
            pass

    def close(self) -> None:
        import mmap
        try:
            self.map.madvise(mmap.MADV_UNMERGEABLE)
        except (AttributeError, OSError):
            pass
        # Not unmapped: the next run's keeper would get the same address, and ksmd would
        # find this page's rmap_item there (get_next_rmap_item() looks items up by address)
        # with the age smart_scan gave it, so the runner's account of the keeper (a fresh
        # item) would be wrong.  Kept mapped, unmergeable, the next keeper lands below it
        # and gets a fresh item; ksmd frees this one (remove_trailing_rmap_items()).
        _RETIRED_KEEPERS.append(self.map)


_RETIRED_KEEPERS: list = []     # one page per run_kernel() call, for the process's life


def kpageflags_ksm_on_plain_anon() -> bool | None:
    """Does /proc/kpageflags report KPF_KSM for an anonymous page KSM never saw?

    True on kernels with dee3d0bef2b0 ("proc: rewrite stable_page_flags()", v6.10) and
    without 81401cebfc15 ("fs/proc: fix KPF_KSM reported for all anonymous pages"):
    ``mapping & PAGE_MAPPING_KSM`` holds for every anonymous folio there, so every ``ksm``
    field the probe reads is true.  None when it cannot be read."""
    import mmap
    import struct
    try:
        m = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        m[0:1] = b"\x5a"                         # fault it in: a plain anonymous page
        import ctypes
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(addr // mmap.PAGESIZE * 8)
            entry, = struct.unpack("<Q", f.read(8))
        pfn = entry & ((1 << 55) - 1)
        if not entry >> 63 or not pfn:
            return None
        with open("/proc/kpageflags", "rb") as f:
            f.seek(pfn * 8)
            flags, = struct.unpack("<Q", f.read(8))
        return bool(flags >> 12 & 1) and bool(flags >> 21 & 1)     # KPF_ANON, KPF_KSM
    except (OSError, ValueError, TypeError):
        return None
