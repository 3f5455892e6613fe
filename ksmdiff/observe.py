"""Observation records (docs/run-record.md): data only, shared by the model, the probe and
the judge.

One :class:`Record` follows every *action* statement of a scenario (expects are judged
against the record of the last action before them).  A record maps field keys to the set
of values allowed there:

* page fields ``P/R[i].FIELD`` for every mapped page of every live process, FIELD one of
  ``present`` (bool), ``swapped`` (bool), ``frame`` (``"F0"``, ``"F1"``, ... or ``"Z"`` for
  the shared zero page; ``None`` when not present), ``ksm`` (bool), ``mapcount`` (int),
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
report is absent, never guessed.  Frame labels are canonical *per record*: ``F0`` is the
frame of the first present page in canonical page order (processes in creation order,
regions in mmap order, pages by index), ``F1`` the next distinct one, and so on, so the
labels say which pages share a frame and are immune to the kernel reusing a freed PFN.
Whether a page kept its frame across a step is what ``fault`` says.

On the kernel every set has one element; the model gives every value a quiet kernel may
show.  ``ANY`` means the model allows every value (e.g. a counter moved by ksmd churn).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

PAGE_FIELDS = ("present", "swapped", "frame", "ksm", "mapcount", "exclusive", "content",
               "fault")
FAULT_OUTCOMES = ("reused", "copied", "fresh", "retry")

# Record status values.
OK = "ok"
UNSUPPORTED = "unsupported"   # the kernel lacks a feature the scenario requires
ENVIRONMENT = "environment"   # a bounded wait ran out, a syscall failed for a reason of the machine
NOT_RUN = "not-run"           # e.g. no root: kernel side not run


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


def split_page_key(key: str) -> tuple[str, str, int, str]:
    """``"A/buf[3].ksm"`` -> ``("A", "buf", 3, "ksm")``."""
    proc, _, rest = key.partition("/")
    page, _, fieldname = rest.rpartition(".")
    region, _, idx = page.partition("[")
    return proc, region, int(idx.rstrip("]")), fieldname


def counter_key(name: str) -> str:
    return f"counter.{name}"


# The per-process field (``proc_counter_key(P, PRCTL_MERGE)``) holding MMF_VM_MERGE_ANY as
# prctl(PR_GET_MEMORY_MERGE) returns it (bool), on kernels with prctl merge.
PRCTL_MERGE = "prctl_merge"


def proc_counter_key(proc: str, name: str) -> str:
    """A per-process counter (/proc/PID/ksm_stat of ``proc``): ``counter.NAME@P``.  In the
    ``counter.`` namespace, so everything that walks a record's pages skips it."""
    return f"counter.{name}@{proc}"


@dataclass(frozen=True)
class Record:
    """What was (kernel) or may be (model) observed after statement ``stmt``."""

    stmt: int                       # index into Scenario.statements
    line: int                       # source line of that statement
    fields: Mapping[str, Allowed] = field(default_factory=dict)
    status: str = OK
    note: str = ""

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
        return {
            "stmt": self.stmt,
            "line": self.line,
            "status": self.status,
            **({"note": self.note} if self.note else {}),
            "fields": {k: ("*" if v is ANY else sorted(v, key=_sort_key))
                       for k, v in self.fields.items()},
        }

    @classmethod
    def from_json(cls, obj: Mapping) -> "Record":
        fields = {k: (ANY if v == "*" else frozenset(v)) for k, v in obj["fields"].items()}
        return cls(obj["stmt"], obj["line"], fields, obj.get("status", OK), obj.get("note", ""))


def _sort_key(v: Any) -> tuple:
    return (type(v).__name__, str(v))


def label_frames(order: Iterable[tuple[Any, Any]], zero: Any = "Z") -> dict[Any, str]:
    """Canonical per-record labels: ``order`` yields (page, frame-id) in canonical page order;
    frame-ids equal to ``zero`` become ``"Z"``; ``None`` stays ``None``."""
    labels: dict[Any, str] = {}
    out: dict[Any, str] = {}
    for page, frame in order:
        if frame is None:
            out[page] = None
        elif frame == zero:
            out[page] = "Z"
        else:
            if frame not in labels:
                labels[frame] = f"F{len(labels)}"
            out[page] = labels[frame]
    return out
