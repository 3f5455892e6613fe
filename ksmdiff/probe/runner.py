"""Replay scenarios on the running kernel through the C probe.

Public API (re-exported by ``ksmdiff.probe``)::

    host_version() -> KernelVersion
    is_root() -> bool
    run_kernel(scenarios, *, batch=None, progress=None, journal_dir=None) -> list[KernelRun]
    restore(journal_path=None) -> str

How a run goes: take the lock; restore a journal a killed run left; snapshot every writable
KSM knob (and THP ``enabled``) into a new journal; pin the knobs (run=0, sleep_millisecs=0,
a large pages_to_scan, smart_scan=0, advisor off, and the model's use_zero_pages=0,
max_page_sharing=256, merge_across_nodes=1); set up a tracing instance (ksm tracepoints)
and swap when needed; start the probe server (``ksmdiff-probe --server``, which forks one
probe per scenario); replay the scenarios in groups (a batch, or one scenario alone);
restore everything in ``finally`` (and on SIGINT/SIGTERM, which become exceptions here).
Overlapped, never left running: the first reap (a thread, during the setup and the first
probes' start; joined before the first group and before any restore) and the removal of the
tracing instance and the swap file (``system.Teardown``: threads started once the probes are
gone, joined by ``restore_journal`` before run_kernel returns).
ksmd only runs inside ``ksm settle`` / ``ksm scan`` (run=0 otherwise; writing run=0 waits
for the current full scan, so ksmd always stops at a scan boundary).  One page in the
runner itself stays mergeable (``system.Keeper``) so that ksmd's list of mms is never empty:
with an empty list full_scans stops counting.

Batches (the default for more than one scenario).  Every scenario of a batch has its own
probe (its own process tree and salt).  All probes step at once up to their next ksm
statement; each operation's counter window (a few reads of /proc/vmstat and sysfs around
the operation, in the acting process) holds an exclusive flock shared by the batch, so a
global counter that moves in a window belongs to that scenario.  Then one settle serves
the whole batch.  What moves during a shared settle is attributed as follows:
``stable_nodes_removed`` by the PFN ksm_remove_ksm_page reports; ``pages_shared`` /
``pages_sharing`` / ``ksm_zero_pages`` from each scenario's own state after the settle
(distinct KSM frames it maps, and ``ksm_merging_pages`` / ``ksm_zero_pages`` of its
processes' ``/proc/PID/ksm_stat``), plus what finished scenarios lose, checked against the
global change; ``cow_ksm`` from ksmd's break_cow, charged to the mm of the page it broke
(ksm_merge_with_ksm_page, with ksm_enter mapping mms to scenario pids), checked against
the global change; ``pgreuse`` never moves in ksmd.  When a check fails, the scenarios
concerned are replayed alone, so batch results are those of one-at-a-time runs (a few
kernel values differ between any two runs: the frame and cow_ksm of a pinned page's twin,
which ksmd makes KSM and breaks again at every scan; reuse vs copy of a page a per-CPU LRU
batch still references).  Scenarios sharing a batch do the same ksm statement at every
index (settle, ``scan N`` or the same ``set`` of max_page_sharing / merge_across_nodes);
``ksm set use_zero_pages`` is no index of its own: it matters only to a scenario that may
hold real zero pages, and a batch's scenarios that do agree on its value at every scan
(``compiler.merge_signatures``, ``_pack``); ``max_page_sharing`` / ``merge_across_nodes``
after ksmd ran run alone; at most one scenario whose real zero pages meet ksmd with
use_zero_pages=0 joins a batch (``compiler.Program``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ksmdiff.errors import EnvironmentProblem, InvalidArgument
from ksmdiff.observe import ENVIRONMENT, NOT_RUN, OK, UNSUPPORTED
from ksmdiff.probe import system
from ksmdiff.probe import wire as W
from ksmdiff.probe.attribution import attribute_barrier, check_gauges
from ksmdiff.probe.build import default_probe
from ksmdiff.probe.compiler import (KSMD_GAUGES, Program, beyond_cgroups, beyond_nodes,
                                   beyond_probe, compile_scenario, scenario_pages)
from ksmdiff.probe.decode import ScenarioState
from ksmdiff.probe.plan import _sets_stable_knobs, _pack, _zero_pages_set, MAX_BATCH
from ksmdiff.probe.procs import PROBE_ENV, _Forked, _ProbeServer, _readable  # noqa: F401
from ksmdiff.probe.result import (EVENT_COUNTERS, GAUGE_COUNTERS, KPF_KSM_NOTE,  # noqa: F401
                                  PROBE_COUNTERS, KernelRun)
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import implied_features
from ksmdiff.scenario.ast import Scenario
from ksmdiff.status import RunStatus
from ksmdiff.versions import FEATURE_NOTES, KernelVersion, has_counter, has_feature, parse_host

# The pure parts live beside this module (result, decode, plan, attribution: shared with
# the lab's guest backend) and the probe processes in procs; the names above stay
# importable from here.
__all__ = ["KernelRun", "host_version", "is_root", "run_kernel", "restore"]

UNMERGE_ALL_REFUSED = ("'ksm unmerge-all' writes run=2, which unmerges every KSM page of this "
                       "machine, other programs' too: refused without --allow-global "
                       "(a lab VM always allows it)")
PARALLEL_STEPS = os.environ.get("KSMDIFF_SERIAL_STEPS") != "1"
LINE_TIMEOUT = 90.0
USERFAULTFD_SYSCTL = Path("/proc/sys/vm/unprivileged_userfaultfd")


def is_root() -> bool:
    return os.geteuid() == 0


def host_version() -> KernelVersion:
    """The running kernel's version, with the stable patch level a distribution hides in
    its release string read from where it keeps it (versions.parse_host): Ubuntu's
    /proc/version_signature, Debian's uname -v."""
    u = os.uname()
    try:
        signature: str | None = Path("/proc/version_signature").read_text()
    except OSError:
        signature = None
    return parse_host(u.release, u.version, signature)


def restore(journal_path: str | None = None) -> str:
    """Undo what a run (possibly a killed one) changed, from its journal."""
    path = Path(journal_path) if journal_path else system.DEFAULT_STATE_DIR / system.JOURNAL_NAME
    if not path.exists():
        return f"nothing to restore (no journal at {path})"
    if not is_root():
        raise EnvironmentProblem("restoring KSM settings needs root")
    with system.RunLock(path.parent):
        try:
            return system.restore_journal(path)
        finally:
            system.close_fds()


class _Interrupted(BaseException):
    def __init__(self, signum: int):
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


# ----------------------------------------------------------------------------- one probe

class _Live(ScenarioState):
    """One scenario's probe: a process tree that steps on the runner's word."""

    def __init__(self, index: int, scn: Scenario, prog: Program, server: "_ProbeServer",
                 version: KernelVersion, counters: tuple[str, ...],
                 proc: "_Forked | None" = None, ksm_flag: bool = True):
        super().__init__(index, scn, prog, version, counters, ksm_flag)
        self.proc = proc if proc is not None else server.spawn(prog.text.encode())
        self.buf = b""
        self.ended = False               # the probe said "end" (it exits by itself)
        self.started = False

    # -- I/O
    def _readline(self) -> dict | None:
        deadline = time.monotonic() + LINE_TIMEOUT
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EnvironmentProblem(f"probe silent for {LINE_TIMEOUT:.0f} s")
            if not _readable([fd], left):
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def _fail(self, status: RunStatus, reason: str) -> None:
        self.status, self.reason, self.done = status, reason, True
        self.at_barrier = None
        self.kill()

    def kill(self) -> None:
        if self.proc.closed:
            return                       # killed (or ended) and closed before
        if not self.ended:
            # killed through its pidfd; its scenario processes leave within 200 ms of it
            # (they watch its pidfd) and are waited for, so that what they hold is freed
            # before the next group (a probe that ended normally has killed and reaped
            # them itself).  The runner never signals them by pid: it cannot know whether
            # a pid it was told still names one of them.
            self.proc.kill()
            self.proc.wait_tree(timeout=5.0)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.proc.close()

    def abandon(self) -> None:
        """End a probe that will not run (its group never came): EOF on its stdin, and it
        kills and reaps its own processes and exits (a SIGKILL would leave its process 0
        to notice within 200 ms and to be reaped by init).  SIGKILL if it does not."""
        if not self.ended and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def wait_start(self) -> None:
        if self.started or self.done:
            return
        self.started = True
        try:
            msg = self._readline()
        except EnvironmentProblem as e:
            return self._fail(ENVIRONMENT, str(e))
        if msg is None or "start" not in msg:
            return self._fail(ENVIRONMENT, self._death_reason(msg))
        try:
            pid = W.check_start(msg)
        except ValueError as e:
            return self._fail(ENVIRONMENT, str(e))
        self.pids[0] = pid
        self.all_pids.add(pid)

    def _death_reason(self, msg) -> str:
        if msg and "error" in msg:
            return f"probe: {msg['error']}"
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        try:
            err = self.proc.stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            err = ""
        return f"probe exited with code {self.proc.returncode}: {err or 'no message'}"

    def step(self) -> None:
        """Let the probe run up to its next ksm statement (or its end)."""
        if not self.begin_step():
            return
        while True:
            try:
                msg = self._readline()
                if self.handle(msg):
                    return
            except EnvironmentProblem as e:
                return self._fail(ENVIRONMENT, str(e))
            except ValueError as e:
                return self._fail(ENVIRONMENT, f"bad probe output: {e}")

    def begin_step(self) -> bool:
        if self.done:
            return False
        try:
            self.proc.stdin.write(b"go\n")
        except OSError:
            self._fail(ENVIRONMENT, self._death_reason(None))
            return False
        self.at_barrier = None
        return True

    def handle(self, msg: dict | None) -> bool:
        """One message of a step; True when the step is over (a ksm statement, the end, an
        error)."""
        what = None if msg is None else W.kind(msg)
        if what is None or what is W.Kind.ERROR:
            self._fail(ENVIRONMENT, self._death_reason(msg))
            return True
        if what is W.Kind.SYNC:
            self.at_barrier = msg["sync"]
            return True
        if what is W.Kind.END:
            # the probe has killed its processes (and waited for them); it exits now and
            # is reaped when the group ends
            self.done = self.ended = True
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            return True
        if what is not W.Kind.RECORD:
            raise ValueError(f"unexpected {what.value} message in a step")
        self._record(msg)
        return False

    def lines(self) -> Iterable[dict | None]:
        """Messages already read or readable now (non-blocking; None at EOF)."""
        try:
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            chunk = b""
        if not chunk:
            yield None
            return
        self.buf += chunk
        while b"\n" in self.buf:
            line, _, self.buf = self.buf.partition(b"\n")
            yield json.loads(line)


def _step_all(lives: list[_Live]) -> None:
    """Step every probe at once.  The probes serialise their counter windows among
    themselves (flock on the batch lock file), so a global counter that moves in a window
    is the window's own; observing, talking and parsing overlap."""
    active = {lv.proc.stdout.fileno(): lv for lv in lives if lv.begin_step()}
    deadline = time.monotonic() + LINE_TIMEOUT
    while active:
        r = _readable(list(active), max(0.0, deadline - time.monotonic()))
        if not r:
            for lv in active.values():
                lv._fail(ENVIRONMENT, f"probe silent for {LINE_TIMEOUT:.0f} s")
            return
        deadline = time.monotonic() + LINE_TIMEOUT
        for fd in r:
            lv = active[fd]
            try:
                for msg in lv.lines():
                    if lv.handle(msg):
                        del active[fd]
                        break
            except ValueError as e:
                lv._fail(ENVIRONMENT, f"bad probe output: {e}")
                del active[fd]

# ----------------------------------------------------------------------------- a session

class _Gate:
    """Probes start only while no probe steps.  A start is the server's fork and the new
    probe's first writes: copy-on-write faults, and those on a page the other side already
    copied are reuses, counted in the machine-wide pgreuse; inside a stepping probe's
    counter window they would pass for the scenario's own.  Starts in the background (the
    probes of later groups) therefore wait while a group steps, and a step waits for the
    start in progress (a few probes: ``START_CHUNK``) to reach its "start" line."""

    START_CHUNK = 8

    def __init__(self):
        import threading
        self._cond = threading.Condition()
        self._stepping = 0
        self._starting = False

    @contextmanager
    def stepping(self):
        with self._cond:
            self._stepping += 1
            while self._starting:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._stepping -= 1
                self._cond.notify_all()

    @contextmanager
    def starting(self):
        with self._cond:
            while self._stepping:
                self._cond.wait()
            self._starting = True
        try:
            yield
        finally:
            with self._cond:
                self._starting = False
                self._cond.notify_all()


class _FirstReap:
    """The first reap of a run (ksmd cleans up after whatever ran before: a full settle with
    only the runner's keeper page to merge) in a thread, while the tracing instance and the
    swap file are set up and the first probes start (they touch nothing before their first
    "go").  Joined before the first group touches ksmd, and before anything is restored."""

    def __init__(self):
        import threading
        self.error = ""
        self._t = threading.Thread(target=self._run, name="ksmdiff-first-reap")
        self._t.start()

    def _run(self) -> None:
        try:
            system.settle(min_scans=2, timeout=3.0)
        except system.SettleTimeout as e:
            self.error = str(e)
        except OSError as e:
            self.error = f"ksmd: {e}"

    def join(self) -> str:
        self._t.join()
        return self.error


class _KeeperItem:
    """The rmap_item of the runner's keeper page (a page that never merges) as ksmd sees
    it, so that its share of the ksmd gauges is not charged to a scenario: after two scans
    it sits in the unstable tree (pages_unshared); a new item first records its checksum
    (pages_volatile); with smart_scan, should_skip_rmap_item() skips it like any page that
    never merges (pages_skipped; a skipped item leaves the tree).  Its age only grows under
    smart_scan and is never reset, but by run=2."""

    def __init__(self):
        self.exists, self.checked, self.in_tree = True, True, True   # the first reap
        self.age, self.remaining_skips = 0, 0
        self.skipped = 0

    def share(self) -> dict:
        return {"pages_unshared": int(self.in_tree),
                "pages_volatile": int(self.exists and not self.in_tree),
                "pages_skipped": self.skipped}

    def settled(self) -> None:          # two or more scans without smart_scan
        if not self.exists:
            self.exists, self.age, self.remaining_skips = True, 0, 0
        self.checked = self.in_tree = True

    def removed(self) -> None:          # run=2: unmerge_and_remove_all_rmap_items()
        self.exists = self.checked = self.in_tree = False

    def scan(self, smart: bool) -> None:
        if not self.exists:             # get_next_rmap_item(): a new, zeroed item
            self.exists, self.checked, self.age, self.remaining_skips = True, False, 0, 0
        if smart:                       # should_skip_rmap_item()
            age = self.age
            self.age = min(self.age + 1, 255)
            if age >= 3:
                if self.remaining_skips:
                    self.remaining_skips -= 1
                    self.skipped += 1
                    self.in_tree = False
                    return
                self.remaining_skips = (1 if age <= 3 else 2 if age <= 5
                                        else 4 if age <= 8 else 8)
        # cmp_and_merge_page(): a new checksum first, then the unstable tree
        self.in_tree = self.checked
        self.checked = True


def keeper_correction(k: _KeeperItem, stmt, delta: dict, smart: bool) -> None:
    """Take the runner's keeper page (system.Keeper, a page that never merges) out of
    the ksmd gauges: ``delta`` loses what the keeper's rmap_item did over the barrier
    (``smart``: smart_scan was on during its scans).  Also the lab's (its guest driver
    keeps such a page too)."""
    old = k.share()
    if isinstance(stmt, A.KsmUnmergeAll):
        k.removed()
    elif isinstance(stmt, (A.KsmSettle, A.KsmScan)):
        for _ in range(max(delta.get("full_scans", 2), 0)):
            k.scan(smart)
    new = k.share()
    for name in new:
        if name in delta:
            delta[name] -= new[name] - old[name]


@dataclass
class _Session:
    version: KernelVersion
    exe: Path
    tmp: Path
    tracer: system.Tracer | None
    swap_ok: bool
    swap_reason: str
    counters: tuple[str, ...]
    warnings: list[str] = field(default_factory=list)
    unreaped: list = field(default_factory=list)   # dead scenarios ksmd has not cleaned yet
    server: "_ProbeServer | None" = None
    mm_owner: dict = field(default_factory=dict)   # mm pointer (hashed) -> _Live
    first_reap: "_FirstReap | None" = None
    fresh: bool = False          # reaped by first_reap, no group ran since
    dirty: bool = False          # a group failed: what it left is not accounted for
    gate: _Gate = field(default_factory=_Gate)
    ksm_flag: bool = True        # /proc/kpageflags' KPF_KSM tells KSM pages from the others
    allow_global: bool = False   # ksm unmerge-all may write run=2 (--allow-global, lab VM)
    keeper: "_KeeperItem" = field(default_factory=lambda: _KeeperItem())
    last_pages: int = 0          # the most pages a group mapped since the last reap

    def join_first_reap(self) -> None:
        first, self.first_reap = self.first_reap, None
        if first is not None:
            err = first.join()
            if err:
                self.warnings.append(f"reap: {err}")
            self.fresh = True

    # -- ksmd between groups
    def reap(self) -> None:
        """Let ksmd clean up after dead processes (their rmap items, stale stable nodes)
        so that the next group starts from a quiet baseline."""
        if self.fresh:
            pass        # the run's first reap (a thread during the setup); nothing ran since
        else:
            try:
                # (smart_scan pinned to 0; the dead processes' pages may be many)
                system.settle(min_scans=2,
                              timeout=system.settle_timeout(self.last_pages))
                self.last_pages = 0
                self.keeper.settled()
            except system.SettleTimeout as e:
                self.warnings.append(f"reap: {e}")
        if self.tracer:
            self.tracer.take()
        for lv in self.unreaped:
            lv.reaped = True
        self.unreaped = []

    def spawn(self, items) -> list[_Live]:
        """Start the probes of ``items``, a few at a time between steps (``_Gate``); each
        is past its start (waiting for its first "go") when this returns."""
        assert self.server is not None
        lives: list[_Live] = []
        try:
            for at in range(0, len(items), _Gate.START_CHUNK):
                chunk = items[at:at + _Gate.START_CHUNK]
                with self.gate.starting():
                    procs = self.server.spawn_many([p.text.encode() for _i, _s, p in chunk])
                    new = [_Live(i, s, p, self.server, self.version, self.counters, proc,
                                  ksm_flag=self.ksm_flag)
                           for (i, s, p), proc in zip(chunk, procs)]
                    lives += new
                    for lv in new:
                        lv.wait_start()
        except BaseException:
            for lv in lives:
                lv.kill()
            raise
        return lives

    def run_group(self, items: list[tuple[int, Scenario, Program]], *,
                  reap: bool = True, spawned=None) -> list[_Live]:
        """Replay ``items`` together (one item: alone).  ``reap``: first let ksmd clean up
        after earlier groups, for a quiet baseline; without it, what ksmd removes of the
        earlier groups' dead processes during this group's first scan is accounted for
        (``unreaped``) and checked."""
        # the first reap of the run (a thread) ends before anything here touches ksmd; the
        # first group always starts from that reaped baseline
        if self.first_reap is not None:
            self.join_first_reap()
            reap = True
        changed = system.pin_knobs()
        # writing max_page_sharing / merge_across_nodes drops every stable node: what the
        # earlier groups left is gone outside any barrier, so start from a reaped baseline.
        # So after a failed group (a settle that timed out, a probe that died): nothing
        # says what its scenarios left in the stable tree (seen on a busy machine: a batch
        # whose settle timed out, then pages_shared -4 charged to the next scenario's first
        # scan).
        if reap or self.dirty or {"max_page_sharing", "merge_across_nodes"} & set(changed):
            self.reap()
            self.dirty = False
        self.fresh = False
        lives = spawned.result() if spawned is not None else self.spawn(items)
        try:
            for lv in lives:
                lv.wait_start()
            going = lives
            while True:
                with self.gate.stepping():
                    if PARALLEL_STEPS and len(going) > 1:
                        _step_all(going)
                    else:
                        for lv in going:
                            lv.step()
                self.check_gauges()
                waiting = [lv for lv in lives if not lv.done and lv.at_barrier is not None]
                if not waiting:
                    break
                # ``ksm set use_zero_pages`` is no batch signature entry (merge_signatures):
                # the scenarios at one go first, alone in their barrier, and step on to
                # their next ksm statement while the others wait at theirs
                sets = [lv for lv in waiting if _zero_pages_set(lv)]
                going = sets if sets and len(sets) < len(waiting) else waiting
                self._barrier(going, lives)
        finally:
            for lv in lives:
                lv.kill()
            self.unreaped.extend(lv for lv in lives if not lv.reaped)
            if any(lv.status != OK for lv in lives):
                self.dirty = True
        return lives

    def _barrier(self, waiting: list[_Live], lives: list[_Live]) -> None:
        kinds = {type(lv.prog.barriers[lv.at_barrier]).__name__ for lv in waiting}
        stmt = waiting[0].prog.barriers[waiting[0].at_barrier]
        if len(kinds) != 1:  # grouping prevents this
            raise AssertionError(f"mixed barriers in a batch: {kinds}")
        # the knobs the scenarios need while ksmd runs (use_zero_pages: a scenario of the
        # batch that set it may have ended, or not be at its set yet); grouping makes them
        # agree
        knobs: dict[str, int] = {}
        for lv in waiting:
            for name, value in lv.prog.scan_knobs.get(lv.at_barrier, {}).items():
                if knobs.setdefault(name, value) != value:
                    raise AssertionError(f"{name} {knobs[name]} and {value} in one batch")
        for name, value in knobs.items():
            if system.read_knob(name) != str(value):
                system.write_knob(name, str(value))
        early = self.tracer.take_events() if self.tracer else []
        smart = system.read_knob("smart_scan") == "1" if has_counter(
            self.version, "pages_skipped") else False
        before = system.read_counters()
        try:
            pages = sum(scenario_pages(lv.scn) for lv in waiting)
            self.last_pages = max(self.last_pages, pages)
            if isinstance(stmt, A.KsmSettle):
                system.settle(timeout=system.settle_timeout(pages))
            elif isinstance(stmt, A.KsmScan):
                done = system.scan_exact(stmt.scans, pages=pages)
                if done != stmt.scans:
                    raise system.SettleTimeout(
                        f"ksm scan {stmt.scans}: ksmd did {done} full scans (host too slow to "
                        "stop it in its sleep)")
            elif isinstance(stmt, A.KsmUnmergeAll):
                # (refused before any probe starts unless allowed: _Plan)
                system.unmerge_everything(allow_global=self.allow_global)
            else:
                try:
                    system.write_knob(stmt.knob, str(stmt.value))
                except OSError as e:
                    raise EnvironmentProblem(
                        f"ksm set {stmt.knob} {stmt.value}: the kernel refused "
                        f"({os.strerror(e.errno or 0)})"
                        + (" — merge_across_nodes can only change while no KSM pages exist"
                           if stmt.knob == "merge_across_nodes" else "")) from None
        except EnvironmentProblem as e:
            for lv in waiting:
                lv._fail(ENVIRONMENT, str(e))
            return
        after = system.read_counters()
        events = early + (self.tracer.take_events() if self.tracer else [])
        # the keeper page's share comes off the change (after - before) here, before any
        # of it is charged to a scenario
        delta = {k: after[k] - before[k] for k in after if k in before}
        corrected = dict(delta)
        self._keeper_correction(stmt, corrected, smart)
        after = {k: (before[k] + corrected[k] if k in corrected else v)
                 for k, v in after.items()}
        self._check_gauges, self.unreaped = attribute_barrier(
            stmt, waiting, lives, before, after, events, self.mm_owner, self.unreaped)

    def _keeper_correction(self, stmt, delta: dict, smart: bool) -> None:
        keeper_correction(self.keeper, stmt, delta, smart)

    def check_gauges(self) -> None:
        chk = getattr(self, "_check_gauges", None)
        self._check_gauges = None
        check_gauges(chk)


# ----------------------------------------------------------------------------- run_kernel

def run_kernel(scenarios: list[Scenario], *, batch: bool | None = None,
               progress: Callable[[int, int], None] | None = None,
               journal_dir: str | os.PathLike | None = None,
               allow_global: bool = False) -> list[KernelRun]:
    """Replay each scenario on the running kernel; one KernelRun per scenario, input order.

    ``allow_global``: a scenario with ``ksm unmerge-all`` may write run=2, which unmerges
    every KSM page of the machine; without it such a scenario is not run (with the reason).

    SIGINT and SIGTERM stop the run after everything was restored: SIGINT then raises
    KeyboardInterrupt, SIGTERM SystemExit(143)."""
    try:
        return _run_kernel(scenarios, batch=batch, progress=progress, journal_dir=journal_dir,
                           allow_global=allow_global)
    except _Interrupted as e:
        if e.signum == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise SystemExit(128 + e.signum) from None

def _run_kernel(scenarios, *, batch, progress, journal_dir,
                allow_global=False) -> list[KernelRun]:
    scenarios = list(scenarios)
    ksm_flag = True
    for s in scenarios:
        if not isinstance(s, Scenario):
            raise InvalidArgument(f"run_kernel takes Scenario objects, not {type(s).__name__}")
    total = len(scenarios)
    version = host_version()
    results: list[KernelRun | None] = [None] * total
    done = 0

    def finish(i: int, run: KernelRun) -> None:
        nonlocal done
        results[i] = run
        done += 1
        if progress:
            progress(done, total)

    if not is_root():
        for i, s in enumerate(scenarios):
            finish(i, KernelRun(s, version, NOT_RUN,
                                "not run: kernel results need root (PFNs from pagemap, "
                                "/proc/kpageflags, /proc/kpagecount and the KSM knobs)"))
        return results  # type: ignore[return-value]
    if not system.ksm_available():
        for i, s in enumerate(scenarios):
            finish(i, KernelRun(s, version, ENVIRONMENT, "this kernel has no KSM "
                                "(/sys/kernel/mm/ksm missing)"))
        return results  # type: ignore[return-value]

    # features this kernel lacks: unsupported, not failed
    todo: list[int] = []
    needs = {}
    machine: dict = {}       # the memory nodes and cgroup controllers, read once a run

    def nodes():
        if "nodes" not in machine:
            machine["nodes"] = system.memory_nodes()
        return machine["nodes"]

    def controllers():
        if "cgroups" not in machine:
            machine["cgroups"] = system.cgroup_controllers()
        return machine["cgroups"]
    for i, s in enumerate(scenarios):
        feats = implied_features(s)
        needs[i] = feats
        missing = [f for f in feats if not has_feature(version, f)]
        too_big = beyond_probe(s)
        no_node = beyond_nodes(s, nodes()) or beyond_cgroups(s, controllers())
        # a knob this kernel has no file for (merge_across_nodes without CONFIG_NUMA)
        no_knob = sorted({x.knob for x in s.statements if isinstance(x, A.KsmSet)
                          and not (system.KSM_DIR / x.knob).exists()})
        if missing:
            finish(i, KernelRun(s, version, UNSUPPORTED,
                                f"kernel {version} lacks {', '.join(FEATURE_NOTES[f] for f in missing)}"))
        elif too_big:
            finish(i, KernelRun(s, version, UNSUPPORTED, too_big))
        elif no_node:
            finish(i, KernelRun(s, version, UNSUPPORTED, no_node))
        elif "uffd-wp" in feats and not USERFAULTFD_SYSCTL.exists():
            # (the sysctl exists exactly when the kernel has CONFIG_USERFAULTFD, 5.2+)
            finish(i, KernelRun(s, version, UNSUPPORTED,
                                f"kernel {version} has no userfaultfd (no "
                                f"{USERFAULTFD_SYSCTL}: CONFIG_USERFAULTFD is off)"))
        elif no_knob:
            finish(i, KernelRun(s, version, UNSUPPORTED,
                                f"kernel {version} has no {', '.join(no_knob)} knob (no "
                                f"{system.KSM_DIR}/{no_knob[0]}"
                                + ("; CONFIG_NUMA is off" if no_knob[0] == "merge_across_nodes"
                                   else "") + ")"))
        else:
            todo.append(i)
    if not todo:
        return results  # type: ignore[return-value]
    try:
        exe = default_probe()
    except EnvironmentProblem as e:
        for i in todo:
            finish(i, KernelRun(scenarios[i], version, ENVIRONMENT, str(e)))
        return results  # type: ignore[return-value]

    try:   # every waiting probe holds four descriptors here
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < min(hard, 16384):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 16384), hard))
    except (ImportError, ValueError, OSError):
        pass
    sdir = system.state_dir(journal_dir)
    jpath = sdir / system.JOURNAL_NAME
    old_handlers = {}

    def on_signal(signum, _frame):
        raise _Interrupted(signum)

    with system.RunLock(sdir, notify=lambda m: print(f"ksmdiff: {m}", file=sys.stderr,
                                                     flush=True)):
        if jpath.exists():
            system.restore_journal(jpath)   # left by a killed run: the owner is dead
        system.remove_stale_cgroups()       # groups of probes killed before their end
        journal = system.Journal(jpath, {"pid": os.getpid(), "started": time.time(),
                                         "snapshot": system.snapshot()})
        journal.save()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old_handlers[sig] = signal.signal(sig, on_signal)
            except ValueError:   # not the main thread
                pass
        tmpdir = tempfile.TemporaryDirectory(prefix="ksmdiff-")
        keeper = None
        tracer = None
        sess = None
        first_reap = None
        early = None
        try:
            system.pin_knobs()
            keeper = system.Keeper()
            # A kernel whose KPF_KSM is set on every anonymous page cannot say which pages
            # are KSM: 'ksm' fields stay absent (never guessed), and scenarios run one at a
            # time, where the global gauges are the scenario's own and need no page flags.
            ksm_flag = system.kpageflags_ksm_on_plain_anon() is not True
            if not ksm_flag:
                batch = False
            first_reap = _FirstReap()
            want_tracer = has_counter(version, "stable_nodes_removed") or any(
                "tracepoints" in needs[i] for i in todo)
            want_swap = any("swap" in needs[i] for i in todo)
            counters = tuple(c for c in PROBE_COUNTERS if has_counter(version, c))
            # The tracing instance and the swap file while the first reap runs, before any
            # probe starts: enabling the events (tracepoint patching) and swapon(2) took
            # 4-6 ms and ~1 ms alone, 26 ms and 10-17 ms while the probes were being forked.
            if want_tracer:
                tracer = system.Tracer(journal)
                if not tracer.start():
                    tracer = None
            swap_ok, swap_reason = True, ""
            if want_swap:
                try:
                    pages = sum(st.npages for i in todo if "swap" in needs[i]
                                for st in scenarios[i].statements if isinstance(st, A.Mmap))
                    system.provision_swap(journal, sdir, pages * 16)  # x processes
                except (EnvironmentProblem, OSError) as e:
                    swap_ok, swap_reason = False, f"no swap: {e}"
            if tracer:
                counters += ("stable_nodes_removed",)
            counters += tuple(c for c in KSMD_GAUGES if has_counter(version, c))
            sess = _Session(version, exe, Path(tmpdir.name), tracer, swap_ok, swap_reason,
                            counters, first_reap=first_reap, ksm_flag=ksm_flag,
                            allow_global=allow_global)
            # started by this (main) thread: the server dies with the thread that started
            # it (PR_SET_PDEATHSIG), and so do the probes it forks
            sess.server = _ProbeServer(exe, Path(tmpdir.name) / "windows.lock")
            # the first groups' probes start now, in the background
            early = _Plan(sess, scenarios, todo, needs, batch, finish, have_swap=swap_ok,
                          have_tracer=tracer is not None, swap_reason=swap_reason)
            early.look_ahead(0)
            _run_all(sess, scenarios, todo, needs, batch, finish, early=early)
        finally:
            for sig, h in old_handlers.items():
                signal.signal(sig, signal.SIG_IGN)   # no second interruption mid-restore
            teardown = None
            try:
                if first_reap is not None:
                    first_reap.join()       # it writes run and sleep_millisecs: first
                if early is not None:
                    early.close()           # probes started for groups that never ran
                if sess is not None and sess.server is not None:
                    sess.server.close()
                if tracer:
                    tracer.close()
                # the probes are gone and the tracer closed: the tracing instance and the
                # swap file go now, in threads (RCU grace periods), while the rest is undone;
                # restore_journal joins them, so nothing is left when this returns
                teardown = system.Teardown(journal.data)
                tmpdir.cleanup()
                if keeper:
                    keeper.close()
                try:
                    system.write_knob("run", "0")
                    system.drain_stable_nodes(timeout=2.0)
                except OSError:
                    pass
                summary = system.restore_journal(jpath, teardown=teardown)
                teardown = None
                if "INCOMPLETE" in summary:
                    print(f"ksmdiff: {summary}", file=sys.stderr, flush=True)
            finally:
                if teardown is not None:
                    teardown.join()
                system.close_fds()
                for sig, h in old_handlers.items():
                    signal.signal(sig, h)
    if not ksm_flag:
        for i, r in enumerate(results):
            if r is not None and r.status == OK:
                results[i] = dataclasses.replace(
                    r, reason=KPF_KSM_NOTE + (f"; {r.reason}" if r.reason else ""))
    return results  # type: ignore[return-value]

class _Plan:
    """The groups of a run and the background start of their probes."""

    def __init__(self, sess: _Session, scenarios, todo, needs, batch, finish, *,
                 have_swap: bool, have_tracer: bool, swap_reason: str = ""):
        self.sess, self.scenarios = sess, scenarios
        progs: dict[int, Program] = {}
        for i in todo:
            s = scenarios[i]
            if "swap" in needs[i] and not have_swap:
                finish(i, KernelRun(s, sess.version, ENVIRONMENT, swap_reason))
                continue
            if "tracepoints" in needs[i] and not have_tracer:
                finish(i, KernelRun(s, sess.version, ENVIRONMENT,
                                    "the ksm tracepoints are not available (tracefs)"))
                continue
            if not getattr(sess, "allow_global", False) and any(isinstance(x, A.KsmUnmergeAll)
                                             for x in s.statements):
                # (unsupported, as a missing feature: this run does not allow run=2)
                finish(i, KernelRun(s, sess.version, UNSUPPORTED, UNMERGE_ALL_REFUSED))
                continue
            progs[i] = compile_scenario(s)
        self.progs = progs
        use_batch = self.use_batch = (len(progs) > 1) if batch is None else batch
        alone: list[int] = []
        batches: list[list[int]] = []
        for i in sorted(progs):
            if not use_batch or progs[i].solo_reasons:
                alone.append(i)
        batches = _pack(progs, [i for i in progs if i not in set(alone)])
        for b in [b for b in batches if len(b) == 1]:
            alone.extend(b)
        batches = [b for b in batches if len(b) > 1]
        # Groups in order: the batches, then the scenarios that run alone.  In a batch run
        # the probes of later groups are started in the background (one thread; the probe
        # server forks them) while earlier groups run, never while a group steps (_Gate);
        # they wait for their first "go" and touch nothing before.
        # Groups that set max_page_sharing / merge_across_nodes go last: they start from a
        # reaped baseline, and the group after one would first have to let ksmd drop every
        # stable node to put the knob back (the final restore does that anyway).
        plan: list[tuple[str, list[int]]] = [("batch", chunk) for chunk in batches]
        for i in sorted(set(alone)):
            plan.append(("alone", [i]))
        plan.sort(key=lambda g: _sets_stable_knobs(progs, g[1]))   # stable: else as was
        self.plan = plan
        # one thread: the groups' probes start in plan order (the first group's first)
        self.pool = ThreadPoolExecutor(max_workers=1) if use_batch else None
        self.futures: list = [None] * len(plan)

    def submit(self, k: int) -> None:
        """Start the probes of group k in the background (a bounded look-ahead: every
        waiting probe holds descriptors and two processes)."""
        plan, futures = self.plan, self.futures
        if self.pool and k < len(plan) and futures[k] is None:
            futures[k] = self.pool.submit(self.sess.spawn, [
                (i, self.scenarios[i], self.progs[i]) for i in plan[k][1]])

    def look_ahead(self, k: int) -> None:
        """Group k and about one batch of probes after it."""
        if not self.pool:
            return                   # one scenario at a time: each group's probes start with it
        self.submit(k)
        ahead = k + 1
        plan = self.plan
        size = 0                     # the probes of groups k+1 .. ahead
        while ahead < len(plan):
            size += len(plan[ahead][1])
            if size > MAX_BATCH:
                break
            self.submit(ahead)
            ahead += 1

    def close(self) -> None:
        """Kill every probe started for a group (those that ran are already gone)."""
        if self.pool:
            for fut in self.futures:
                if fut is not None and not fut.cancel():
                    try:
                        for lv in fut.result():
                            lv.abandon()
                    except Exception:
                        pass
            self.pool.shutdown(wait=True)
            self.pool = None


def _run_all(sess: _Session, scenarios, todo, needs, batch, finish,
             early: _Plan | None = None) -> None:
    P = early or _Plan(sess, scenarios, todo, needs, batch, finish, have_swap=sess.swap_ok,
                       have_tracer=sess.tracer is not None, swap_reason=sess.swap_reason)
    progs, plan, use_batch, futures = P.progs, P.plan, P.use_batch, P.futures
    retry: list[int] = []

    try:
        for k, (kind, members) in enumerate(plan):
            P.look_ahead(k)   # keep about one batch of probes starting ahead
            fut = futures[k]
            items = [(i, scenarios[i], progs[i]) for i in members]
            if kind == "batch":
                # the first group starts from a reaped baseline; later ones account for
                # what ksmd removes of earlier groups during their first scan (checked)
                quiet = any(isinstance(b, A.KsmSet) and b.knob != "use_zero_pages"
                            for i in members for b in progs[i].barriers.values())
                lives = sess.run_group(items, reap=(k == 0 or quiet), spawned=fut)
                for lv in lives:
                    if lv.ambiguous or (lv.status == ENVIRONMENT and "settle" not in lv.reason):
                        retry.append(lv.index)      # replay alone: as one-at-a-time
                    else:
                        finish(lv.index, lv.result("batch"))
                continue
            # Alone.  In a batch run, back to back without a reap in between (the earlier
            # groups' leftovers are accounted for and checked); a failed check means a
            # replay after a reap.  max_page_sharing / merge_across_nodes can only change
            # with no stable nodes left.
            i = members[0]
            quiet = progs[i].quiet or any(isinstance(b, A.KsmSet) and b.knob != "use_zero_pages"
                                          for b in progs[i].barriers.values())
            lv = sess.run_group(items, reap=not use_batch or quiet, spawned=fut)[0]
            if lv.ambiguous:
                retry.append(i)
            else:
                finish(i, lv.result("alone"))
    finally:
        P.close()
    for i in retry:
        lv = sess.run_group([(i, scenarios[i], compile_scenario(scenarios[i]))], reap=True)[0]
        finish(i, lv.result("alone"))
