"""One ``ksmdiff run``: scenarios × kernel versions, each run on the model or the kernel and
judged.  Behaviour only; the results are plain data (:class:`CellResult`) that the CLI
prints and the JSON run record serialises.

``--kernel VERSION`` means the model of that version: its expects are judged on the model's
allowed sets.  ``--kernel host`` means the running kernel, through the probe: its expects
are judged on what the kernel showed, and its stream is compared with the model of the
host's version; a mismatch is re-run (alone) before it is reported and classified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from ksmdiff.internal.audit import pure
from ksmdiff.judge import (ENVIRONMENT, FAILED, ExpectResult, Mismatch, compare,
                           evaluate_expects, first_divergence, tally)
from ksmdiff.judge.classify import classify
from ksmdiff.observe import ABSENT, ANY, NOT_RUN, OK, UNSUPPORTED, FieldsView, Record
from ksmdiff.scenario import ast as A
from ksmdiff.scenario.printer import format_statement
from ksmdiff.status import RunStatus
from ksmdiff.versions import KernelVersion

HOST = "host"
RERUNS = 2


@dataclass
class CellResult:
    """One scenario on one version (model) or on the host kernel."""

    scenario: A.Scenario
    target: str                     # "5.4" (model) or "host" (kernel)
    version: KernelVersion | None
    status: RunStatus
    reason: str = ""
    expects: list[ExpectResult] = field(default_factory=list)
    records: Sequence[Record] = ()
    model_records: Sequence[Record] = ()
    mismatch: Mismatch | None = None
    violations: Sequence = ()
    ksm_reuse: bool = False          # a fault reused a page that was KSM just before
    # --repeat: (stmt, key, value, never|sometimes|always) for each alternative the model allows
    frequencies: list = field(default_factory=list)

    @property
    def failed(self) -> list[ExpectResult]:
        return [e for e in self.expects if e.status == FAILED]

    @property
    def ok(self) -> bool:
        return (self.status in (OK, UNSUPPORTED) and not self.failed and self.mismatch is None
                and not self.violations)

    def to_json(self) -> dict:
        return {
            "source": self.scenario.source, "title": self.scenario.title,
            "target": self.target, "version": str(self.version) if self.version else None,
            "status": self.status, "reason": self.reason, "ksm_reuse": self.ksm_reuse,
            "expects": [e.to_json() for e in self.expects],
            "mismatch": self.mismatch.to_json() if self.mismatch else None,
            "violations": [getattr(v, "__dict__", str(v)) for v in self.violations],
            "observations": [r.to_json() for r in self.records],
            **({"model_observations": [r.to_json() for r in self.model_records]}
               if self.model_records else {}),
            **({"frequencies": [{"stmt": s, "key": k, "value": v, "seen": f}
                                for s, k, v, f in self.frequencies]} if self.frequencies else {}),
        }


def ksm_reuse_seen(scn: A.Scenario, records: Sequence[Record]) -> bool:
    """Did a write or fill keep a frame that was KSM in the record before (reuse_ksm_page)?
    Reads only the pages each write or fill touched."""
    sizes: dict[tuple[str, str], int] = {}      # (process, region) -> pages, as of now
    by_stmt = {r.stmt: r for r in records}
    prev: Record | None = None
    for i, s in enumerate(scn.statements):
        if isinstance(s, A.Mmap):
            sizes[(s.proc, s.region)] = s.npages
        elif isinstance(s, A.Fork):
            for (proc, region), n in list(sizes.items()):
                if proc == s.proc:
                    sizes[(s.child, region)] = n
        r = by_stmt.get(i)
        if r is None:
            continue
        if isinstance(s, (A.Write, A.ForceWrite, A.Fill)) and prev is not None:
            n = sizes.get((s.proc, s.target.region), 0)
            if isinstance(r.fields, FieldsView) and isinstance(prev.fields, FieldsView):
                if _reused_ksm_runs(r.fields, prev.fields, f"{s.proc}/{s.target.region}",
                                    s.target.indices(n)):
                    return True
                prev = r
                continue
            for idx in s.target.indices(n):
                base = f"{s.proc}/{s.target.region}[{idx}]."
                values = r.get(base + "fault")
                if values is None or values is ANY or "reused" not in values:
                    continue
                was = prev.get(base + "ksm")
                if was is not None and was is not ANY and True in was:
                    return True
        prev = r
    return False


def run_model_cell(scn: A.Scenario, version: KernelVersion, mutant: str | None = None) -> CellResult:
    from ksmdiff.model import run_model
    with pure():
        run = run_model(scn, version, mutant=mutant)
        if run.status != OK:
            return CellResult(scn, str(version), version, run.status, run.reason)
        expects = evaluate_expects(scn, run.records, version)
        return CellResult(scn, str(version), version, OK, "", expects, run.records,
                          violations=run.violations, ksm_reuse=ksm_reuse_seen(scn, run.records))


def run_host_cells(scenarios: Sequence[A.Scenario], *, repeat: int = 1,
                   batch: bool | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   allow_global: bool = False, models: Sequence | None = None
                   ) -> list[CellResult]:
    """``allow_global``: scenarios with ``ksm unmerge-all`` may write run=2 (it unmerges
    every KSM page of the machine); otherwise they are not run.  ``models``: each
    scenario's ``run_model`` on the host's version, when the caller has it already."""
    from ksmdiff.probe import host_version, is_root, run_kernel

    version = host_version()
    if not is_root():
        return [CellResult(s, HOST, version, NOT_RUN,
                           "not root: kernel results not run (PFNs, kpageflags and the KSM "
                           "knobs need root)") for s in scenarios]
    ahead = None
    if models is None and _model_ahead_pays(scenarios):
        # the model's runs do not depend on the kernel's: a forked worker makes them while
        # the kernel runs (forked before the runner starts any thread)
        from ksmdiff.internal.ahead import Ahead
        ahead = Ahead(lambda scns: _models_of(scns, version))
        ahead.submit(list(scenarios))
    try:
        runs = [run_kernel(list(scenarios), batch=batch, progress=progress,
                           allow_global=allow_global)
                for _ in range(max(1, repeat))]
        if ahead is not None:
            models = ahead.result()
    finally:
        if ahead is not None:
            ahead.close()
    return kernel_cells(scenarios, version, HOST, runs,
                        lambda scn: run_kernel([scn], batch=False,
                                               allow_global=allow_global)[0], models=models)


# Page-statements (the pages the processes have mapped, mmap'd or inherited, summed over
# the statements, an upper bound of the model's work) from which making the model's runs in
# a worker beside the kernel run pays for the fork and for sending the records back: a
# corpus of small scenarios stays in one process.
AHEAD_PAGE_STATEMENTS = 1 << 16


def _model_ahead_pays(scenarios: Sequence[A.Scenario]) -> bool:
    work = 0
    for scn in scenarios:
        pages: dict[str, int] = {}
        for stmt in scn.statements:
            if isinstance(stmt, A.Mmap):
                pages[stmt.proc] = pages.get(stmt.proc, 0) + stmt.npages
            elif isinstance(stmt, A.Fork):
                pages[stmt.child] = pages.get(stmt.proc, 0)
            work += sum(pages.values())
            if work >= AHEAD_PAGE_STATEMENTS:
                return True
    return False


def _models_of(scenarios: Sequence[A.Scenario], version: KernelVersion) -> list:
    from ksmdiff.model import run_model
    with pure():
        return [run_model(scn, version) for scn in scenarios]


def kernel_cells(scenarios: Sequence[A.Scenario], version: KernelVersion, target: str,
                 runs: Sequence[Sequence], rerun: Callable[[A.Scenario], object],
                 models: Sequence | None = None) -> list[CellResult]:
    """Judge kernel runs (``runs[k][i]``: run k of scenario i) against the model of
    ``version``: expects on the kernel's records, the stream compared with the model's, a
    divergence re-run ``RERUNS`` times alone (``rerun(scenario)``) and classified.  Serves
    the host kernel and the lab's kernels (whose re-runs happened in their VM).
    ``models[i]``: ``run_model(scenarios[i], version)`` made beforehand (a fuzz batch's, in
    a worker while the kernel ran); None: made here."""
    cells: list[CellResult] = []
    for i, scn in enumerate(scenarios):
        kernel_runs = [r[i] for r in runs]
        first = kernel_runs[0]
        if models is not None:
            model = models[i]
        else:
            [model] = _models_of([scn], version)
        if first.status != OK or model.status != OK:
            status = first.status if first.status != OK else model.status
            reason = first.reason or model.reason
            cells.append(CellResult(scn, target, version, status, reason,
                                    records=first.records))
            continue
        with pure():
            expects = evaluate_expects(scn, first.records, version)
            divs_per_run = [compare(model.records, k.records) if k.status == OK else None
                            for k in kernel_runs]
        cell = CellResult(scn, target, version, OK, "", expects, first.records, model.records,
                          ksm_reuse=ksm_reuse_seen(scn, first.records))
        bad = [(j, d) for j, d in enumerate(divs_per_run) if d]
        if bad:
            j, divs = bad[0]
            div = first_divergence(divs)
            assert div is not None
            reruns = []
            for _ in range(RERUNS):
                again = rerun(scn)
                with pure():
                    reruns.append(compare(model.records, again.records)
                                  if again.status == OK else None)
            kind = classify(div, reruns)
            stmt = scn.statements[div.stmt] if div.stmt < len(scn.statements) else None
            cell.mismatch = Mismatch(scn.source, scn.title, str(version),
                                     format_statement(stmt) if stmt is not None else "",
                                     div, kind, RERUNS,
                                     sum(1 for r in reruns if r and any(
                                         d.stmt == div.stmt and d.key == div.key for d in r)))
            cell.records = kernel_runs[j].records
            if kind == ENVIRONMENT:
                cell.status = ENVIRONMENT
        if len(runs) > 1:
            t = tally([k.records for k in kernel_runs if k.status == OK])
            cell.frequencies = t.frequencies(model.records)
        cells.append(cell)
    return cells


def _reused_ksm_runs(now: FieldsView, before: FieldsView, prefix: str, indices) -> bool:
    """:func:`ksm_reuse_seen` for one statement on two history views, by runs: a page of
    ``indices`` whose fault allows ``reused`` now and whose ``ksm`` allowed True before.
    (A fill of 32,768 pages is a few runs of each column, not 32,768 reads.)"""
    faults, ksm = now.runs((prefix, "fault")), before.runs((prefix, "ksm"))
    ranges: list = []
    for i in indices:
        if ranges and ranges[-1][1] + 1 == i:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    for lo, hi in ranges:
        for a, b, fv in faults.segments(lo, hi):
            if fv is ABSENT or fv is ANY or "reused" not in fv:
                continue
            for _x, _y, kv in ksm.segments(a, b):
                if kv is not ABSENT and kv is not ANY and True in kv:
                    return True
    return False
