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

from ksmdiff.observe import (ABSENT, ANY, OK, EMPTY_RUNS, FieldsView, IndexLabel, Record,
                             Runs, changed_runs, column_of, runs_from_points, value_at)

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


def _diverges(key: str, allowed: Any, observed: Any) -> tuple[Any, Any] | None:
    """(allowed, observed) if ``key`` diverges, with :data:`ABSENT` for a field a side
    lacks; None if not.  A page is there when its ``present`` field is: a page one side has
    and the other lacks diverges on ``present``; any other field the kernel does not report
    is skipped, and so is one the model does not have."""
    return _diverges_field(key.endswith(".present") and not key.startswith("counter."),
                           allowed, observed)


def _diverges_field(present: bool, allowed: Any, observed: Any) -> tuple[Any, Any] | None:
    """:func:`_diverges` for a field that is (``present``) or is not a page's ``present``."""
    if present:
        if observed is ABSENT and allowed is not ABSENT:
            return allowed, MISSING
        if allowed is ABSENT and observed is not ABSENT:
            return MISSING, observed
    if observed is ABSENT or allowed is ABSENT or allowed is ANY:
        return None
    if observed is ANY or not set(observed) <= set(allowed):
        return allowed, observed
    return None


class _Columns:
    """A record's columns as runs: a History view's own, or a whole record's (a plain
    dict of keys, made runs once)."""

    def __init__(self, rec: Record):
        self._fields = rec.fields
        self._made: dict | None = None

    def _whole(self) -> dict:
        """A whole record's columns, made runs the first time they are asked for."""
        if self._made is None:
            points: dict = {}
            for key, v in self._fields.items():
                got = column_of(key)
                if got is not None:
                    points.setdefault(got[0], {})[got[1]] = v
            self._made = {c: Runs(runs_from_points(p)) for c, p in points.items()}
        return self._made

    def runs(self, col: tuple) -> Runs:
        f = self._fields
        if isinstance(f, FieldsView):
            return f.runs(col)
        return self._whole().get(col, EMPTY_RUNS)

    def columns(self) -> list:
        f = self._fields
        if isinstance(f, FieldsView):
            return list(f.columns())
        return list(self._whole())

    def last_index(self, col: tuple) -> int:
        runs = self.runs(col).runs
        return runs[-1][1] if runs else -1


def _pieces(ref: Runs, obs: Runs, lo: int, hi: int):
    """(first, last, reference raw value, observed raw value) over [lo, hi], split where
    either side's runs split (gaps as ABSENT): a merge-walk of the two run boundaries."""
    a = ref.segments(lo, hi)
    b = obs.segments(lo, hi)
    x = next(a, None)
    y = next(b, None)
    while x is not None and y is not None:
        s = x[0] if x[0] > y[0] else y[0]
        e = x[1] if x[1] < y[1] else y[1]
        yield s, e, x[2], y[2]
        if x[1] == e:
            x = next(a, None)
        else:
            x = (e + 1, x[1], x[2])
        if y[1] == e:
            y = next(b, None)
        else:
            y = (e + 1, y[1], y[2])


def _merged(ranges: list) -> list:
    """(lo, hi) ranges sorted and merged where they touch or overlap."""
    out: list = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def compare(reference: Sequence[Record], observed: Sequence[Record]) -> list[Divergence]:
    """Every field of ``observed`` outside ``reference``'s allowed set, in stream order.

    A page the reference has but ``observed`` lacks (or the reverse) diverges on its
    ``present`` key; any other field ``observed`` does not report is skipped (a kernel
    that cannot report a field leaves it absent).  Records whose status is not ``ok`` are
    not compared (they are results of their own: unsupported, environment, not-run).

    Incremental and by runs: a field is judged again only where either stream changed it
    since the last pair of records compared (:func:`ksmdiff.observe.changed_runs`), and
    a changed range of pages is judged run against run: the two streams' runs are walked
    side by side, and a piece where both hold one value each is judged once for all its
    pages (a piece where a label follows the page index on one side and not the other is
    judged page by page: the two agree on one page at most).  So the cost is the runs
    that changed plus the divergences reported.  A divergence that persists is reported
    at every record it persists through, as a whole-record comparison would.  Within a
    record, the keys missing from ``observed`` come first (sorted), then the others in
    ``observed``'s field order."""
    ref_changes = list(changed_runs(reference))
    ref_pos = {r.stmt: i for i, (r, _p, _c) in enumerate(ref_changes)}
    ref_done = -1                     # index of the last reference record compared
    pending: dict = {}                # column -> [(lo, hi), ...] changed since last pair
    pending_c: set = set()            # counter keys changed since the last pair
    active: dict[str, tuple[Any, Any]] = {}
    active_at: dict = {}              # column -> {index: key} of the active page keys
    out: list[Divergence] = []
    for obs, obs_pages, obs_counters in changed_runs(observed):
        for col, ranges in obs_pages.items():
            pending.setdefault(col, []).extend(ranges)
        pending_c.update(obs_counters)
        j = ref_pos.get(obs.stmt)
        if j is None or obs.status != OK or ref_changes[j][0].status != OK:
            continue
        ref = ref_changes[j][0]
        rcols, ocols = _Columns(ref), _Columns(obs)
        if j > ref_done:
            for _r, pages, counters in ref_changes[ref_done + 1:j + 1]:
                for col, ranges in pages.items():
                    pending.setdefault(col, []).extend(ranges)
                pending_c.update(counters)
        else:                          # the reference went back: judge every field again
            for col in set(rcols.columns()) | set(ocols.columns()) | set(active_at):
                last = max(rcols.last_index(col), ocols.last_index(col),
                           max(active_at.get(col) or [-1]))
                if last >= 0:
                    pending.setdefault(col, []).append((0, last))
            pending_c.update(k for k in ref.fields if k.startswith("counter."))
            pending_c.update(k for k in active if k.startswith("counter."))
        ref_done = j
        for col, ranges in pending.items():
            _judge_column(col, _merged(ranges), rcols.runs(col), ocols.runs(col),
                          active, active_at)
        pending.clear()
        rget, oget = ref.fields.get, obs.fields.get
        for key in pending_c:
            d = _diverges(key, rget(key, ABSENT), oget(key, ABSENT))
            if d is None:
                active.pop(key, None)
            else:
                active[key] = d
        pending_c.clear()
        if not active:
            continue
        missing = sorted(k for k, (_a, o) in active.items() if o == MISSING)
        rank = _key_rank(obs.fields)
        rest = sorted((k for k, (_a, o) in active.items() if o != MISSING), key=rank)
        for key in missing + rest:
            allowed, values = active[key]
            out.append(Divergence(obs.stmt, obs.line, key, allowed, values))
    return out


def _judge_column(col: tuple, ranges: list, ref: Runs, obs: Runs, active: dict,
                  active_at: dict) -> None:
    """Judge the pages ``ranges`` of one column, run against run, into ``active`` (key ->
    (allowed, observed)) and ``active_at`` (column -> {index: key})."""
    prefix, fname = col
    present = fname == "present"
    at = active_at.get(col)
    for lo, hi in ranges:
        for s, e, rv, ov in _pieces(ref, obs, lo, hi):
            if type(rv) is not IndexLabel and type(ov) is not IndexLabel:
                d = _diverges_field(present, rv, ov)
                if d is None:
                    if at:
                        _clear(at, active, s, e)
                    continue
                if at is None:
                    at = active_at[col] = {}
                for i in range(s, e + 1):
                    key = at.get(i)
                    if key is None:
                        key = at[i] = f"{prefix}[{i}].{fname}"
                    active[key] = d
                continue
            if rv is ABSENT or ov is ABSENT or rv is ANY or rv == ov:
                # (a label is a frame's, never ``present``'s: a side without the field, or
                # the same label on both, is no divergence)
                if at:
                    _clear(at, active, s, e)
                continue
            for i in range(s, e + 1):         # (they agree on one page at most)
                d = _diverges_field(present, value_at(rv, i), value_at(ov, i))
                key = None if at is None else at.get(i)
                if d is None:
                    if key is not None:
                        del at[i]
                        active.pop(key, None)
                    continue
                if at is None:
                    at = active_at[col] = {}
                if key is None:
                    key = at[i] = f"{prefix}[{i}].{fname}"
                active[key] = d


def _clear(at: dict, active: dict, lo: int, hi: int) -> None:
    """Drop the active keys of pages lo..hi of one column."""
    if hi - lo + 1 < len(at):
        for i in range(lo, hi + 1):
            key = at.pop(i, None)
            if key is not None:
                active.pop(key, None)
    else:
        for i in [i for i in at if lo <= i <= hi]:
            active.pop(at.pop(i), None)


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
