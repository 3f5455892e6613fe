"""The reader of ``ksmdiff prove --json`` results for the reports: per model, era and
property the status, and each counterexample as data (docs/reports.md).

The statuses are the :class:`ksmdiff.status.ProofStatus` words the prover writes; they are
read back into that enum here, so a report never needs the prover (nor Z3) to draw them.
"""

from __future__ import annotations


from ksmdiff.errors import InputError, Location
from ksmdiff.reports.header import check_header, check_rows
from ksmdiff.status import ProofStatus

KIND = "prove"
FORMAT = 1
ROW_REQUIRED = ("model", "era", "property", "status", "method", "bound", "mutant",
                "counterexample", "note", "trace", "counterexample_text")




def check(rec, path: str = "<prove result>") -> None:
    where = Location(path, 1, 1)
    check_header(rec, where, KIND, FORMAT, "prove result", "ksmdiff prove --json",
                 ("started", "mutants", "seconds", "results"))
    check_rows(rec["results"], "results", ROW_REQUIRED, where)
    for i, r in enumerate(rec["results"]):
        try:
            ProofStatus(r["status"])
        except ValueError:
            raise InputError(f"results[{i}]: status {r['status']!r}", where,
                             expected=", ".join(s.value for s in ProofStatus)) from None
        t = r["trace"]
        if t is not None and not (isinstance(t, dict) and isinstance(t.get("steps"), list)):
            raise InputError(f"results[{i}]: trace has no steps", where)


def status(row: dict) -> ProofStatus:
    return ProofStatus(row["status"])


def eras(rec: dict) -> list[str]:
    return list(dict.fromkeys(r["era"] for r in rec["results"]))


def counterexamples(rec: dict) -> list[dict]:
    """The rows that carry a counterexample, in the order the prover found them."""
    return [r for r in rec["results"] if r["trace"] is not None]
