"""The host's side of a lab boot: plans for the guest's C driver (``driver.c``) and the
records made from what it sends back.

The guest runs no Python.  The host compiles every scenario's probe program, writes them
into a plan with the ksm statements each reaches; the driver (the guest's /init starts it)
replays them one scenario at a time with the runner's knob pins, reaps and bounded settles,
and returns the probe's lines, the counters around each ksm statement and the ksm trace
lines verbatim.  Here they go through the host runner's own decoder (``decode.ScenarioState``),
keeper correction and attribution (``attribution.attribute_barrier``), so a lab kernel's
records are made as the host kernel's are.  A scenario whose records diverge from the
model of the kernel's version is replayed ``RERUNS`` more times in the same boot (a second
pass, each replay a fresh run: a new keeper page, a first reap), as ``--kernel host`` does.
Pure apart from compiling the driver: no VM here (guest.boot_driver runs it).
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import Sequence

from ksmdiff.internal.audit import pure
from ksmdiff.observe import ENVIRONMENT, OK, UNSUPPORTED
from ksmdiff.probe import system
from ksmdiff.probe import wire as W
from ksmdiff.probe.attribution import attribute_barrier
from ksmdiff.probe.compiler import (KSMD_GAUGES, Program, beyond_cgroups, beyond_nodes,
                                   beyond_probe, compile_scenario, parse_node_list)
from ksmdiff.probe.decode import ScenarioState
from ksmdiff.probe.plan import _sets_stable_knobs
from ksmdiff.probe.result import KPF_KSM_NOTE, PROBE_COUNTERS, KernelRun
from ksmdiff.probe.runner import _KeeperItem, keeper_correction
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import implied_features
from ksmdiff.status import RunStatus
from ksmdiff.versions import FEATURE_NOTES, KernelVersion, has_counter, has_feature

# The guest's CPU under TCG is 10-30x slower than the host's: the runner's bounds on ksmd
# (settle, scan N, draining stable nodes), ksmd's sleep between exact scans (run=0 must be
# written inside it) and the poll of ksmd's counters (which takes the one CPU from ksmd)
# are stretched by this much; only the bounds and the sleep change, not what is waited for.
# (the runner's defaults: settle(timeout=3.0), scan_exact(sleep_ms=20) with its timeout
# 2.0 + n * sleep_ms / 1000 * 3, drain_stable_nodes(timeout=2.0), system.POLL_SECONDS)
TIME_SCALE = 10
SETTLE_TIMEOUT = 3.0 * TIME_SCALE
SCAN_SLEEP_MS = 20 * TIME_SCALE
SCAN_TIMEOUT = (2.0 * TIME_SCALE,                          # base, and per scan
                SCAN_SLEEP_MS * 3 * TIME_SCALE / 1000)
DRAIN_TIMEOUT = 2.0 * TIME_SCALE
POLL_MS = max(1, round(system.POLL_SECONDS * TIME_SCALE * 1000))
LINE_TIMEOUT = 90          # the driver's bound on a silent probe (runner.LINE_TIMEOUT)
NO_RESULT = "no result came back from the guest for this scenario"


# ----------------------------------------------------------------------------- the driver

def driver_source() -> bytes:
    return resources.files("ksmdiff.lab").joinpath("driver.c").read_bytes()


def driver_path() -> Path:
    """The static driver for the current source, built into the cache on first use."""
    from ksmdiff.probe.build import cached_c
    return cached_c(driver_source(), "lab-driver", static=True)


# ----------------------------------------------------------------------------- plans

def _barrier_lines(prog: Program) -> list[str]:
    out = []
    for s, b in sorted(prog.barriers.items()):
        if isinstance(b, A.KsmSettle):
            out.append(f"barrier {s} settle")
        elif isinstance(b, A.KsmScan):
            out.append(f"barrier {s} scan {b.scans}")
        elif isinstance(b, A.KsmUnmergeAll):
            out.append(f"barrier {s} unmerge")
        elif isinstance(b, A.KsmSet):
            out.append(f"barrier {s} set {b.knob} {b.value}")
        else:
            raise AssertionError(f"no ksm statement: {b!r}")
        for name, value in prog.scan_knobs.get(s, {}).items():
            out.append(f"knob {s} {name} {value}")
    return out


def plan_text(sessions: list[list[tuple[int, Program]]], tracer: bool) -> bytes:
    """A plan: each session a fresh run (keeper, first reap) of its replays in order, each
    a number (the transcript's name for it) and a program."""
    parts = [b"ksmdiff-lab-plan 1\n",
             (f"timeouts {SETTLE_TIMEOUT} {SCAN_SLEEP_MS} {SCAN_TIMEOUT[0]} "
              f"{SCAN_TIMEOUT[1]} {DRAIN_TIMEOUT} {POLL_MS}\n").encode(),
             f"tracer {int(tracer)}\n".encode()]
    for items in sessions:
        parts.append(b"session\n")
        for i, prog in items:
            lines = _barrier_lines(prog)
            text = prog.text.encode()
            parts.append(f"scenario {i} {len(lines)} {len(text)}\n".encode())
            parts.extend(f"{line}\n".encode() for line in lines)
            parts.append(text)
    parts.append(b"end\n")
    return b"".join(parts)


# ----------------------------------------------------------------------------- transcripts

def _counters(words: list[str]) -> dict[str, int]:
    out = {}
    for w in words:
        k, _, v = w.partition("=")
        out[k] = int(v)
    return out


def barrier_error(stmt, what: str, done: int, err: int) -> str:
    """The runner's words for a ksm statement that failed in the guest."""
    if what == "settle-min":
        return f"ksmd did not finish 2 full scans in {SETTLE_TIMEOUT} s"
    if what == "settle-within":
        return f"ksmd did not settle within {SETTLE_TIMEOUT} s"
    if what == "settle-changing":
        return f"KSM counters still changing after {SETTLE_TIMEOUT} s"
    if what == "scan-timeout":
        t = SCAN_TIMEOUT[0] + SCAN_TIMEOUT[1] * stmt.scans
        return f"ksmd did not do {stmt.scans} full scans in {t:.1f} s"
    if what == "scan-count":
        return (f"ksm scan {stmt.scans}: ksmd did {done} full scans (host too slow to stop "
                "it in its sleep)")
    if what == "set":
        return (f"ksm set {stmt.knob} {stmt.value}: the kernel refused ({os.strerror(err)})"
                + (" — merge_across_nodes can only change while no KSM pages exist"
                   if stmt.knob == "merge_across_nodes" else ""))
    return f"the guest's driver: {what} at statement {stmt}"


class _Replay(ScenarioState):
    """One scenario's probe lines as the runner's _Live handles them."""

    started = False

    def fail(self, status: RunStatus, reason: str) -> None:
        if self.done and self.status != OK:
            return
        self.status, self.reason, self.done = status, reason, True
        self.at_barrier = None

    def line(self, text: str) -> None:
        if self.done:
            return
        try:
            msg = json.loads(text)
        except ValueError as e:
            return self.fail(ENVIRONMENT, f"bad probe output: {e}")
        if not self.started:
            self.started = True
            if not isinstance(msg, dict) or "start" not in msg:
                return self.fail(ENVIRONMENT, _death(msg))
            try:
                pid = W.check_start(msg)
            except ValueError as e:
                return self.fail(ENVIRONMENT, str(e))
            self.pids[0] = pid
            self.all_pids.add(pid)
            return
        what = W.kind(msg) if isinstance(msg, dict) else None
        if what is None or what is W.Kind.ERROR:
            return self.fail(ENVIRONMENT, _death(msg))
        self.at_barrier = None
        if what is W.Kind.SYNC:
            self.at_barrier = msg["sync"]
        elif what is W.Kind.END:
            self.done = True
        elif what is W.Kind.RECORD:
            try:
                self._record(msg)
            except (ValueError, KeyError, IndexError, TypeError) as e:
                self.fail(ENVIRONMENT, f"bad probe output: {e}")
        else:
            self.fail(ENVIRONMENT, f"bad probe output: unexpected {what.value} message")


def _death(msg) -> str:
    if isinstance(msg, dict) and "error" in msg:
        return f"probe: {msg['error']}"
    return f"bad probe output: {str(msg)[:200]}"


@dataclasses.dataclass
class Header:
    release: str = ""
    ksm: bool = True
    tracer: bool = False
    tracer_reason: str = ""
    swap: bool = False
    kpf: int = -1            # kpageflags_ksm_on_plain_anon: 1, 0, -1 unreadable
    uffd: bool = True        # /proc/sys/vm/unprivileged_userfaultfd exists (CONFIG_USERFAULTFD)
    knobs: frozenset | None = None   # the files of /sys/kernel/mm/ksm (None: not said)
    # the NUMA nodes with memory (/sys/devices/system/node/has_memory; None: no NUMA)
    nodes: frozenset | None = None
    nodes_said: bool = False
    # the controllers the cgroup2 root enables for its children (None: no cgroup2 mount)
    cgroup: frozenset | None = None
    cgroup_said: bool = False


def parse_header(line: str) -> Header:
    h = Header()
    words = line.split(" ")
    for i, w in enumerate(words):
        k, _, v = w.partition("=")
        if k == "release":
            h.release = v
        elif k == "ksm":
            h.ksm = v == "1"
        elif k == "tracer":
            h.tracer = v == "1"
        elif k == "swap":
            h.swap = v == "1"
        elif k == "kpf":
            h.kpf = int(v)
        elif k == "uffd":
            h.uffd = v == "1"
        elif k == "knobs":
            h.knobs = frozenset(x for x in v.split(",") if x)
        elif k == "nodes":
            h.nodes_said = True
            h.nodes = None if v == "none" else parse_node_list(v)
        elif k == "cgroup":
            h.cgroup_said = True
            h.cgroup = None if v == "none" else frozenset(x for x in v.split(",") if x)
        elif k == "tracer_reason":
            h.tracer_reason = " ".join([v, *words[i + 1:]])
            break
    return h


class Replayer:
    """Reads a transcript (one pass) into KernelRuns, session by session."""

    def __init__(self, scenarios: Sequence[A.Scenario], version: KernelVersion,
                 items: dict[int, tuple[int, Program]]):
        # items: the plan's number of each replay -> (scenario index, its program)
        self.scenarios, self.version, self.items = scenarios, version, items
        self.header: Header | None = None
        self.runs: list[tuple[int, KernelRun]] = []     # (scenario index, run), in order
        self.fatal = ""

    def counters(self) -> tuple[str, ...]:
        c = tuple(n for n in PROBE_COUNTERS if has_counter(self.version, n))
        if self.header and self.header.tracer:
            c += ("stable_nodes_removed",)
        return c + tuple(n for n in KSMD_GAUGES if has_counter(self.version, n))

    def read(self, text: str) -> None:
        self.keeper = _KeeperItem()      # the driver's keeper page, as ksmd sees it
        self.mm_owner: dict = {}
        self.lv: _Replay | None = None   # the scenario being read
        self.first = True                # the first of its session (reaped by the first reap)
        self.reap_failed = False
        self.events: list[str] = []      # trace lines of the pending ksm statement
        self.pending = None              # (stmt, smart, before, after) of the last one
        self.seconds: list[tuple[int, float, float]] = []   # (scenario, reap, run): M lines
        for raw in text.split("\n"):
            tag, _, rest = raw.partition(" ")
            try:
                self._line(tag, rest)
            except (ValueError, KeyError, IndexError) as e:
                if self.lv is not None:
                    self.lv.fail(ENVIRONMENT, f"bad transcript line from the guest ({e}): "
                                              f"{raw[:200]}")
                    self.pending = None

    def _line(self, tag: str, rest: str) -> None:
        lv = self.lv
        if tag == "H":                   # a new session: a new keeper page, a first reap
            self.header = parse_header(rest)
            self.keeper, self.mm_owner, self.first = _KeeperItem(), {}, True
        elif tag == "F":
            self.fatal = rest
        elif tag == "S":
            i, prog = self.items[int(rest)]
            ksm_flag = not (self.header and self.header.kpf == 1)
            self.lv = _Replay(i, self.scenarios[i], prog, self.version, self.counters(),
                              ksm_flag)
            self.reap_failed, self.events, self.pending = False, [], None
        elif lv is None:
            return
        elif tag == "W":
            self.reap_failed = True
        elif tag == "P":
            if not lv.started and not self.first and not self.reap_failed:
                self.keeper.settled()            # the reap before this scenario
            if self.pending is not None:
                self._barrier(lv)
            lv.line(rest)
        elif tag == "T":
            self.events.append(rest)
        elif tag == "B":
            w = rest.split(" ")
            a, b = w.index("before"), w.index("after")
            stmt = lv.prog.barriers[int(w[0])]
            self.pending = (stmt, w[1], _counters(w[a + 1:b]), _counters(w[b + 1:]))
        elif tag == "E":
            s, what, done, err = rest.split(" ")
            stmt = lv.prog.barriers[int(s)]
            lv.fail(ENVIRONMENT, barrier_error(stmt, what, int(done), int(err)))
            self.pending = None
        elif tag == "X":
            status, _, err = rest.partition(" ")
            lv.fail(ENVIRONMENT, f"probe exited with code {status}: "
                                 f"{err.strip() or 'no message'}")
        elif tag == "M":                 # the guest's time for it (benchmarks only)
            reap, run = rest.split(" ")
            self.seconds.append((lv.index, float(reap), float(run)))
        elif tag == "Q":
            lv.fail(ENVIRONMENT, f"probe silent for {LINE_TIMEOUT} s")
        elif tag == "Z":
            if self.pending is not None:         # (no line after it: the probe died)
                self._barrier(lv)
            if not lv.done:
                lv.fail(ENVIRONMENT, "the probe stopped before its end")
            self.runs.append((lv.index, self._result(lv)))
            self.lv, self.first = None, False

    def _barrier(self, lv: _Replay) -> None:
        """The runner's _Session._barrier after the fact: the keeper page's share off the
        change, then the attribution (one scenario: all of it is its own)."""
        stmt, smart_raw, before, after = self.pending
        events, self.pending, self.events = self.events, None, []
        smart = smart_raw == "1" if has_counter(self.version, "pages_skipped") else False
        delta = {k: after[k] - before[k] for k in after if k in before}
        corrected = dict(delta)
        keeper_correction(self.keeper, stmt, corrected, smart)
        after = {k: (before[k] + corrected[k] if k in corrected else v)
                 for k, v in after.items()}
        evs = (system.parse_trace("\n".join(events)) if self.header and self.header.tracer
               else [])
        attribute_barrier(stmt, [lv], [lv], before, after, evs, self.mm_owner, [])

    def _result(self, lv: _Replay) -> KernelRun:
        run = lv.result("alone")
        if self.header and self.header.kpf == 1 and run.status == OK:
            run = dataclasses.replace(
                run, reason=KPF_KSM_NOTE + (f"; {run.reason}" if run.reason else ""))
        return run


class LabSession:
    """The scenarios of one boot: the first pass' plan, and after each pass the next one
    (the re-runs of divergent scenarios) or None."""

    def __init__(self, scenarios: Sequence[A.Scenario], version: KernelVersion,
                 reruns: int):
        self.scenarios, self.version, self.reruns = list(scenarios), version, reruns
        self.runs: list[KernelRun | None] = [None] * len(self.scenarios)
        self.rerun_runs: dict[int, list[KernelRun]] = {}
        self.model: list | None = None
        self.needs: dict[int, tuple[str, ...]] = {}
        self.progs: dict[int, Program] = {}
        self.header: Header | None = None
        self.passes = 0
        # the first pass' guest seconds of each scenario: (the reap before it, the rest)
        self.guest_seconds: dict[int, tuple[float, float]] = {}
        self._rerun_items: dict[int, tuple[int, Program]] = {}
        for i, s in enumerate(self.scenarios):
            feats = implied_features(s)
            self.needs[i] = feats
            missing = [f for f in feats if not has_feature(version, f)]
            too_big = beyond_probe(s)
            if missing:
                self.runs[i] = KernelRun(s, version, UNSUPPORTED, f"kernel {version} lacks "
                                         + ", ".join(FEATURE_NOTES[f] for f in missing))
            elif too_big:
                self.runs[i] = KernelRun(s, version, UNSUPPORTED, too_big)
            else:
                self.progs[i] = compile_scenario(s)
        self.tracer = has_counter(version, "stable_nodes_removed") or any(
            "tracepoints" in self.needs[i] for i in self.progs)
        # one at a time, in the runner's order: the scenarios that set max_page_sharing or
        # merge_across_nodes last
        order = sorted(self.progs)
        order.sort(key=lambda i: _sets_stable_knobs(self.progs, [i]))
        self.order = order

    def prepare(self) -> None:
        """The model's records of every scenario for the kernel's version (to tell which
        diverge): seconds of the host's CPU, spent while the guest boots."""
        from ksmdiff.model import run_model
        if self.model is not None:
            return
        model = []
        with pure():
            for scn in self.scenarios:
                m = run_model(scn, self.version)
                model.append(m.records if m.status == OK else None)
        self.model = model

    def total(self) -> int:
        return len(self.progs)

    def first_plan(self) -> bytes:
        return plan_text([[(i, self.progs[i]) for i in self.order]], self.tracer)

    def take_pass(self, text: str) -> bytes | None:
        """Read pass ``self.passes``' transcript; the next plan, or None when done."""
        n = self.passes
        self.passes += 1
        if n == 0:
            rep = Replayer(self.scenarios, self.version,
                           {i: (i, p) for i, p in self.progs.items()})
            rep.read(text)
            self.header = rep.header
            self.guest_seconds = {i: (reap, run) for i, reap, run in rep.seconds}
            for i, run in rep.runs:
                self.runs[i] = self._checked(i, run)
            for i in self.order:
                if self.runs[i] is None:
                    self.runs[i] = KernelRun(self.scenarios[i], self.version, ENVIRONMENT,
                                             rep.fatal or NO_RESULT)
            return self._rerun_plan()
        rep = Replayer(self.scenarios, self.version, self._rerun_items)
        rep.read(text)
        got: dict[int, list[KernelRun]] = {}
        for i, run in rep.runs:
            got.setdefault(i, []).append(self._checked(i, run))
        for i in sorted({i for i, _p in self._rerun_items.values()}):
            runs = got.get(i, [])
            while len(runs) < self.reruns:
                runs.append(KernelRun(self.scenarios[i], self.version, ENVIRONMENT,
                                      rep.fatal or NO_RESULT))
            self.rerun_runs[i] = runs
        return None

    def _checked(self, i: int, run: KernelRun) -> KernelRun:
        """What the guest lacked for a scenario (swap, tracepoints, KSM) as the host runner
        says it before a probe starts."""
        h = self.header
        if h is None:
            return run
        s = self.scenarios[i]
        if not h.ksm:
            return KernelRun(s, self.version, ENVIRONMENT,
                             "this kernel has no KSM (/sys/kernel/mm/ksm missing)")
        if "uffd-wp" in self.needs[i] and not h.uffd:
            # (the sysctl exists exactly when the kernel has CONFIG_USERFAULTFD, 5.2+)
            return KernelRun(s, self.version, UNSUPPORTED,
                             f"kernel {self.version} has no userfaultfd (no "
                             "/proc/sys/vm/unprivileged_userfaultfd: CONFIG_USERFAULTFD "
                             "is off)")
        no_knob = sorted({x.knob for x in s.statements if isinstance(x, A.KsmSet)
                          and h.knobs is not None and x.knob not in h.knobs})
        if no_knob:      # (merge_across_nodes without CONFIG_NUMA)
            return KernelRun(s, self.version, UNSUPPORTED,
                             f"kernel {self.version} has no {', '.join(no_knob)} knob (no "
                             f"/sys/kernel/mm/ksm/{no_knob[0]}"
                             + ("; CONFIG_NUMA is off" if no_knob[0] == "merge_across_nodes"
                                else "") + ")")
        no_node = ((beyond_nodes(s, h.nodes) if h.nodes_said else None)
                   or (beyond_cgroups(s, h.cgroup) if h.cgroup_said else None))
        if no_node:
            return KernelRun(s, self.version, UNSUPPORTED, no_node)
        if "swap" in self.needs[i] and not h.swap:
            return KernelRun(s, self.version, ENVIRONMENT,
                             "no swap: the guest's swap device did not come up")
        if "tracepoints" in self.needs[i] and not h.tracer:
            return KernelRun(s, self.version, ENVIRONMENT,
                             "the ksm tracepoints are not available (tracefs)")
        return run

    def _rerun_plan(self) -> bytes | None:
        from ksmdiff.judge.compare import compare
        self.prepare()
        assert self.model is not None
        diverging = []
        for i in self.order:
            run = self.runs[i]
            if run is None or run.status != OK or self.model[i] is None:
                continue
            with pure():
                if compare(self.model[i], run.records):
                    diverging.append(i)
        self._rerun_items = {}
        if not diverging or not self.reruns:
            return None
        # each re-run a run of its own (runner.run_kernel([scenario])): a new compile
        # (salt), keeper page and first reap
        sessions = []
        for i in diverging:
            for _ in range(self.reruns):
                n = len(self._rerun_items)
                self._rerun_items[n] = (i, compile_scenario(self.scenarios[i]))
                sessions.append([(n, self._rerun_items[n][1])])
        return plan_text(sessions, self.tracer)

    def result(self) -> dict:
        h = self.header
        return {"release": h.release if h else "",
                "runs": list(self.runs), "reruns": dict(self.rerun_runs),
                "kpageflags_ksm_on_plain_anon": bool(h and h.kpf == 1),
                "guest_seconds": dict(self.guest_seconds)}
