"""What ``ksmdiff report`` reads: run records (``ksmdiff run --json``), prove results
(``ksmdiff prove --json``) and benchmark results (``bench/*.py --json``), told apart by
their ``kind`` (a run record has none) and each checked by its own reader."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

from ksmdiff.errors import InputError, Location


class Kind(enum.Enum):
    RUN = "run"
    PROVE = "prove"
    BENCH = "bench"


@dataclass
class Inputs:
    runs: list = field(default_factory=list)        # (path, record)
    proofs: list = field(default_factory=list)      # (path, prove result)
    benches: list = field(default_factory=list)     # (path, bench result)


def kind_of(data, path: str) -> Kind:
    k = data.get("kind", Kind.RUN.value) if isinstance(data, dict) else None
    try:
        return Kind(k)
    except ValueError:
        raise InputError(f"unknown kind of result {k!r}", Location(path, 1, 1),
                         expected="a run record, a prove result (prove --json) or a "
                                  "benchmark result (bench/*.py --json)") from None


def load_one(path: str) -> tuple[Kind, dict]:
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", Location(path, 1, 1)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not JSON: {e.msg}", Location(path, e.lineno, e.colno)) from None
    kind = kind_of(data, path)
    if kind is Kind.RUN:
        from ksmdiff.reports.record import check
    elif kind is Kind.PROVE:
        from ksmdiff.reports.prove_record import check
    else:
        from ksmdiff.reports.bench_record import check
    check(data, path)
    return kind, data


def load_all(paths) -> Inputs:
    """Every file read and checked before anything is written."""
    out = Inputs()
    for p in paths:
        kind, data = load_one(p)
        {Kind.RUN: out.runs, Kind.PROVE: out.proofs, Kind.BENCH: out.benches}[kind].append(
            (p, data))
    return out
