"""``ksmdiff lab race NAME``: the reuse_ksm_page race experiment on a race kernel.

The corpus cannot reach the 5.4-no-freeze mistake: a plain count check instead of
page_ref_freeze(page, 1) differs only when get_ksm_page() takes a reference between the
check and page_move_anon_rmap(), a window of a few instructions.  The race kernels
(``known.toml``: 5.4-race, 5.4-no-freeze-race and the -ksmd-nolock controls) are SMP
5.4.59 builds with that window widened by ``patches/5.4-race-window.patch`` -- the same
instrumentation on the clean kernel and the broken ones.  This module boots one with two
CPUs and runs ``race.c`` in it (rounds of: a singly mapped KSM page written by process A
while ksmd, on the other CPU, scans process V's identical page); a round where V's page
shows A's write is a leak.  Per round it also reports whether the write reused the page
and whether ksmd's get_ksm_page() met the page inside the window (the kernel's counters),
so a run without leaks says how often the race was actually exercised.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ksmdiff.errors import EnvironmentProblem, UsageError

ROUNDS = 20
WINDOW_US = 20_000       # 20 ms of busy wait in reuse_ksm_page per write fault
TIMEOUT_S = 60.0         # per wait for ksmd inside the guest (merges, full scans)
GUEST_CPUS = 2

_ROUND = re.compile(r"^round (\d+) reused=([01]) windows=(\d+) lookups=(\d+) leak=([01]) "
                    r"v0=0x([0-9a-f]{2})$")
_DONE = re.compile(r"^done rounds=(\d+)$")


@dataclass(frozen=True)
class Round:
    index: int
    reused: bool          # A's write kept the KSM page's frame (reuse_ksm_page succeeded)
    windows: int          # widened windows opened during the round
    lookups: int          # get_ksm_page() calls that met the page inside its window
    leak: bool            # V's page, only ever filled with X, showed A's byte
    v0: int               # V's first byte at the check


@dataclass(frozen=True)
class Outcome:
    kernel: str
    release: str
    rounds: tuple[Round, ...]
    window_us: int

    @property
    def leaks(self) -> int:
        return sum(r.leak for r in self.rounds)

    @property
    def met(self) -> int:
        """Rounds in which ksmd looked the page up inside the widened window."""
        return sum(r.lookups > 0 for r in self.rounds)

    @property
    def reused(self) -> int:
        return sum(r.reused for r in self.rounds)

    def summary(self) -> str:
        n = len(self.rounds)
        verdict = (f"CAUGHT: {self.leaks} of {n} rounds leaked process A's write into "
                   f"process V's page" if self.leaks else
                   f"no leak in {n} rounds")
        return (f"lab:{self.kernel} ({self.release}), window {self.window_us} us: {verdict}; "
                f"{self.reused} writes reused the KSM page, ksmd met the page inside the "
                f"window in {self.met} rounds")


def parse_output(text: str) -> tuple[Round, ...]:
    """The rounds of race.c's output; an incomplete run (no ``done`` line, or a round
    missing) is an error, never a shorter pass."""
    rounds, done = [], None
    for n, line in enumerate(text.splitlines(), 1):
        m = _ROUND.match(line)
        if m:
            i, reused, w, l, leak, v0 = m.groups()
            if int(i) != len(rounds):
                raise EnvironmentProblem(f"race output line {n}: round {i} out of order")
            rounds.append(Round(int(i), reused == "1", int(w), int(l), leak == "1",
                                int(v0, 16)))
        elif _DONE.match(line):
            done = int(_DONE.match(line).group(1))
        elif line.strip():
            raise EnvironmentProblem(f"race output line {n}: unexpected {line!r}")
    if done is None or done != len(rounds):
        raise EnvironmentProblem(f"race run incomplete: {len(rounds)} rounds and "
                                 f"{'no done line' if done is None else f'done={done}'}")
    return tuple(rounds)


def source_text() -> bytes:
    return resources.files("ksmdiff.lab").joinpath("race.c").read_bytes()


def race_binary() -> Path:
    """race.c compiled into the cache (the guest sees the host's tree read-only: build
    before the boot)."""
    from ksmdiff.probe.build import cached_c
    return cached_c(source_text(), "race")


def make_job(rounds: int, window_us: int, timeout_s: float = TIMEOUT_S) -> dict:
    return {"kind": "race",
            "argv": [str(race_binary()), str(rounds), str(window_us), str(timeout_s)]}


def run_in_guest(job: dict, beat=lambda what: None) -> dict:
    """The agent's side: run race.c, a progress beat per round, and return its output
    (the host parses it)."""
    import os
    out = []
    with subprocess.Popen(job["argv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as p:
        for line in p.stdout:
            out.append(line)
            beat(f"race-{len(out)}")
        err = p.stderr.read()
    return {"release": os.uname().release, "rc": p.returncode, "stdout": "".join(out),
            "stderr": err}


def run(name: str, rounds: int = ROUNDS, window_us: int = WINDOW_US) -> Outcome:
    """Boot lab kernel ``name`` with two CPUs and run the experiment."""
    from ksmdiff.lab import guest, store
    if rounds < 1 or window_us < 0 or window_us > 100_000:
        raise UsageError("lab race: --rounds at least 1, --window-us 0..100000 "
                         "(the kernel caps the wait at 100 ms)")
    kernel = store.get_kernel(name)
    if kernel is None:
        raise EnvironmentProblem(f"no lab kernel {name} (ksmdiff lab build --all-known)")
    if "5.4-race-window.patch" not in kernel.patches:
        raise UsageError(f"lab:{name} is not a race kernel (it lacks "
                         f"5.4-race-window.patch; see ksmdiff/lab/known.toml)")
    guest.reset()                    # one boot of its own, as run_lab starts its run
    result = guest.boot(kernel, make_job(rounds, window_us), smp=GUEST_CPUS)
    if result.result is None:
        raise EnvironmentProblem(f"lab:{name}: {result.reason}")
    doc = result.result
    if "error" in doc:
        raise EnvironmentProblem(f"lab:{name}: the agent failed: {doc['error']}")
    if doc["rc"] != 0:
        raise EnvironmentProblem(f"lab:{name}: race exited {doc['rc']}: "
                                 f"{doc['stderr'].strip()}")
    return Outcome(name, doc["release"], parse_output(doc["stdout"]), window_us)


def cmd_race(args) -> int:
    try:
        out = run(args.name, args.rounds, args.window_us)
    except EnvironmentProblem as e:
        print(f"ksmdiff lab race: {e}", file=sys.stderr)
        return 3
    if args.verbose:
        for r in out.rounds:
            print(f"  round {r.index}: reused={int(r.reused)} windows={r.windows} "
                  f"lookups={r.lookups} leak={int(r.leak)} v0=0x{r.v0:02x}")
    print(out.summary())
    return 1 if out.leaks else 0


def register(lsub) -> None:
    p = lsub.add_parser(
        "race", help="the reuse_ksm_page race experiment on a race kernel",
        description="Boot race kernel NAME (5.4.59 with reuse_ksm_page's window widened, "
                    "known.toml) with two CPUs; in each round a process writes its singly "
                    "mapped KSM page while ksmd scans another process's identical page. "
                    "Exit 1 when a round leaks the write into the other process, 0 when "
                    "none does, 3 when the experiment could not run.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--rounds", type=int, default=ROUNDS)
    p.add_argument("--window-us", type=int, default=WINDOW_US)
    p.add_argument("-v", "--verbose", action="store_true", help="one line per round")
    p.set_defaults(func=cmd_race)
