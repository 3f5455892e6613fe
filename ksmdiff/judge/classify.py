"""Classifying, de-duplicating and ranking kernel-vs-model mismatches.

A mismatch is re-run before it is reported: *reproducible* when every re-run diverges on
the same field, *flaky* when some re-run does not, *environment* when a run could not
observe at all (a bounded wait ran out, a missing feature).  Mismatches of many scenarios
are folded by signature (the statement kind, the field, the allowed and observed values),
so one model bug seen by twenty scenarios is one row with twenty witnesses, and ranked:
reproducible before flaky before environment, then by how many scenarios show it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ksmdiff.judge.compare import Divergence, _jsonable
from ksmdiff.observe import split_page_key
from ksmdiff.status import Reproducibility


REPRODUCIBLE = Reproducibility.REPRODUCIBLE
FLAKY = Reproducibility.FLAKY
ENVIRONMENT = Reproducibility.ENVIRONMENT
_RANK = {REPRODUCIBLE: 0, FLAKY: 1, ENVIRONMENT: 2}


def classify(first: Divergence, reruns: Sequence[Sequence[Divergence] | None]) -> Reproducibility:
    """``reruns[i]`` is the divergence list of re-run i, or None when it could not run."""
    if any(r is None for r in reruns):
        return ENVIRONMENT
    same = [any(d.stmt == first.stmt and d.key == first.key for d in r) for r in reruns]
    return REPRODUCIBLE if all(same) else FLAKY


@dataclass(frozen=True)
class Mismatch:
    source: str
    title: str
    version: str
    statement: str            # the diverging statement, as printed
    first: Divergence
    classification: str
    reruns: int
    reproduced: int

    def signature(self) -> tuple:
        key = self.first.key
        fieldname = key if key.startswith("counter.") else split_page_key(key)[3]
        verb = self.statement.split(":", 1)[-1].split()[0] if self.statement else ""
        return (self.classification, verb, fieldname, repr(_jsonable(self.first.allowed)),
                repr(_jsonable(self.first.observed)))

    def to_json(self) -> dict:
        return {"source": self.source, "title": self.title, "version": self.version,
                "statement": self.statement, "first": self.first.to_json(),
                "classification": self.classification, "reruns": self.reruns,
                "reproduced": self.reproduced}


@dataclass
class MismatchGroup:
    signature: tuple
    witnesses: list[Mismatch] = field(default_factory=list)

    @property
    def classification(self) -> str:
        return self.signature[0]


def rank(mismatches: Sequence[Mismatch]) -> list[MismatchGroup]:
    groups: dict[tuple, MismatchGroup] = {}
    for m in mismatches:
        groups.setdefault(m.signature(), MismatchGroup(m.signature())).witnesses.append(m)
    for g in groups.values():     # the smallest witness first: the easiest to read
        g.witnesses.sort(key=lambda m: (m.first.stmt, m.source))
    return sorted(groups.values(),
                  key=lambda g: (_RANK[g.classification], -len(g.witnesses), g.signature))
