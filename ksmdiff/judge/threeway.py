"""Three-way judging of one scenario: the spec's predictions, the model's allowed sets and a
kernel's observations.

* spec vs model: on the fields the spec predicts, the two must be equal
  (:func:`compare_equal`).  Where they differ only because the model allows *more* (a
  value a quiet kernel may also show: a per-CPU batch's extra reference, a reclaimed swap
  cache page) the difference is ``MODEL_WIDER`` and listed, not failed; any other
  difference is a ``DISAGREE`` with its first differing statement.
* kernel vs model: inclusion (:func:`compare`), as ``ksmdiff run`` judges it.
* a label a scenario fires in the spec counts as reached by a target (the model, a
  kernel) when that target's record after the statement agrees with the spec's prediction
  there (within the model's sets, or the kernel's values within the spec's).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Sequence

from ksmdiff.judge.compare import MISSING, Divergence, compare_equal, first_divergence
from ksmdiff.observe import ANY, Record
from ksmdiff.status import RunStatus


class SpecModel(enum.Enum):
    AGREE = "agree"
    MODEL_WIDER = "model-wider"       # equal but where the model allows more values
    DISAGREE = "disagree"
    OUT_OF_SCOPE = "out-of-scope"     # the spec's small world does not describe the scenario


def project(model: Sequence[Record], spec: Sequence[Record]) -> list[Record]:
    """The model's records restricted to the fields the spec predicts (and every page's
    ``present``, so a page one side lacks still shows)."""
    by_stmt = {r.stmt: r for r in spec}
    out = []
    for r in model:
        s = by_stmt.get(r.stmt)
        keys = set(s.fields) if s is not None else set()
        out.append(Record(r.stmt, r.line, {k: v for k, v in r.fields.items()
                                           if k in keys or k.endswith(".present")},
                          r.status, r.note))
    return out


def _within(small, big) -> bool:
    if small is MISSING or big is MISSING:
        return False
    if big is ANY:
        return True
    if small is ANY:
        return False
    return set(small) <= set(big)


@dataclass
class SpecModelVerdict:
    status: SpecModel
    first: Optional[Divergence] = None              # the first real disagreement
    wider: list = field(default_factory=list)       # [Divergence] where the model allows more

    def describe(self) -> str:
        if self.status is SpecModel.DISAGREE and self.first is not None:
            d = self.first
            return (f"spec/model disagreement at line {d.line}: {d.key}: spec predicts "
                    f"{_show(d.allowed)}, model allows {_show(d.observed)}")
        if self.status is SpecModel.MODEL_WIDER:
            return f"spec and model agree; the model allows more at {len(self.wider)} field(s)"
        return f"spec and model {self.status.value}"

    def to_json(self) -> dict:
        return {"status": self.status.value,
                "first": self.first.to_json() if self.first else None,
                "wider": [d.to_json() for d in self.wider]}


def _show(v) -> str:
    if v is ANY:
        return "any value"
    if v is MISSING:
        return "nothing"
    return "{" + ", ".join(sorted(map(str, v))) + "}"


def judge_spec_model(spec: Sequence[Record], model: Sequence[Record]) -> SpecModelVerdict:
    divs = compare_equal(spec, project(model, spec))
    real = [d for d in divs if not _within(d.allowed, d.observed)]
    wider = [d for d in divs if _within(d.allowed, d.observed)]
    if real:
        return SpecModelVerdict(SpecModel.DISAGREE, first_divergence(real), wider)
    return SpecModelVerdict(SpecModel.MODEL_WIDER if wider else SpecModel.AGREE, None, wider)


def reached(labels: Sequence[tuple], spec: Sequence[Record], other: Sequence[Record],
            other_is_kernel: bool) -> set:
    """The labels (fired per spec record, ``labels[i]`` for ``spec[i]``) whose statement
    ``other`` agrees with the spec at."""
    by_stmt = {r.stmt: r for r in other}
    out = set()
    for labs, s in zip(labels, spec):
        if not labs:
            continue
        o = by_stmt.get(s.stmt)
        if o is None or o.status != RunStatus.OK:
            continue
        ok = True
        for key, vals in s.fields.items():
            got = o.fields.get(key, MISSING)
            if got is MISSING:
                if other_is_kernel:
                    continue            # a field the kernel cannot report
                ok = False
                break
            if not (_within(got, vals) if other_is_kernel else _within(vals, got)):
                ok = False
                break
        if ok:
            out.update(labs)
    return out
