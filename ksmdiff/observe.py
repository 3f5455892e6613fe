"""Observation records (docs/run-record.md): data only, shared by the model, the probe and
the judge.

One :class:`Record` follows every *action* statement of a scenario (expects are judged
against the record of the last action before them).  A record maps field keys to the set
of values allowed there:

* page fields ``P/R[i].FIELD`` for every mapped page of every live process, FIELD one of
  ``present`` (bool), ``swapped`` (bool), ``frame`` (the frame's label, e.g.
  ``"A/buf[0]"``, or ``"Z"`` for the shared zero page; ``None`` when not present),
  ``ksm`` (bool), ``mapcount`` (int),
  ``exclusive`` (bool, pagemap bit 56), ``content`` (``"0x5a"``, ``"0x5a+0x01"``,
  ``"zero"``, ``"zero+0x01"``; ``None`` when the kernel could not read it), and for the
  pages a ``read``/``write``/``fill`` touched in this step ``fault`` (``"reused"``: the
  page's last frame stayed; ``"copied"``: a new frame replaced the last one, the zero page
  included; ``"fresh"``: the page had no frame before; ``"retry"``: model only, a
  transient);
* counter fields ``counter.NAME``: the change of NAME since the scenario began (int), only
  for counters the kernel has; per-process fields ``counter.NAME@P``: the change of P's
  /proc/PID/ksm_stat value NAME since P was created, and ``counter.prctl_merge@P`` (bool)
  what P's prctl(PR_GET_MEMORY_MERGE) returns.

A page that is unmapped (or whose process exited) has no fields.  A field a kernel cannot
report is absent, never guessed.

A frame's label is the name of its *first page* in canonical page order (processes in
creation order, regions in mmap order, pages by index): ``B/buf[3].frame == "A/buf[0]"``
says B's page 3 maps the frame that A's page 0 maps, and A's page 0 is the first page
mapping it.  The label is a function of which pages share a frame and nothing else, so
the model's and a kernel's records compare by equality, and a kernel reusing a freed PFN
changes nothing.  It is also stable: a frame appearing, going or gaining pages after its
first leaves every other frame's label alone; only a frame whose first page leaves it (or
that gains a page before its first) is relabelled.  (A label numbered by first-use order,
``F0``, ``F1``, ..., was the earlier form: one new frame early in page order renumbered
nearly every page after it, so a record carried almost every page.  A page's name rather
than its place in page order, so that mapping or unmapping another region relabels
nothing, and a label reads as a page the scenario names.)  Whether a page kept its frame
across a step is what ``fault`` says.

On the kernel every set has one element; the model gives every value a quiet kernel may
show.  ``ANY`` means the model allows every value (e.g. a counter moved by ksmd churn).

How a stream is stored (:class:`History`): a record is read by key, but held as *runs*.
A scenario's statements act on ranges of pages (fill, merge, fork, madvise), so one field
of one region's pages (a :class:`Column`) is mostly a few runs of consecutive pages with
one value each, even when every page changed; and an unshared page's label is its own
name, a fork-shared page's its parent's page of the same index, so a region of them is one
run whose value follows the index (:class:`IndexLabel`, ``"A/buf[i]"``).  A record's
changes are run updates (:class:`DeltaView`), the judge walks two streams' runs side by
side, and the JSON record writes the runs; the per-key reads (``fields.get(key)``, the
expects, the reports) read the runs.  LTP ksm01 at 3 x 32,768 pages changes nearly every
page at nearly every statement, yet a few runs per region.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from ksmdiff.status import RunStatus

PAGE_FIELDS = ("present", "swapped", "frame", "ksm", "mapcount", "exclusive", "content",
               "fault")
FAULT_OUTCOMES = ("reused", "copied", "fresh", "retry")


# Record status values (RunStatus).
OK = RunStatus.OK
UNSUPPORTED = RunStatus.UNSUPPORTED
ENVIRONMENT = RunStatus.ENVIRONMENT
NOT_RUN = RunStatus.NOT_RUN


class _Any:
    """Every value is allowed."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __contains__(self, _value: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "ANY"

    def __reduce__(self):
        return (_Any, ())


ANY = _Any()
Allowed = Any  # frozenset[value] | ANY


def page_key(proc: str, region: str, index: int, fieldname: str) -> str:
    return f"{proc}/{region}[{index}].{fieldname}"


def page_name(proc: str, region: str, index: int) -> str:
    """A page as a frame label names it (a frame's first page): ``"A/buf[3]"``."""
    return f"{proc}/{region}[{index}]"


def split_page_key(key: str) -> tuple[str, str, int, str]:
    """``"A/buf[3].ksm"`` -> ``("A", "buf", 3, "ksm")``."""
    proc, _, rest = key.partition("/")
    page, _, fieldname = rest.rpartition(".")
    region, _, idx = page.partition("[")
    return proc, region, int(idx.rstrip("]")), fieldname


def counter_key(name: str) -> str:
    return f"counter.{name}"


class _Absent:
    """A field that is not there (an unmapped page, the fault of a page not touched)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self):
        return (_Absent, ())


ABSENT = _Absent()


class IndexLabel:
    """The frame label of a run of pages that each name a page at a fixed distance from
    their own index: page ``i`` of the run has the label ``"PREFIX[i+offset]"``.

    An unshared page's frame is labelled with the page's own name (``"A/m0[i]"``, offset
    0), and B's page ``i`` of a fork-shared COW region with A's page ``i``: across a
    region each page has its own label, yet the run of them is one value, so a record
    (and a comparison of two) costs the runs of pages, not the pages.  Interned
    (:func:`index_label`): equal labels are one object.  A page's value is
    :meth:`at` (the one-element set a per-page reader sees)."""

    __slots__ = ("prefix", "offset")

    def __init__(self, prefix: str, offset: int):
        self.prefix, self.offset = prefix, offset

    def at(self, index: int) -> frozenset:
        i = index + self.offset
        if i < 0:
            raise ValueError(f"frame label {self.text()} has no page at index {index}")
        return frozenset((f"{self.prefix}[{i}]",))

    def reads(self, index: int) -> Optional[frozenset]:
        """What page ``index`` would read, or None where the label would name no page (a
        probe of whether a run may grow by a page)."""
        i = index + self.offset
        return None if i < 0 else frozenset((f"{self.prefix}[{i}]",))

    def text(self) -> str:
        """As the JSON record writes it: ``"A/m0[i]"``, ``"A/m0[i+5]"``, ``"A/m0[i-5]"``."""
        if self.offset == 0:
            return f"{self.prefix}[i]"
        return f"{self.prefix}[i{self.offset:+d}]"

    def __eq__(self, other: object) -> bool:
        return (self is other or isinstance(other, IndexLabel)
                and other.prefix == self.prefix and other.offset == self.offset)

    def __hash__(self) -> int:
        return hash((IndexLabel, self.prefix, self.offset))

    def __repr__(self) -> str:
        return f"IndexLabel({self.text()!r})"

    def __reduce__(self):
        return (index_label, (self.prefix, self.offset))


_INDEX_LABELS: dict = {}


def index_label(prefix: str, offset: int) -> IndexLabel:
    """The one :class:`IndexLabel` object for (prefix, offset)."""
    key = (prefix, offset)
    got = _INDEX_LABELS.get(key)
    if got is None:
        got = _INDEX_LABELS[key] = IndexLabel(prefix, offset)
    return got


_INDEX_TEXT = re.compile(r"^(?P<prefix>[^\[\]]+)\[i(?:(?P<sign>[+-])(?P<off>[0-9]+))?\]$")


def parse_index_label(text: str) -> Optional[IndexLabel]:
    """``"A/m0[i+5]"`` -> IndexLabel; None for any other text (a concrete label)."""
    m = _INDEX_TEXT.match(text)
    if m is None:
        return None
    off = int(m["off"] or 0)
    return index_label(m["prefix"], -off if m["sign"] == "-" else off)


def value_at(v: Any, index: int) -> Any:
    """A run's value as page ``index`` reads it (an :class:`IndexLabel` made concrete)."""
    return v.at(index) if type(v) is IndexLabel else v


def _same(a: Any, b: Any) -> bool:
    """One representation (two runs holding them may merge as they are)?  ABSENT, ANY
    and IndexLabels are single objects per value; a frozenset never equals an IndexLabel
    (:func:`differ` compares what pages read)."""
    return a is b or (a is not ABSENT and b is not ABSENT and a == b)


def _one_label(v: Any) -> Optional[tuple[str, int]]:
    """(prefix, index) of a one-element set holding a page name ``"P/R[k]"``; else None."""
    if type(v) is not frozenset or len(v) != 1:
        return None
    for label in v:
        break
    if type(label) is not str or not label.endswith("]"):
        return None
    b = label.find("[")
    idx = label[b + 1:-1]
    if b <= 0 or not idx.isdigit() or "/" not in label[:b]:
        return None
    return label[:b], int(idx)


def differ(lo: int, hi: int, a: Any, b: Any) -> list[tuple[int, int]]:
    """The pieces of [lo, hi] where a page reads different values from raw run values
    ``a`` and ``b`` (either may be an IndexLabel).  Two runs of one state may split it
    differently (pages X0 X0 X1 X2 are a constant run and a run of IndexLabel, or one
    page more or less of each), so runs are compared by what the pages read: an
    IndexLabel and a constant agree on one page at most."""
    if a is b:
        return []
    la, lb = type(a) is IndexLabel, type(b) is IndexLabel
    if not la and not lb:
        return [] if (a is not ABSENT and b is not ABSENT and a == b) else [(lo, hi)]
    if la and lb:
        return [] if a == b else [(lo, hi)]
    label, const = (a, b) if la else (b, a)
    one = _one_label(const)
    if one is None or one[0] != label.prefix:
        return [(lo, hi)]
    i = one[1] - label.offset               # the one page where they agree
    if not lo <= i <= hi:
        return [(lo, hi)]
    return [r for r in ((lo, i - 1), (i + 1, hi)) if r[0] <= r[1]]


def _push(lst: list, a: int, b: int, v: Any) -> None:
    """Append run (a, b, v) to ``lst``, merging it into the last run where the pages
    read on: one value, or a one-page constant continuing an IndexLabel (or the other
    way round), or two one-page labels one index apart that make an IndexLabel."""
    if lst:
        la, lb, lv = lst[-1]
        if lb + 1 == a:
            if _same(lv, v):
                lst[-1] = (la, b, v)
                return
            tl, tv = type(lv) is IndexLabel, type(v) is IndexLabel
            if tl and not tv and a == b and lv.reads(a) == v:
                lst[-1] = (la, b, lv)
                return
            if tv and not tl and la == lb and v.reads(la) == lv:
                lst[-1] = (la, b, v)
                return
            if not tl and not tv and la == lb and a == b:
                one, two = _one_label(lv), _one_label(v)
                if (one is not None and two is not None and one[0] == two[0]
                        and two[1] == one[1] + 1):
                    lst[-1] = (la, b, index_label(one[0], one[1] - la))
                    return
    lst.append((a, b, v))


Column = tuple  # (page prefix "P/R", field name): one field of one region's pages


def column_of(key: str) -> Optional[tuple[Column, int]]:
    """``"A/m0[3].frame"`` -> ((``"A/m0"``, ``"frame"``), 3); None for a counter key.
    ValueError for a key that is neither."""
    if key.startswith("counter."):
        return None
    b = key.find("[")
    e = key.find("].", b)
    if b <= 0 or e < 0 or "/" not in key[:b]:
        raise ValueError(f"not a field key: {key!r}")
    idx = key[b + 1:e]
    if not idx.isdigit():
        raise ValueError(f"not a field key (page index {idx!r}): {key!r}")
    return (key[:b], key[e + 2:]), int(idx)


class Runs:
    """One column's values at one record: runs of consecutive page indexes with one value
    each (an allowed set, ANY, or an :class:`IndexLabel`), ascending, disjoint and maximal
    (two adjacent runs never hold one value); a page in no run has no such field.
    Immutable: a :class:`History` keeps one per record in which the column changed."""

    __slots__ = ("lo", "runs", "count")

    def __init__(self, runs: list):
        self.runs = runs                       # [(lo, hi, value), ...]
        self.lo = [r[0] for r in runs]         # (for bisect)
        self.count = sum(hi - lo + 1 for lo, hi, _v in runs)

    def value(self, index: int) -> Any:
        """The raw value (IndexLabel not made concrete) at ``index``; ABSENT if none."""
        j = bisect_right(self.lo, index) - 1
        if j >= 0:
            lo, hi, v = self.runs[j]
            if index <= hi:
                return v
        return ABSENT

    def at(self, index: int) -> Any:
        v = self.value(index)
        return v.at(index) if type(v) is IndexLabel else v

    def segments(self, lo: int, hi: int) -> Iterator[tuple[int, int, Any]]:
        """The pieces of [lo, hi], in order: (first, last, raw value), gaps as ABSENT."""
        runs = self.runs
        j = max(bisect_right(self.lo, lo) - 1, 0)
        pos = lo
        n = len(runs)
        while j < n and pos <= hi:
            a, b, v = runs[j]
            if b < pos:
                j += 1
                continue
            if a > hi:
                break
            if a > pos:
                yield pos, a - 1, ABSENT
                pos = a
            e = b if b < hi else hi
            yield pos, e, v
            pos = e + 1
            j += 1
        if pos <= hi:
            yield pos, hi, ABSENT

    def overlay(self, updates: Iterable[tuple[int, int, Any]]) -> tuple["Runs", list]:
        """These runs with ``updates`` ((lo, hi, value) ascending and disjoint; value
        ABSENT: the pages lose the field) laid over them, and the pieces where a page
        reads a new value, as (lo, hi, new value) runs.  One pass over both: the cost is
        the column's runs plus the updates, not pages."""
        out: list = []
        changed: list = []
        old = iter(self.runs)
        cur = next(old, None)
        last = None
        for a, b, v in updates:
            if a > b or (last is not None and a <= last):
                raise ValueError(f"runs out of order, empty or overlapping at [{a}, {b}]")
            last = b
            while cur is not None and cur[1] < a:
                _push(out, *cur)
                cur = next(old, None)
            if cur is not None and cur[0] < a:
                _push(out, cur[0], a - 1, cur[2])
                cur = (a, cur[1], cur[2])
            pos = a
            while cur is not None and cur[0] <= b:
                s, e = cur[0], min(cur[1], b)
                if pos < s and v is not ABSENT:
                    _push(changed, pos, s - 1, v)
                for x, y in differ(s, e, cur[2], v):
                    _push(changed, x, y, v)
                pos = e + 1
                if cur[1] > b:
                    cur = (b + 1, cur[1], cur[2])
                    break
                cur = next(old, None)
            if pos <= b and v is not ABSENT:
                _push(changed, pos, b, v)
            if v is not ABSENT:
                _push(out, a, b, v)
        while cur is not None:
            _push(out, *cur)
            cur = next(old, None)
        if not changed:
            return self, changed
        return Runs(out), changed


EMPTY_RUNS = Runs([])


def runs_from_points(points: Mapping[int, Any]) -> list:
    """Per-page values ``points`` (index -> value, ABSENT for a field that went) of one
    column as runs, ascending and merged as :func:`_push` merges them: pages with one
    value are one run, and pages each naming a page at one distance from their own index
    (``"A/m0[i]"``: an unshared page's own name) one :class:`IndexLabel` run."""
    out: list = []
    lo = hi = -2
    last = None
    keys = list(points)
    order = sorted(keys)
    # (points mostly come in page order: then each is taken as it is, not looked up)
    items = points.items() if order == keys else ((i, points[i]) for i in order)
    for i, v in items:
        if i == hi + 1 and (v is last or _same(v, last)):
            hi = i                          # (the common case: one value goes on)
            continue
        if lo >= 0:
            _push(out, lo, hi, last)
        lo = hi = i
        last = v
    if lo >= 0:
        _push(out, lo, hi, last)
    return out


def runs_in_order(runs: Iterable[tuple[int, int, Any]]) -> list:
    """Runs (lo, hi, value) of one column, ascending and disjoint, merged as
    :func:`runs_from_points` merges the points they hold: what it gives for them, without
    a point per page."""
    out: list = []
    lo = hi = -2
    last = None
    for a, b, v in runs:
        if a == hi + 1 and (v is last or _same(v, last)):
            hi = b                          # (as runs_from_points groups equal points)
            continue
        if lo >= 0:
            _push(out, lo, hi, last)
        lo, hi, last = a, b, v
    if lo >= 0:
        _push(out, lo, hi, last)
    return out


class History:
    """The fields of every record of one stream, stored as what changed.

    Page fields are held per column (one field of one region's pages, :data:`Column`) as
    :class:`Runs`: runs of consecutive pages holding one value, where a frame label may
    name each page's own index (:class:`IndexLabel`).  A column's history is one flat
    list ``[position, Runs, position, Runs, ...]`` with a new :class:`Runs` only at the
    records in which the column changed; a record's changes are run updates.  So a stream
    costs its runs of changes, not pages x statements: LTP ksm01 fills 32,768 pages of a
    region with one byte (one run), merges them into one KSM frame (one run), and each
    unshared page's label is its own name (one run for the region).

    Counter fields (and any key that is not a page's) are held per key: a flat
    ``[position, value, ...]`` list each (a record has a few dozen).  Allowed sets are interned (a stream holds few
    distinct values).  Reading one field is O(log changes + log runs) (:meth:`at`); a
    :class:`FieldsView` reads the record's whole state, a :class:`DeltaView` what changed
    in it, each by key or by runs (:meth:`FieldsView.runs`, :meth:`DeltaView.page_runs`)."""

    def __init__(self) -> None:
        self._cols: dict[Column, list] = {}     # column -> [pos, Runs, pos, Runs, ...]
        self._hist: dict[str, list] = {}        # counter key -> [pos, value, ...]
        self._n = 0                              # records committed
        self._live = 0                           # fields present in the latest record
        self._prefixes: dict[str, int] = {}      # page prefix -> first-appearance rank
        self._counters: dict[str, int] = {}      # counter key -> first-appearance rank
        self._interned: dict = {}

    def __getstate__(self) -> tuple:
        """Pickled (a fuzz worker's model runs, sent back in bulk): the histories only;
        the interning tables are rebuilt when asked."""
        return (self._cols, self._hist, self._n, self._live, self._prefixes, self._counters)

    def __setstate__(self, state: tuple) -> None:
        (self._cols, self._hist, self._n, self._live, self._prefixes,
         self._counters) = state
        self._interned = {}

    def intern(self, key: str, v: Any) -> Any:
        """One shared object per (field name, value): {True} and {1} are equal sets, so the
        field name keeps a bool field's set apart from an int field's."""
        if v is ANY or v is ABSENT or type(v) is IndexLabel:
            return v
        return self._interned.setdefault((key[key.rfind(".") + 1:], v), v)

    # -- committing
    def commit(self, changes: Mapping[str, Any], *, shared: bool = False) -> "FieldsView":
        """``shared``: the caller already shares one object per value (no interning)."""
        return self.commit_delta(changes, shared=shared)[0]

    def commit_delta(self, changes: Mapping[str, Any], *,
                     shared: bool = False) -> tuple["FieldsView", "DeltaView"]:
        """Commit one record's changes given per key (key -> allowed set, or ABSENT for a
        field that went), and return the record's whole state and what changed in it
        (the keys whose value differs from the previous record's).  Page keys are turned
        into runs here (:meth:`commit_points`)."""
        points: dict = {}
        counters: dict = {}
        for key, v in changes.items():
            col = column_of(key)
            if col is None:
                counters[key] = v
            else:
                c, i = col
                got = points.get(c)
                if got is None:
                    got = points[c] = {}
                got[i] = v
        return self.commit_points(points, counters, shared=shared)

    def commit_points(self, points: Mapping[Column, Mapping[int, Any]],
                      counters: Mapping[str, Any] = {}, *,
                      shared: bool = False) -> tuple["FieldsView", "DeltaView"]:
        """Commit per-page changes grouped by column (column -> {index: value}); they
        are made runs here (:func:`runs_from_points`)."""
        return self.commit_runs({c: runs_from_points(pts) for c, pts in points.items()
                                 if pts},
                                counters, shared=shared)

    def commit_runs(self, page_runs: Mapping[Column, Iterable[tuple[int, int, Any]]],
                    counters: Mapping[str, Any] = {}, *,
                    shared: bool = False) -> tuple["FieldsView", "DeltaView"]:
        """Commit one record's changes: per column, runs (lo, hi, value) ascending and
        disjoint (value ABSENT: the pages lose the field; pages each naming a page at
        one distance from their own index best one :class:`IndexLabel` run), and counter
        keys -> value.  Runs that restate what the pages read are no change."""
        pos = self._n
        cols = self._cols
        live = self._live
        intern = None if shared else self.intern
        delta_runs: dict = {}
        for col, ups in page_runs.items():
            if intern is not None:
                name = "." + col[1]
                ups = [(a, b, intern(name, v)) for a, b, v in ups]
            h = cols.get(col)
            old = EMPTY_RUNS if h is None else h[-1]
            new, changed = old.overlay(ups)
            if not changed:
                continue
            if col[0] not in self._prefixes:
                self._prefixes[col[0]] = len(self._prefixes)
            if h is None:
                cols[col] = [pos, new]
            else:
                h += (pos, new)
            live += new.count - old.count
            delta_runs[col] = changed
        hist = self._hist
        changed_keys = []
        for key, v in counters.items():
            if intern is not None:
                v = intern(key, v)
            h = hist.get(key)
            if h is None:
                if v is ABSENT:
                    continue
                hist[key] = [pos, v]
                self._counters.setdefault(key, len(self._counters))
                live += 1
            else:
                last = h[-1]
                if last is v or last == v:
                    continue
                if last is ABSENT:
                    live += 1
                elif v is ABSENT:
                    live -= 1
                h += (pos, v)
            changed_keys.append(key)
        self._live = live
        self._n += 1
        return FieldsView(self, pos, live), DeltaView(self, pos, delta_runs, changed_keys)

    def commit_full(self, fields: Mapping[str, Any]) -> tuple["FieldsView", dict]:
        """Commit a whole record's fields: the changes are worked out here (a field of the
        previous record missing from ``fields`` went).  Returns (view, changes)."""
        prev = self._n - 1
        changes: dict = {}
        for key, v in fields.items():
            if self.at(key, prev) != v:
                changes[key] = v
        if prev >= 0:
            for key in self.keys_at(prev):
                if key not in fields:
                    changes[key] = ABSENT
        return self.commit(changes), changes

    # -- reading
    def runs_at(self, col: Column, pos: int) -> Runs:
        """The column at record ``pos`` (EMPTY_RUNS: no such field on any page)."""
        h = self._cols.get(col)
        if h is None or pos < 0:
            return EMPTY_RUNS
        i = _last_at(h, pos)
        return EMPTY_RUNS if i < 0 else h[i + 1]

    def columns(self) -> Iterable[Column]:
        return self._cols.keys()

    def at(self, key: str, pos: int) -> Any:
        col = column_of(key)
        if col is not None:
            return self.runs_at(col[0], pos).at(col[1])
        h = self._hist.get(key)
        if h is None or pos < 0:
            return ABSENT
        if h[-2] <= pos:                         # (_last_at's first case, inline)
            return h[-1]
        i = _last_at(h, pos)
        return ABSENT if i < 0 else h[i + 1]

    def changed_at(self, key: str, pos: int) -> bool:
        """Did ``key`` change in record ``pos``?"""
        if pos < 0:
            return False
        col = column_of(key)
        if col is not None:
            h = self._cols.get(col[0])
            if h is None:
                return False
            i = _last_at(h, pos)
            if i < 0 or h[i] != pos:
                return False
            before = EMPTY_RUNS if i == 0 else h[i - 1]
            return h[i + 1].at(col[1]) != before.at(col[1])
        h = self._hist.get(key)
        if h is None:
            return False
        i = _last_at(h, pos)
        return i >= 0 and h[i] == pos

    def rank(self, key: str) -> tuple:
        """The key's place in the order a record's fields are read (:meth:`keys_at`):
        pages first, by region in first-appearance order, index, then field in
        PAGE_FIELDS order; then counters in first-appearance order."""
        col = column_of(key)
        if col is None:
            got = self._counters.get(key)
            return (1, len(self._counters) if got is None else got, 0, 0, key)
        (prefix, fname), idx = col
        got = self._prefixes.get(prefix)
        return (0, len(self._prefixes) if got is None else got, idx, _field_rank(fname),
                fname)

    def keys_at(self, pos: int) -> Iterator[str]:
        """Every field key of record ``pos``, in :meth:`rank` order."""
        by_prefix: dict = {}
        for col in self._cols:
            by_prefix.setdefault(col[0], []).append(col[1])
        for prefix in sorted(by_prefix, key=self._prefixes.__getitem__):
            names = sorted(by_prefix[prefix], key=lambda f: (_field_rank(f), f))
            pages: dict[int, list] = {}
            for fname in names:
                for lo, hi, _v in self.runs_at((prefix, fname), pos).runs:
                    for i in range(lo, hi + 1):
                        got = pages.get(i)
                        if got is None:
                            pages[i] = [fname]
                        else:
                            got.append(fname)
            for i in sorted(pages):
                head = f"{prefix}[{i}]."
                for fname in pages[i]:
                    yield head + fname
        for key, h in self._hist.items():
            i = _last_at(h, pos)
            if i >= 0 and h[i + 1] is not ABSENT:
                yield key


def _field_rank(fname: str) -> int:
    try:
        return PAGE_FIELDS.index(fname)
    except ValueError:
        return len(PAGE_FIELDS)


def _last_at(h: list, pos: int) -> int:
    """The index in a history ``h`` (``[position, value, ...]``, positions ascending) of
    the last change at or before ``pos``; negative if none."""
    n = len(h)
    if h[n - 2] <= pos:                          # (reads of the latest records)
        return n - 2
    lo, hi = 0, (n >> 1) - 1                     # the change is one of those before the last
    while lo < hi:
        mid = (lo + hi) >> 1
        if h[2 * mid] <= pos:
            lo = mid + 1
        else:
            hi = mid
    return 2 * lo - 2


class DeltaView(Mapping):
    """The changes of one record of a :class:`History` (read-only; History.commit_runs):
    per column the runs whose value changed (:meth:`page_runs`), and the counter keys
    that changed.  Read by key it is the mapping key -> new value (:data:`ABSENT` for a
    field that went); iterating it spells out every page's keys, which costs pages: a
    run-aware reader (the judge, the JSON writer) takes :meth:`page_runs` instead."""

    __slots__ = ("_h", "_pos", "_runs", "_counters", "_lo")

    def __init__(self, history: History, pos: int, page_runs: dict, counter_keys: list):
        self._h, self._pos = history, pos
        self._runs = page_runs                   # column -> [(lo, hi, value), ...]
        self._counters = tuple(counter_keys)
        self._lo: dict = {}                      # column -> [lo, ...] (for bisect)

    def page_runs(self) -> Mapping[Column, list]:
        """column -> the changed runs (lo, hi, new raw value), ascending."""
        return self._runs

    def counter_keys(self) -> tuple:
        return self._counters

    def _value(self, key: str) -> Any:
        col = column_of(key)
        if col is None:
            return self._h.at(key, self._pos) if key in self._counters else None
        c, i = col
        runs = self._runs.get(c)
        if runs is None:
            return None
        lo = self._lo.get(c)
        if lo is None:
            lo = self._lo[c] = [r[0] for r in runs]
        j = bisect_right(lo, i) - 1
        if j < 0 or runs[j][1] < i:
            return None
        return value_at(runs[j][2], i)

    def __getitem__(self, key: str) -> Any:
        v = self._value(key)
        if v is None:
            raise KeyError(key)
        return v

    def get(self, key: str, default: Any = None) -> Any:
        v = self._value(key)
        return default if v is None else v

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._value(key) is not None

    def __iter__(self) -> Iterator[str]:
        for (prefix, fname), runs in self._runs.items():
            for lo, hi, _v in runs:
                for i in range(lo, hi + 1):
                    yield f"{prefix}[{i}].{fname}"
        yield from self._counters

    def __len__(self) -> int:
        return (sum(hi - lo + 1 for runs in self._runs.values() for lo, hi, _v in runs)
                + len(self._counters))

    def keys(self):  # (distinct keys)
        return list(self)

    def items(self):
        out = []
        for (prefix, fname), runs in self._runs.items():
            for lo, hi, v in runs:
                for i in range(lo, hi + 1):
                    out.append((f"{prefix}[{i}].{fname}", value_at(v, i)))
        at, pos = self._h.at, self._pos
        out += [(k, at(k, pos)) for k in self._counters]
        return out

    def __repr__(self) -> str:
        return f"DeltaView({dict(self.items())!r})"


class FieldsView(Mapping):
    """The fields of one record of a :class:`History` (read-only): by key
    (``view.get("A/m0[3].frame")``), or a column's runs (:meth:`runs`)."""

    __slots__ = ("_h", "_pos", "_len")

    def __init__(self, history: History, pos: int, length: int):
        self._h, self._pos, self._len = history, pos, length

    def runs(self, col: Column) -> Runs:
        return self._h.runs_at(col, self._pos)

    def columns(self) -> Iterable[Column]:
        """Every column some record of the stream has (a column of this record may be
        empty)."""
        return self._h.columns()

    def __getitem__(self, key: str) -> Any:
        v = self._h.at(key, self._pos)
        if v is ABSENT:
            raise KeyError(key)
        return v

    def get(self, key: str, default: Any = None) -> Any:
        v = self._h.at(key, self._pos)
        return default if v is ABSENT else v

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._h.at(key, self._pos) is not ABSENT

    def __iter__(self) -> Iterator[str]:
        return self._h.keys_at(self._pos)

    def __len__(self) -> int:
        return self._len

    def rank(self, key: str) -> tuple:
        return self._h.rank(key)

    def __repr__(self) -> str:
        return f"FieldsView({dict(self)!r})"


# The per-process field (``proc_counter_key(P, PRCTL_MERGE)``) holding MMF_VM_MERGE_ANY as
# prctl(PR_GET_MEMORY_MERGE) returns it (bool), on kernels with prctl merge.
PRCTL_MERGE = "prctl_merge"


def proc_counter_key(proc: str, name: str) -> str:
    """A per-process counter (/proc/PID/ksm_stat of ``proc``): ``counter.NAME@P``.  In the
    ``counter.`` namespace, so everything that walks a record's pages skips it."""
    return f"counter.{name}@{proc}"


def proc_abs_counter_key(proc: str, name: str) -> str:
    """The value of a per-process counter as /proc/PID/ksm_stat shows it (not the change
    since the process was created): ``counter.NAME@P=``, for ``expect counter P NAME =N``."""
    return f"counter.{name}@{proc}="


@dataclass(frozen=True)
class Record:
    """What was (kernel) or may be (model) observed after statement ``stmt``.

    ``fields`` is the record's whole state (a dict, or a :class:`FieldsView` of a
    :class:`History`); ``delta``, when the producer knows it, the fields that changed since
    the stream's previous record (key -> allowed set, or :data:`ABSENT` for a field that
    went): the judge reads only those (:func:`changes`)."""

    stmt: int                       # index into Scenario.statements
    line: int                       # source line of that statement
    fields: Mapping[str, Allowed] = field(default_factory=dict)
    status: RunStatus = OK
    note: str = ""
    delta: Optional[Mapping[str, Allowed]] = field(default=None, compare=False, repr=False)

    def get(self, key: str, default: Any = None) -> Allowed:
        return self.fields.get(key, default)

    def pages(self) -> list[tuple[str, str, int]]:
        """The mapped pages of this record, in record order."""
        seen: dict[tuple[str, str, int], None] = {}
        for key in self.fields:
            if key.startswith("counter."):
                continue
            proc, region, idx, _f = split_page_key(key)
            seen.setdefault((proc, region, idx), None)
        return list(seen)

    # -- JSON (the JSON run record carries these: docs/run-record.schema.json)
    def to_json(self) -> dict:
        """A record with a delta is written as its changes, page runs range-compressed
        (``"changes"``, read back in stream order by :func:`records_from_json`); one
        without, as its whole state (``"fields"``)."""
        head = {"stmt": self.stmt, "line": self.line, "status": self.status,
                **({"note": self.note} if self.note else {})}
        if self.delta is not None:
            return {**head, "changes": compress(self.delta)}
        return {**head, "fields": {k: _value_json(v) for k, v in self.fields.items()}}

    @classmethod
    def from_json(cls, obj: Mapping, previous: "Record | None" = None) -> "Record":
        """One record; a record of ``"changes"`` needs the stream's ``previous`` record
        (use :func:`records_from_json` for a whole stream)."""
        if "changes" in obj:
            delta = {k: (ABSENT if v is None else _value_from_json(v))
                     for k, v in expand(obj["changes"]).items()}
            fields = dict(previous.fields) if previous is not None else {}
            for k, v in delta.items():
                if v is ABSENT:
                    fields.pop(k, None)
                else:
                    fields[k] = v
            return cls(obj["stmt"], obj["line"], fields, obj.get("status", OK),
                       obj.get("note", ""), delta)
        fields = {k: _value_from_json(v) for k, v in obj["fields"].items()}
        return cls(obj["stmt"], obj["line"], fields, obj.get("status", OK), obj.get("note", ""))


def records_from_json(objs: Iterable[Mapping]) -> list[Record]:
    """A stream of records as :meth:`Record.to_json` wrote them (either form), in order;
    records of changes share one :class:`History`, their runs committed as runs."""
    out: list[Record] = []
    hist = History()
    for obj in objs:
        if "changes" in obj:
            page_runs, counters = runs_from_json(obj["changes"])
            view, changed = hist.commit_runs(page_runs, counters)
            out.append(Record(obj["stmt"], obj["line"], view, obj.get("status", OK),
                              obj.get("note", ""), changed))
        else:
            rec = Record.from_json(obj)
            hist.commit_full(rec.fields)
            out.append(rec)
    return out


def changes(records: Sequence[Record]) -> Iterator[tuple[Record, Iterable[str]]]:
    """(record, the keys that changed since the previous record) for a stream.  Where the
    two records are consecutive views of one :class:`History` the record's delta says it;
    otherwise the whole states are compared (every key of a first record has changed).
    Spells out every page's key: :func:`changed_runs` is the form that costs runs."""
    prev: Optional[Record] = None
    for rec in records:
        if rec.delta is not None and _follows(prev, rec):
            yield rec, rec.delta.keys()
        elif prev is None:
            yield rec, list(rec.fields)
        else:
            a, b = prev.fields, rec.fields
            keys = [k for k, v in b.items() if a.get(k, ABSENT) != v]
            keys += [k for k in a if k not in b]
            yield rec, keys
        prev = rec


def changed_runs(records: Sequence[Record]
                 ) -> Iterator[tuple[Record, dict[Column, list], list[str]]]:
    """(record, column -> the (lo, hi) ranges of pages that changed, the counter keys that
    changed) for a stream, each since the previous record: from the record's delta where
    the two are consecutive views of one :class:`History` (the cost is runs), else from
    the keys :func:`changes` finds (a stream of whole records costs its keys)."""
    prev: Optional[Record] = None
    for rec in records:
        delta = rec.delta
        if isinstance(delta, DeltaView) and _follows(prev, rec):
            yield (rec, {c: [(lo, hi) for lo, hi, _v in runs]
                         for c, runs in delta.page_runs().items()},
                   list(delta.counter_keys()))
        else:
            one = [rec] if prev is None else [prev, rec]
            keys = list(changes(one))[-1][1]
            pages: dict = {}
            counters: list = []
            for key in keys:
                col = column_of(key)
                if col is None:
                    counters.append(key)
                else:
                    pages.setdefault(col[0], {})[col[1]] = True
            yield (rec, {c: [(lo, hi) for lo, hi, _v in runs_from_points(pts)]
                         for c, pts in pages.items()}, counters)
        prev = rec


def _follows(prev: Optional[Record], rec: Record) -> bool:
    b = rec.fields
    if not isinstance(b, FieldsView):
        return False
    if prev is None:
        return b._pos == 0
    a = prev.fields
    return isinstance(a, FieldsView) and a._h is b._h and b._pos == a._pos + 1


def _value_json(v: Any) -> Any:
    return "*" if v is ANY else sorted(v, key=_sort_key)


def _value_from_json(v: Any) -> Any:
    return ANY if v == "*" else frozenset(v)


def _run_json(v: Any, lo: int, hi: int) -> Any:
    """A run's value as JSON: null for a field that went; an IndexLabel as its text
    (``["A/m0[i]"]``), or, for a run of one page, the label that page reads."""
    if v is ABSENT:
        return None
    if type(v) is IndexLabel:
        return sorted(v.at(lo)) if lo == hi else [v.text()]
    return _value_json(v)


def compress(delta: Mapping[str, Any]) -> dict:
    """Changes as JSON: runs of consecutive pages of one region whose field took one value
    become one key, ``"A/buf[0-1023].ksm"``, and so do runs of pages each naming a page at
    one distance from their own index: ``"B/buf[0-1023].frame": ["A/buf[i]"]`` (B's page
    i shares A's page i's frame); a field that went is ``null``.  Pages sorted by region,
    field and index; counters after them, by name."""
    if isinstance(delta, DeltaView):
        page_runs = delta.page_runs()
        counters = {k: delta[k] for k in delta.counter_keys()}
    else:
        points: dict = {}
        counters = {}
        for key, v in delta.items():
            col = column_of(key)
            if col is None:
                counters[key] = v
            else:
                points.setdefault(col[0], {})[col[1]] = v
        page_runs = {c: runs_from_points(p) for c, p in points.items()}
    out: dict = {}
    for col in sorted(page_runs):
        prefix, fname = col
        for lo, hi, v in page_runs[col]:
            idx = str(lo) if lo == hi else f"{lo}-{hi}"
            out[f"{prefix}[{idx}].{fname}"] = _run_json(v, lo, hi)
    for key in sorted(counters):
        v = counters[key]
        out[key] = None if v is ABSENT else _value_json(v)
    return out


def _run_key(key: str) -> tuple[Column, int, int]:
    """``"A/buf[0-1023].ksm"`` -> (("A/buf", "ksm"), 0, 1023); ValueError if malformed."""
    b = key.find("[")
    e = key.find("].", b)
    lo, _, hi = key[b + 1:e].partition("-")
    if b <= 0 or e < 0 or "/" not in key[:b] or not lo.isdigit() or not (
            hi.isdigit() or hi == ""):
        raise ValueError(f"not a page field or run of them: {key!r}")
    lo_i, hi_i = int(lo), int(hi or lo)
    if hi_i < lo_i:
        raise ValueError(f"empty run of pages: {key!r}")
    return (key[:b], key[e + 2:]), lo_i, hi_i


def _run_value_from_json(col: Column, vj: Any) -> Any:
    if vj is None:
        return ABSENT
    if (col[1] == "frame" and isinstance(vj, list) and len(vj) == 1
            and isinstance(vj[0], str)):
        got = parse_index_label(vj[0])
        if got is not None:
            return got
    return _value_from_json(vj)


def runs_from_json(changes_json: Mapping[str, Any]) -> tuple[dict, dict]:
    """A record's ``"changes"`` as (column -> runs (lo, hi, value) ascending, counter key
    -> value), for :meth:`History.commit_runs`; ValueError for a malformed key."""
    page_runs: dict = {}
    counters: dict = {}
    for key, vj in changes_json.items():
        if key.startswith("counter."):
            counters[key] = ABSENT if vj is None else _value_from_json(vj)
            continue
        col, lo, hi = _run_key(key)
        page_runs.setdefault(col, []).append((lo, hi, _run_value_from_json(col, vj)))
    for runs in page_runs.values():
        runs.sort(key=lambda r: r[0])
    return page_runs, counters


def expand(changes_json: Mapping[str, Any]) -> dict:
    """The inverse of :func:`compress`, one key per page (values left in their JSON form,
    an IndexLabel's text made the label each page reads)."""
    out: dict = {}
    for key, vj in changes_json.items():
        if key.startswith("counter."):
            out[key] = vj
            continue
        col, lo, hi = _run_key(key)
        v = _run_value_from_json(col, vj)
        prefix, fname = col
        for i in range(lo, hi + 1):
            out[f"{prefix}[{i}].{fname}"] = (sorted(v.at(i)) if type(v) is IndexLabel
                                            else vj)
    return out


def _sort_key(v: Any) -> tuple:
    return (type(v).__name__, str(v))


def first_page_after(ps, old, added):
    """A frame's first page after a batch of moves: ``ps`` the pages mapping it now, ``old``
    its first page before (None: none), ``added`` the pages that came to it in the batch.
    The old first page stays first unless a page before it came (a page added and moved on
    again within the batch is not in ``ps``)."""
    if old is not None and old in ps:
        new = min((pg for pg in added if pg in ps), default=old)
        return old if new > old else new
    return min(ps)


class FrameLabels:
    """Canonical frame labels (:func:`label_frames`) kept up to date from what moved, so
    that a record costs the pages whose frame or label moved, not every page.

    A page is any key that sorts in canonical page order (processes in creation order,
    regions in mmap order, pages by index); a frame is any hashable id (the zero page and
    "not present" are not frames here: the caller shows them as ``"Z"`` and ``None``).  A
    frame's label is ``name(its first page)``, as :func:`label_frames` gives it.
    :meth:`move` sets pages' frames; :meth:`labels` then says which pages' labels changed
    since the last call: the moved pages, and every page of a frame whose first page
    changed (a page before it came, or its first page went).  No other frame is relabelled,
    so the work is the moved pages plus the pages of those frames (changes of the record
    either way); finding a frame's new first page after its first page left is a scan of
    that frame's pages, which all get the new label."""

    def __init__(self, name: Callable[[Any], str] = str) -> None:
        self._name = name
        self._frame_of: dict = {}       # page -> frame
        self._pages: dict = {}          # frame -> {page: None}
        self._first: dict = {}          # frame -> its first page
        self._label: dict = {}          # frame -> label
        self._moved: dict = {}          # page -> None: frame changed since labels()
        self._touched: dict = {}        # frame -> pages added since labels()

    def frame(self, page: Any) -> Any:
        return self._frame_of.get(page)

    def pages_of(self, frame: Any) -> Iterable:
        """The pages mapping ``frame`` (as last moved): a view, do not keep it across a
        :meth:`move`."""
        return self._pages.get(frame, ())

    def label(self, page: Any) -> Optional[str]:
        f = self._frame_of.get(page)
        return None if f is None else self._label[f]

    def first_of_frame(self, frame: Any) -> Any:
        """The first page of a frame some page maps (after :meth:`labels`)."""
        return self._first[frame]

    def label_of_frame(self, frame: Any) -> str:
        """The label of a frame some page maps (after :meth:`labels`)."""
        return self._label[frame]

    def move(self, page: Any, frame: Any) -> None:
        """``page`` now maps ``frame`` (None: no frame, or the page went)."""
        old = self._frame_of.get(page)
        if old is frame or (old is not None and old == frame):
            return
        touched = self._touched
        if old is not None:
            del self._pages[old][page]
            touched.setdefault(old, [])
        if frame is None:
            del self._frame_of[page]
        else:
            self._frame_of[page] = frame
            ps = self._pages.get(frame)
            if ps is None:
                ps = self._pages[frame] = {}
            ps[page] = None
            added = touched.get(frame)
            if added is None:
                touched[frame] = [page]
            else:
                added.append(page)
        self._moved[page] = None

    def labels(self) -> Iterable:
        """The pages whose label changed since the last call (moved pages included;
        :meth:`label` gives the new one, None for a page with no frame)."""
        out = self._moved
        self._moved = {}
        touched, self._touched = self._touched, {}
        first, pages, label, name = self._first, self._pages, self._label, self._name
        for f, added in touched.items():
            ps = pages.get(f)
            old = first.get(f)
            if not ps:
                pages.pop(f, None)
                first.pop(f, None)
                label.pop(f, None)
                continue
            new = first_page_after(ps, old, added)
            if new != old:
                first[f] = new
                label[f] = name(new)
                out.update(dict.fromkeys(ps))
        return out


def label_frames(order: Iterable[tuple[Any, Any]], zero: Any = "Z",
                 name: Callable[[Any], str] = str) -> dict[Any, Optional[str]]:
    """Canonical labels: ``order`` yields (page, frame-id) in canonical page order; a frame
    is labelled ``name(page)`` of its first page; frame-ids equal to ``zero`` become
    ``"Z"``; ``None`` stays ``None``."""
    labels: dict[Any, str] = {}
    out: dict[Any, Optional[str]] = {}
    for page, frame in order:
        if frame is None:
            out[page] = None
        elif frame == zero:
            out[page] = "Z"
        else:
            lab = labels.get(frame)
            if lab is None:
                lab = labels[frame] = name(page)
            out[page] = lab
    return out
