"""``--kernel lab:NAME``: run scenarios on lab kernels, one boot per kernel, judged against
the model of each kernel's own version.

Kernels boot in parallel, at most one per CPU.  A kernel missing from the store, or no
qemu, gives ``not-run`` cells saying why; a panic, hang or dead agent gives
``environment`` cells carrying the console tail; neither is ever a pass.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

from ksmdiff.lab import guest, store
from ksmdiff.observe import ENVIRONMENT, NOT_RUN
from ksmdiff.probe.result import KPF_KSM_NOTE, KernelRun
from ksmdiff.scenario import ast as A
from ksmdiff.session import RERUNS, CellResult, kernel_cells

PREFIX = "lab:"


def is_lab(target: str) -> bool:
    return target.startswith(PREFIX)


def lab_name(target: str) -> str:
    return store.check_name(target[len(PREFIX):])


def missing_reason(name: str) -> str:
    from ksmdiff.lab.fetch import DISTROS
    how = (f"ksmdiff lab fetch {name}" if name in DISTROS
           else f"ksmdiff lab build --source PATH {name}")
    what = "not fetched" if name in DISTROS else "not built"
    return f"{what}: no kernel {name} in {store.lab_dir()} (run '{how}')"


def make_session(scenarios: Sequence[A.Scenario], kernel: store.KernelImage):
    """The boot's scenarios, compiled on the host for the guest's driver.  A guest runs one
    scenario at a time: nothing else runs there, so a reap between scenarios gives exact
    counters, and batches gained nothing under TCG (corpus on 5.4.59: 23 s alone against
    34 s in batches, where a kernel without /proc/PID/ksm_stat or tracepoints left lazily
    removed stable nodes of one group to be charged to the next: pages_shared -1 at a first
    scan)."""
    from ksmdiff.lab.drive import LabSession
    return LabSession(scenarios, kernel.version, RERUNS)


def cells_from_boot(scenarios: Sequence[A.Scenario], target: str,
                    res: guest.BootResult) -> list[CellResult]:
    k = res.kernel
    doc = res.result
    if doc is None:
        return [CellResult(s, target, k.version, ENVIRONMENT, f"kernel {k.release}: {res.reason}")
                for s in scenarios]
    runs: list[KernelRun] = list(doc["runs"])
    if len(runs) != len(scenarios):
        return [CellResult(s, target, k.version, ENVIRONMENT,
                           f"the guest returned {len(runs)} results for {len(scenarios)} "
                           "scenarios") for s in scenarios]
    pending = {int(i): list(v) for i, v in doc.get("reruns", {}).items()}
    index = {id(s): i for i, s in enumerate(scenarios)}

    def rerun(scn: A.Scenario) -> KernelRun:
        queue = pending.get(index[id(scn)])
        if queue:
            return queue.pop(0)
        return KernelRun(scn, k.version, NOT_RUN, "no re-run came back from the guest")

    cells = kernel_cells(scenarios, k.version, target, [runs], rerun)
    if doc.get("kpageflags_ksm_on_plain_anon"):
        # ok runs say why 'ksm' is absent; a cell that is not ok still gets the kernel's
        # note once
        note = f"kernel {k.release}: {KPF_KSM_NOTE}"
        for c in cells:
            if "81401cebfc15" not in c.reason:
                c.reason = note + (f"; {c.reason}" if c.reason else "")
    return cells


BOOT_TIMES = "boot-times.json"   # beside the kernel store: each kernel's last boot, seconds


def _boot_times_path():
    return store.lab_dir().parent / BOOT_TIMES


def boot_order(todo: list[tuple[str, store.KernelImage]]) -> list[tuple[str, store.KernelImage]]:
    """The boots longest first, by each kernel's last boot (unknown ones first): with more
    kernels than CPUs, a long boot started last would run alone at the end (5 kernels on
    2 CPUs in the order given: 6.12, the longest, started after the four others)."""
    import json
    try:
        known = json.loads(_boot_times_path().read_text())
    except (OSError, ValueError):
        known = {}

    def last(k: store.KernelImage) -> float:
        v = known.get(k.name) if isinstance(known, dict) else None
        return float(v) if isinstance(v, (int, float)) and v > 0 else float("inf")
    return sorted(todo, key=lambda tk: -last(tk[1]))     # stable: else as given


def _record_boot_times(times: dict[str, float]) -> None:
    import json
    from ksmdiff.internal.atomic import write_text_atomically
    path = _boot_times_path()
    try:
        known = json.loads(path.read_text())
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    known.update({k: round(v, 1) for k, v in times.items()})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, json.dumps(known, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass                         # an order hint only


def run_lab(scenarios: Sequence[A.Scenario], targets: Sequence[str], *,
            timeout: float = guest.BOOT_TIMEOUT,
            on_boot: Callable[[guest.BootResult], None] | None = None,
            jobs: int | None = None) -> dict[str, list[CellResult]]:
    """Cells for every ``lab:NAME`` target, one boot per kernel, in parallel."""
    scenarios = list(scenarios)
    out: dict[str, list[CellResult]] = {}
    todo: list[tuple[str, store.KernelImage]] = []
    no_qemu = guest.qemu_available()
    for t in targets:
        name = lab_name(t)
        try:
            k = store.get_kernel(name)
        except Exception as e:       # a damaged store entry: say so in every cell
            out[t] = [CellResult(s, t, None, NOT_RUN, f"damaged: {e}") for s in scenarios]
            continue
        if k is None:
            out[t] = [CellResult(s, t, None, NOT_RUN, missing_reason(name)) for s in scenarios]
        elif no_qemu:
            out[t] = [CellResult(s, t, k.version, NOT_RUN, f"no qemu: {no_qemu}")
                      for s in scenarios]
        else:
            todo.append((t, k))
    if not todo:
        return out
    guest.reset()
    workers = max(1, min(len(todo), jobs or os.cpu_count() or 1))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ksmdiff-lab")
    times: dict[str, float] = {}
    try:
        futs: dict[str, Future] = {
            t: pool.submit(guest.boot_driver, k, make_session(scenarios, k), timeout=timeout)
            for t, k in boot_order(todo)}
        for t, f in futs.items():
            res = f.result()
            if on_boot:
                on_boot(res)
            out[t] = cells_from_boot(scenarios, t, res)
            if res.result is not None and "exit" in res.timings:
                times[res.kernel.name] = res.timings["exit"]
        _record_boot_times(times)
    finally:
        guest.kill_all()             # interrupted: no qemu outlives the run
        pool.shutdown(wait=True, cancel_futures=True)
        guest.reset()                # this run's boots are over: later boots may start
    return {t: out[t] for t in targets}


class Background:
    """run_lab in a thread, so the host kernel and the models run meanwhile."""

    def __init__(self, scenarios, targets, **kw):
        self.result: dict[str, list[CellResult]] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(scenarios, targets), kwargs=kw,
                                       name="ksmdiff-lab-main", daemon=True)
        self.thread.start()

    def _run(self, scenarios, targets, **kw) -> None:
        try:
            self.result = run_lab(scenarios, targets, **kw)
        except BaseException as e:
            self.error = e

    def join(self) -> dict[str, list[CellResult]]:
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def cancel(self) -> None:
        guest.kill_all()
        self.thread.join(timeout=30)
        if not self.thread.is_alive():
            guest.reset()            # a run that had already ended would leave the stop set
