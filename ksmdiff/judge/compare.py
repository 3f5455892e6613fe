"""Comparing two observation streams by allowed-set inclusion.

``compare(model, kernel)`` is one-sided, like herd's checker: every value the kernel showed
must be in the model's allowed set; an allowed value that never shows up is not a failure
(``tally`` counts never / sometimes / always over repeats).  ``compare_equal`` is the strict
form used between the Z3-predicted sets and the model's sets, which must be equal.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ksmdiff.observe import ABSENT, ANY, OK, FieldsView, Record, changes

MISSING = "<absent>"


@dataclass(frozen=True)
class Divergence:
    """One field where the streams disagree, at statement ``stmt`` (source line ``line``)."""

    stmt: int
    line: int
    key: str
    allowed: Any            # the reference side's allowed set (or MISSING)
    observed: Any           # the other side's values (or MISSING)

    def describe(self) -> str:
        text = (f"line {self.line}: {self.key}: kernel showed {_show(self.observed)}, "
                f"model allows {_show(self.allowed)}")
        if self.key.endswith(".frame"):
            # (observe: a frame's label is its first page in page order)
            text += " (a frame is named by the first page that maps it)"
        return text

    def to_json(self) -> dict:
        return {"stmt": self.stmt, "line": self.line, "key": self.key,
                "allowed": _jsonable(self.allowed), "observed": _jsonable(self.observed)}


def _jsonable(v: Any) -> Any:
    if v is ANY:
        return "*"
    if v == MISSING:
        return None
    return sorted(v, key=lambda x: (type(x).__name__, str(x)))


def _show(v: Any) -> str:
    if v is ANY:
        return "any value"
    if v == MISSING:
        return "no such field"
    vals = sorted(v, key=lambda x: (type(x).__name__, str(x)))
    text = ", ".join("none" if x is None else str(x).lower() if isinstance(x, bool) else str(x)
                     for x in vals)
    return text if len(vals) == 1 else "{" + text + "}"


def _page_of(key: str) -> str | None:
    return None if key.startswith("counter.") else key.rsplit(".", 1)[0]


def _diverges(key: str, allowed: Any, observed: Any) -> tuple[Any, Any] | None:
    """(allowed, observed) if ``key`` diverges, with :data:`ABSENT` for a field a side
    lacks; None if not.  A page is there when its ``present`` field is: a page one side has
    and the other lacks diverges on ``present``; any other field the kernel does not report
    is skipped, and so is one the model does not have."""
    if key.endswith(".present") and not key.startswith("counter."):
        if observed is ABSENT and allowed is not ABSENT:
            return allowed, MISSING
        if allowed is ABSENT and observed is not ABSENT:
            return MISSING, observed
    if observed is ABSENT or allowed is ABSENT or allowed is ANY:
        return None
    if observed is ANY or not set(observed) <= set(allowed):
        return allowed, observed
    return None


def compare(reference: Sequence[Record], observed: Sequence[Record]) -> list[Divergence]:
    """Every field of ``observed`` outside ``reference``'s allowed set, in stream order.

    A page the reference has but ``observed`` lacks (or the reverse) diverges on its
    ``present`` key; any other field ``observed`` does not report is skipped (a kernel
    that cannot report a field leaves it absent).  Records whose status is not ``ok`` are
    not compared (they are results of their own: unsupported, environment, not-run).

    Incremental: a field is judged again only where either stream changed it since the
    last pair of records compared (:func:`ksmdiff.observe.changes`); a divergence that
    persists is reported at every record it persists through, as a whole-record
    comparison would.  Within a record, the keys missing from ``observed`` come first
    (sorted), then the others in ``observed``'s field order."""
    ref_changes = list(changes(reference))
    ref_pos = {r.stmt: i for i, (r, _k) in enumerate(ref_changes)}
    ref_done = -1                     # index of the last reference record compared
    pending: set[str] = set()         # keys changed since the last pair compared
    active: dict[str, tuple[Any, Any]] = {}
    out: list[Divergence] = []
    for obs, obs_keys in changes(observed):
        pending.update(obs_keys)
        j = ref_pos.get(obs.stmt)
        if j is None or obs.status != OK or ref_changes[j][0].status != OK:
            continue
        ref = ref_changes[j][0]
        if j > ref_done:
            for _r, keys in ref_changes[ref_done + 1:j + 1]:
                pending.update(keys)
        else:                          # the reference went back: judge every field again
            pending.update(ref.fields)
            pending.update(active)
        ref_done = j
        rget, oget = ref.fields.get, obs.fields.get
        for key in pending:
            d = _diverges(key, rget(key, ABSENT), oget(key, ABSENT))
            if d is None:
                active.pop(key, None)
            else:
                active[key] = d
        pending.clear()
        if not active:
            continue
        missing = sorted(k for k, (_a, o) in active.items() if o == MISSING)
        rank = _key_rank(obs.fields)
        rest = sorted((k for k, (_a, o) in active.items() if o != MISSING), key=rank)
        for key in missing + rest:
            allowed, values = active[key]
            out.append(Divergence(obs.stmt, obs.line, key, allowed, values))
    return out


def _key_rank(fields) -> Any:
    """A key's position in ``fields``' order (a History view's first-appearance order)."""
    if isinstance(fields, FieldsView):
        return fields.rank
    order = {k: i for i, k in enumerate(fields)}
    return lambda k: order.get(k, len(order))


def compare_equal(a: Sequence[Record], b: Sequence[Record]) -> list[Divergence]:
    """Fields whose allowed sets differ between ``a`` and ``b`` (both directions)."""
    b_by_stmt = {r.stmt: r for r in b}
    out: list[Divergence] = []
    for ra in a:
        rb = b_by_stmt.get(ra.stmt)
        if rb is None:
            out.append(Divergence(ra.stmt, ra.line, "<record>", MISSING, MISSING))
            continue
        for key in sorted(set(ra.fields) | set(rb.fields)):
            va, vb = ra.fields.get(key, MISSING), rb.fields.get(key, MISSING)
            if va != vb:
                out.append(Divergence(ra.stmt, ra.line, key, va, vb))
    return out


def first_divergence(divs: Iterable[Divergence]) -> Divergence | None:
    return min(divs, key=lambda d: d.stmt, default=None)


@dataclass(frozen=True)
class Tally:
    """How often each allowed value showed up over ``runs`` kernel runs."""

    runs: int
    counts: dict            # (stmt, key, value) -> number of runs that showed it

    def frequency(self, stmt: int, key: str, value: Any) -> str:
        n = self.counts.get((stmt, key, value), 0)
        if n == 0:
            return "never"
        return "always" if n == self.runs else "sometimes"

    def frequencies(self, reference: Sequence[Record]) -> list[tuple[int, str, Any, str]]:
        """(stmt, key, value, never|sometimes|always) for every value of every multi-valued
        allowed set of ``reference``: which of the model's alternatives the kernel showed."""
        out = []
        for r in reference:
            for key, values in r.fields.items():
                if values is ANY or len(values) < 2:
                    continue
                for v in sorted(values, key=lambda x: (type(x).__name__, str(x))):
                    out.append((r.stmt, key, v, self.frequency(r.stmt, key, v)))
        return out

    def unseen(self, reference: Sequence[Record]) -> list[tuple[int, str, Any]]:
        """Allowed values (of multi-valued sets) that no run showed."""
        return [(s, k, v) for s, k, v, f in self.frequencies(reference) if f == "never"]


def tally(runs: Sequence[Sequence[Record]]) -> Tally:
    counts: Counter = Counter()
    for records in runs:
        seen = set()
        for r in records:
            for key, values in r.fields.items():
                if values is ANY:
                    continue
                for v in values:
                    seen.add((r.stmt, key, v))
        counts.update(seen)
    return Tally(len(runs), dict(counts))
