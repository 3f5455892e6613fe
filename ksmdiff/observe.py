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
"""

from __future__ import annotations

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


class History:
    """The fields of every record of one stream, stored as what changed.

    A producer commits the changes of each record (key -> allowed set, or
    :data:`ABSENT` for a field that went) and gets back a :class:`FieldsView` of the
    record's whole state; that view reads a field in O(log changes of that field), so a
    stream costs what changed in it, not pages x statements.  Allowed sets are
    interned (a stream holds few distinct values).  A field's history is one flat list,
    ``[position, value, position, value, ...]`` (a big scenario has hundreds of
    thousands of fields: one list each, not a tuple of two)."""

    def __init__(self) -> None:
        self._hist: dict[str, list] = {}
        self._n = 0                              # records committed
        self._live = 0                           # keys present in the latest record
        self._interned: dict = {}
        self._order: dict[str, int] = {}         # built by rank() when asked

    def __getstate__(self) -> tuple:
        """Pickled (a fuzz worker's model runs, sent back in bulk): the fields' histories
        only; the interning table and the rank index are rebuilt when asked."""
        return (self._hist, self._n, self._live)

    def __setstate__(self, state: tuple) -> None:
        self._hist, self._n, self._live = state
        self._interned = {}
        self._order = {}

    def intern(self, key: str, v: Any) -> Any:
        """One shared object per (field name, value): {True} and {1} are equal sets, so the
        field name keeps a bool field's set apart from an int field's."""
        if v is ANY or v is ABSENT:
            return v
        return self._interned.setdefault((key[key.rfind(".") + 1:], v), v)

    def commit(self, changes: Mapping[str, Any], *, shared: bool = False) -> "FieldsView":
        """``shared``: the caller already shares one object per value (no interning)."""
        return self.commit_delta(changes, shared=shared)[0]

    def commit_delta(self, changes: Mapping[str, Any], *,
                     shared: bool = False) -> tuple["FieldsView", "DeltaView"]:
        """Commit, and return the record's whole state and what changed in it: the keys
        of ``changes`` whose value differs from the previous record's."""
        pos = self._n
        hist = self._hist
        intern = None if shared else self.intern
        live = self._live
        changed = []
        for key, v in changes.items():
            if intern is not None:
                v = intern(key, v)
            h = hist.get(key)
            if h is None:
                if v is ABSENT:
                    continue
                hist[key] = [pos, v]
                live += 1
            else:
                last = h[-1]
                if last is v or last == v:
                    continue
                if last is ABSENT:
                    live += 1
                elif v is ABSENT:
                    live -= 1
                h += (pos, v)                    # (a key comes once per commit)
            changed.append(key)
        self._live = live
        self._n += 1
        return FieldsView(self, pos, live), DeltaView(self, pos, changed)

    def changed_at(self, key: str, pos: int) -> bool:
        """Did ``key`` change in record ``pos``?"""
        h = self._hist.get(key)
        if h is None or pos < 0:
            return False
        i = _last_at(h, pos)
        return i >= 0 and h[i] == pos

    def commit_full(self, fields: Mapping[str, Any]) -> tuple["FieldsView", dict]:
        """Commit a whole record's fields: the changes are worked out here (a field of the
        previous record missing from ``fields`` went).  Returns (view, changes)."""
        prev = self._n - 1
        changes: dict = {}
        for key, v in fields.items():
            if self.at(key, prev) != v:
                changes[key] = v
        if prev >= 0:
            for key, h in self._hist.items():
                if h[-1] is not ABSENT and key not in fields:
                    changes[key] = ABSENT
        return self.commit(changes), changes

    def at(self, key: str, pos: int) -> Any:
        h = self._hist.get(key)
        if h is None or pos < 0:
            return ABSENT
        if h[-2] <= pos:                         # (_last_at's first case, inline)
            return h[-1]
        i = _last_at(h, pos)
        return ABSENT if i < 0 else h[i + 1]

    def rank(self, key: str) -> int:
        """The key's place in first-appearance order."""
        if len(self._order) != len(self._hist):
            # (the history's keys are in first-appearance order; one index for all the
            # keys, made when a divergence is sorted, not one entry per commit)
            self._order = {k: i for i, k in enumerate(self._hist)}
        h = self._order.get(key)
        return len(self._order) if h is None else h

    def keys_at(self, pos: int) -> Iterator[str]:
        for key, h in self._hist.items():
            i = _last_at(h, pos)
            if i >= 0 and h[i + 1] is not ABSENT:
                yield key


def _last_at(h: list, pos: int) -> int:
    """The index in a field's history ``h`` (``[position, value, ...]``, positions
    ascending) of the last change at or before ``pos``; negative if none."""
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
    """The changes of one record of a :class:`History` (read-only; History.commit_delta):
    the keys that changed in it, each read from the history (:data:`ABSENT` for a field
    that went).  Holds a tuple of keys, not a dict of values: a record of a big scenario
    changes hundreds of thousands of fields."""

    __slots__ = ("_h", "_pos", "_keys")

    def __init__(self, history: History, pos: int, keys: Iterable[str]):
        self._h, self._pos, self._keys = history, pos, tuple(keys)

    def __getitem__(self, key: str) -> Any:
        if not self._h.changed_at(key, self._pos):
            raise KeyError(key)
        return self._h.at(key, self._pos)

    def get(self, key: str, default: Any = None) -> Any:
        return self._h.at(key, self._pos) if self._h.changed_at(key, self._pos) else default

    def __contains__(self, key: object) -> bool:
        return self._h.changed_at(key, self._pos)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self):  # (a tuple: a delta's keys are distinct)
        return self._keys

    def items(self):
        at, pos = self._h.at, self._pos
        return [(k, at(k, pos)) for k in self._keys]

    def __repr__(self) -> str:
        return f"DeltaView({dict(self.items())!r})"


class FieldsView(Mapping):
    """The fields of one record of a :class:`History` (read-only)."""

    __slots__ = ("_h", "_pos", "_len")

    def __init__(self, history: History, pos: int, length: int):
        self._h, self._pos, self._len = history, pos, length

    def __getitem__(self, key: str) -> Any:
        v = self._h.at(key, self._pos)
        if v is ABSENT:
            raise KeyError(key)
        return v

    def get(self, key: str, default: Any = None) -> Any:
        v = self._h.at(key, self._pos)
        return default if v is ABSENT else v

    def __contains__(self, key: object) -> bool:
        return self._h.at(key, self._pos) is not ABSENT  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[str]:
        return self._h.keys_at(self._pos)

    def __len__(self) -> int:
        return self._len

    def rank(self, key: str) -> int:
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
    records of changes share one :class:`History`."""
    out: list[Record] = []
    hist = History()
    for obj in objs:
        if "changes" in obj:
            delta = {k: (ABSENT if v is None else _value_from_json(v))
                     for k, v in expand(obj["changes"]).items()}
            view, changed = hist.commit_delta(delta)
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
    otherwise the whole states are compared (every key of a first record has changed)."""
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


def compress(delta: Mapping[str, Any]) -> dict:
    """Changes as JSON: runs of consecutive pages of one region whose field took one value
    become one key, ``"A/buf[0-1023].ksm"``; a field that went is ``null``."""
    out: dict = {}
    run = None          # (prefix, suffix, lo, hi, value-json)

    def flush():
        if run is not None:
            prefix, suffix, lo, hi, vj = run
            idx = str(lo) if lo == hi else f"{lo}-{hi}"
            out[f"{prefix}[{idx}].{suffix}"] = vj

    for key in sorted(delta, key=_key_order):
        v = delta[key]
        vj = None if v is ABSENT else _value_json(v)
        if key.startswith("counter."):
            flush()
            run = None
            out[key] = vj
            continue
        proc, region, idx, fname = split_page_key(key)
        prefix = f"{proc}/{region}"
        if (run is not None and run[0] == prefix and run[1] == fname and run[3] + 1 == idx
                and run[4] == vj):
            run = (prefix, fname, run[2], idx, vj)
            continue
        flush()
        run = (prefix, fname, idx, idx, vj)
    flush()
    return out


def expand(changes_json: Mapping[str, Any]) -> dict:
    """The inverse of :func:`compress` (values left in their JSON form)."""
    out: dict = {}
    for key, vj in changes_json.items():
        if key.startswith("counter."):
            out[key] = vj
            continue
        proc, _, rest = key.partition("/")
        page, _, fname = rest.rpartition(".")
        region, _, idx = page.partition("[")
        lo, _, hi = idx.rstrip("]").partition("-")
        for i in range(int(lo), int(hi or lo) + 1):
            out[page_key(proc, region, i, fname)] = vj
    return out


def _key_order(key: str) -> tuple:
    if key.startswith("counter."):
        return (1, key, "", 0)
    proc, region, idx, fname = split_page_key(key)
    return (0, f"{proc}/{region}", fname, idx)


def _sort_key(v: Any) -> tuple:
    return (type(v).__name__, str(v))


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
            if old is not None and old in ps:
                # (a page added and moved on again within the batch is not there)
                new = min((pg for pg in added if pg in ps), default=old)
                if new > old:
                    new = old
            else:
                new = min(ps)
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
