"""Three-way runs: every scenario's cell (the model of a version, or the host kernel with the
model of its version, as ``ksmdiff run`` makes them) is judged against the spec's
predictions as well, and the branch labels reached are tallied per target.

Behaviour over plain data: the cells come in made (ksmdiff/session.py), this module only
replays the spec and judges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from ksmdiff.gen.specmap import OutOfScope, replay, world_for
from ksmdiff.judge.threeway import SpecModel, SpecModelVerdict, judge_spec_model, reached
from ksmdiff.status import RunStatus
from ksmdiff.versions import Era


@dataclass
class ThreeWayCell:
    cell: object                                   # session.CellResult
    era: Optional[Era]
    verdict: SpecModelVerdict
    labels: set = field(default_factory=set)       # fired in the spec
    model_reached: set = field(default_factory=set)
    kernel_reached: set = field(default_factory=set)
    spec_violations: tuple = ()
    why: str = ""

    @property
    def failed(self) -> bool:
        c = self.cell
        return (self.verdict.status is SpecModel.DISAGREE or bool(self.spec_violations)
                or bool(c.failed) or c.mismatch is not None or bool(c.violations))

    def to_json(self) -> dict:
        return {**self.cell.to_json(), "spec": self.verdict.to_json(),
                "spec_violations": [list(v) for v in self.spec_violations],
                "labels": sorted(self.labels), "model_reached": sorted(self.model_reached),
                "kernel_reached": sorted(self.kernel_reached), "spec_note": self.why}


def on_kernel(target: str) -> bool:
    """A cell of a real kernel (the host, or a lab kernel 'lab:NAME' under qemu) rather
    than of a model version."""
    return target == "host" or target.startswith("lab:")


def judge_cell(cell, spec_model=None, spec_run=None) -> ThreeWayCell:
    """``cell.records`` are the kernel's (host) or the model's; ``cell.model_records`` the
    model's when the cell ran on a kernel.  ``spec_run``: ``replay`` of the cell's scenario
    in its era's spec world (a SpecRun, or the OutOfScope it raised), made beforehand."""
    if cell.version is None or cell.status != RunStatus.OK:
        return ThreeWayCell(cell, None, SpecModelVerdict(SpecModel.OUT_OF_SCOPE),
                            why=f"not run: {cell.status}")
    era = Era.of(cell.version)
    kernel = on_kernel(cell.target)
    model_records = cell.model_records if kernel else cell.records
    try:
        world = world_for(era, spec_model, version=cell.version)
        if world.facts:
            spec_run = None                 # made in the era's world, not this version's
        if isinstance(spec_run, OutOfScope):
            # (returned, not raised: a raise would tie the exception, its traceback, this
            # frame and the cell into a cycle that only the cyclic collector frees)
            return ThreeWayCell(cell, era, SpecModelVerdict(SpecModel.OUT_OF_SCOPE),
                                why=spec_run.why)
        run = spec_run if spec_run is not None else replay(world, cell.scenario)
    except OutOfScope as e:
        return ThreeWayCell(cell, era, SpecModelVerdict(SpecModel.OUT_OF_SCOPE), why=e.why)
    verdict = judge_spec_model(run.records, model_records)
    labels = {lab for labs in run.labels for lab in labs}
    tw = ThreeWayCell(cell, era, verdict, labels, spec_violations=run.violations)
    tw.model_reached = reached(run.labels, run.records, model_records, False)
    if kernel:
        tw.kernel_reached = reached(run.labels, run.records, cell.records, True)
    return tw


def coverage(cells: Sequence[ThreeWayCell], spec_model=None) -> dict:
    """{target: {era value: {"labels": [...], "corpus": [...], "model": [...],
    "kernel": [...]}}}: every label of the era, and those the corpus fires in the spec,
    the model and the kernel agree with."""
    from ksmdiff.gen.search import _era_labels
    out: dict = {}
    for tw in cells:
        if tw.era is None:
            continue
        target = tw.cell.target
        row = out.setdefault(target, {}).setdefault(tw.era.value, None)
        if row is None:
            row = out[target][tw.era.value] = {
                "labels": _era_labels(world_for(tw.era, spec_model)),
                "corpus": set(), "model": set(), "kernel": set()}
        row["corpus"] |= tw.labels
        row["model"] |= tw.model_reached
        row["kernel"] |= tw.kernel_reached
    for target in out.values():
        for row in target.values():
            for k in ("corpus", "model", "kernel"):
                row[k] = sorted(row[k])
    return out


def coverage_table(cov: dict) -> str:
    lines = []
    for target, eras in cov.items():
        for era, row in eras.items():
            kernel = on_kernel(target)
            lines.append(f"coverage on {target} ({era}): corpus {len(row['corpus'])}, model "
                         f"{len(row['model'])}" + (f", kernel {len(row['kernel'])}" if kernel
                                                   else "") + f" of {len(row['labels'])} labels")
            for lab in row["labels"]:
                marks = ["x" if lab in row["corpus"] else ".",
                         "x" if lab in row["model"] else "."]
                if kernel:
                    marks.append("x" if lab in row["kernel"] else ".")
                lines.append(f"  {lab:24} " + "  ".join(marks))
            lines.append("  (columns: corpus, model" + (", kernel)" if kernel else ")"))
    return "\n".join(lines)


def failure_signature(tw: ThreeWayCell) -> set:
    """What failed, independent of line numbers: for reduction to keep "the same failure"."""
    from ksmdiff.observe import split_page_key
    out = set()

    def fname(key):
        return key if key.startswith("counter.") or "/" not in key else split_page_key(key)[3]
    if tw.verdict.status is SpecModel.DISAGREE and tw.verdict.first is not None:
        out.add(f"spec/model {fname(tw.verdict.first.key)}")
    out |= {f"spec violates {p}" for _i, p in tw.spec_violations}
    c = tw.cell
    out |= {f"expect {e.text.split(' on ')[0].split()[-1]}" for e in c.failed}
    if c.mismatch is not None:
        out.add(f"mismatch {fname(c.mismatch.first.key)} ({c.mismatch.classification})")
    out |= {f"model invariant {getattr(v, 'name', v)}" for v in c.violations}
    return out
