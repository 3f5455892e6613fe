"""Run static programs (the kernel's own KSM selftests, say) in a lab guest, timed there.

The guest is the scenarios' guest (guest.INIT_DRIVER: modules, the share, swap) whose last
step runs a shell script from the share instead of the driver.  The programs come in over
the share and are copied into the guest's own RAM file system before anything is timed;
each runs with its output (stdout and stderr) going through a pipe to a loop of the shell
that stamps every line with the guest's /proc/uptime into a file in that RAM file system,
copied out after the program ended: no 9p traffic while a program runs.  The stamps come
from a shell builtin (``read``), so stamping forks nothing; /proc/uptime counts in 10 ms.

Nothing here writes a KSM knob: the programs do what they do (the kernel's selftests
write ``run=2``), which is why they run in a lab guest only, never on the host.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ksmdiff.errors import UsageError
from ksmdiff.lab import guest
from ksmdiff.lab.store import KernelImage

DRIVER_STEP = "/bin/ksmdiff-lab-driver /out /bin/ksmdiff-probe\n"
SCRIPT = "run.sh"
TIMES = "times"
DONE = "done"
STARTED = "started"
NAME = re.compile(r"[A-Za-z0-9_.-]+")
STEP_TIMEOUT = 900.0      # seconds one program may take (a selftest under TCG: minutes)


def programs_init() -> str:
    """The scenarios' guest /init with its last step (the driver) replaced by the script."""
    if DRIVER_STEP not in guest.INIT_DRIVER:
        raise RuntimeError("the scenarios' guest init no longer starts the driver with "
                           f"{DRIVER_STEP.strip()!r}: programs.py must follow it")
    return guest.INIT_DRIVER.replace(DRIVER_STEP, f"/bin/sh /out/{SCRIPT}\n")


@dataclass(frozen=True)
class GuestProgram:
    name: str                     # a label and the file name in the guest: [A-Za-z0-9_.-]+
    binary: Path                  # a static executable (the guest has no C library)
    args: tuple[str, ...] = ()

    def __post_init__(self):
        if not NAME.fullmatch(self.name):
            raise UsageError(f"program name {self.name!r}: expected letters, digits, "
                             "'_', '.', '-'")


@dataclass
class ProgramRun:
    name: str
    round: int
    status: int                   # the program's exit status (128+N: killed by signal N)
    start: float                  # guest uptime, seconds (10 ms resolution)
    end: float
    lines: list[tuple[float, str]] = field(default_factory=list)  # (uptime, output line)

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class ProgramsResult:
    kernel: KernelImage
    runs: list[ProgramRun]
    reason: str = ""              # why runs are missing (a panic, a hang, no qemu)
    console: str = ""
    timings: dict = field(default_factory=dict)   # host seconds since qemu's start


def script(programs: Sequence[GuestProgram], rounds: int) -> str:
    """The guest's script: copy the programs in, then every program ``rounds`` times in
    order, one line of ``times`` per run: ROUND INDEX STATUS START END."""
    q = shlex.quote
    # run where the programs are, as run_vmtests.sh does (ksm_functional_tests' fork-exec
    # case execs "./ksm_functional_tests")
    out = [f": > /out/{STARTED}", "mkdir -p /tmp/p /tmp/o", "cd /tmp/p",
           *(f"cp /out/bin/{q(p.name)} /tmp/p/{q(p.name)} && chmod 755 /tmp/p/{q(p.name)} || echo 'ksmdiff-lab: FAILED: "
             f"copy {p.name}'" for p in programs),
           "stamp() { while IFS= read -r l; do read u _ < /proc/uptime; "
           "echo \"$u $l\"; done; }"]
    for r in range(rounds):
        for i, p in enumerate(programs):
            cmd = " ".join(q(a) for a in (f"./{p.name}", *p.args))
            out += ["rm -f /tmp/o/st", "read t0 _ < /proc/uptime",
                    f"{{ {cmd} </dev/null; echo $? > /tmp/o/st; }} 2>&1 | stamp > /tmp/o/log",
                    "read t1 _ < /proc/uptime",
                    f"cp /tmp/o/log /out/log.{r}.{i}",
                    # (no status: the shell around the program died; -1)
                    f"echo \"{r} {i} $(cat /tmp/o/st 2>/dev/null || echo -1) $t0 $t1\" "
                    f">> /out/{TIMES}"]
    out.append(f": > /out/{DONE}")
    return "\n".join(out) + "\n"


def parse_log(text: str) -> list[tuple[float, str]]:
    lines = []
    for raw in text.splitlines():
        u, _, rest = raw.partition(" ")
        try:
            lines.append((float(u), rest))
        except ValueError:
            lines.append((float("nan"), raw))
    return lines


def read_runs(out: Path, programs: Sequence[GuestProgram]) -> list[ProgramRun]:
    runs = []
    try:
        text = (out / TIMES).read_text()
    except OSError:
        return runs
    for line in text.splitlines():
        w = line.split()
        if len(w) != 5:
            continue
        r, i, st = int(w[0]), int(w[1]), int(w[2]) if w[2].lstrip("-").isdigit() else -1
        try:
            log = (out / f"log.{r}.{i}").read_text(errors="replace")
        except OSError:
            log = ""
        runs.append(ProgramRun(programs[i].name, r, st, float(w[3]), float(w[4]),
                               parse_log(log)))
    return runs


def boot_programs(kernel: KernelImage, programs: Sequence[GuestProgram], *, rounds: int = 1,
                  timeout: float = guest.BOOT_TIMEOUT,
                  step_timeout: float = STEP_TIMEOUT) -> ProgramsResult:
    """One boot of ``kernel`` running every program ``rounds`` times, in order.  A hang is
    no program started within ``timeout`` s of qemu's start or none done for
    ``step_timeout`` s after; the runs done until then are kept."""
    why = guest.qemu_available()
    if why:
        return ProgramsResult(kernel, [], why)
    if len({p.name for p in programs}) != len(programs):
        raise UsageError("program names must be distinct")
    initrd = guest.initramfs(kernel, init=programs_init())
    with tempfile.TemporaryDirectory(prefix=f"ksmdiff-lab-prog-{kernel.name}-") as tmp:
        out = Path(tmp)
        (out / "bin").mkdir()
        for p in programs:
            shutil.copyfile(p.binary, out / "bin" / p.name)
            (out / "bin" / p.name).chmod(0o755)
        (out / SCRIPT).write_text(script(programs, rounds))
        with open(out / guest.SWAP_IMAGE, "wb") as f:
            f.truncate(guest.SWAP_MB << 20)                 # sparse
        console_path = out / "console.log"
        t0 = time.monotonic()
        timings: dict[str, float] = {}
        reason = ""
        with open(console_path, "wb") as console:
            p = guest._spawn(guest.qemu_command(kernel, initrd, out, host_tree=False),
                             console)
            if p is None:
                return ProgramsResult(kernel, [], "interrupted before the boot")
            try:
                deadline, seen = t0 + timeout, -1
                while True:
                    rc = p.poll()
                    now = time.monotonic()
                    if "started" not in timings and (out / STARTED).exists():
                        timings["started"] = now - t0
                        deadline = now + step_timeout
                    try:
                        size = (out / TIMES).stat().st_size
                    except OSError:
                        size = 0
                    if size != seen:
                        seen = size
                        if "started" in timings:
                            deadline = now + step_timeout
                    if (out / DONE).exists():
                        timings["done"] = now - t0
                        break
                    if rc is not None:
                        reason = f"qemu exited (status {rc}) before the programs were done"
                        break
                    if now > deadline:
                        reason = ("hang: " + ("a program ran for more than "
                                              f"{step_timeout:.0f} s" if "started" in timings
                                              else f"no start within {timeout:.0f} s"))
                        break
                    time.sleep(0.05)
            finally:
                guest._kill(p)
                with guest._LIVE_LOCK:
                    guest._LIVE.discard(p)
        timings["exit"] = time.monotonic() - t0
        text = console_path.read_text(errors="replace")
        if reason or "FAILED" in text:
            reason = (reason or "guest setup failed") + "; console tail:\n" + guest._tail(text)
        return ProgramsResult(kernel, read_runs(out, programs), reason, text, timings)
