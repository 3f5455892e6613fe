"""The frame graph of a scenario as data, one state per statement: processes -> ptes ->
frames, KSM frames and the stable tree's nodes, from observation records
(docs/run-record.md).  Drawn by :mod:`ksmdiff.reports.svg`.

A record's field holds the set of values allowed (the model) or seen (a kernel); the graph
takes a field's value only when the set has exactly one, else the pte says ``?``.  Frame
labels (the frame's first page, ``"A/buf[0]"``, or ``Z``) depend only on which ptes share a
frame, so edges say which ptes share a frame in that state, not which physical frame it is.

The records name no stable node: the number of stable nodes is the record's
``counter.pages_shared`` change (one node per KSM page in the stable tree, chain dups
included), drawn beside the KSM frames.  When it equals the number of KSM frames every
KSM frame has its node; when it is lower, which KSM frame lacks one is not recorded and
the graph says so instead of guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ksmdiff.reports.record import states

PAGE_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)/([A-Za-z_][A-Za-z0-9_-]*)\[([0-9]+)\]"
                      r"\.([a-z]+)$")
UNKNOWN = "?"


def one(v):
    """The single value of a field's set; :data:`UNKNOWN` when it allows several or any."""
    if isinstance(v, list) and len(v) == 1:
        return v[0]
    return UNKNOWN


@dataclass(frozen=True)
class Pte:
    process: str
    region: str
    index: int
    frame: object              # "A/buf[0]", "Z", None (not present), or UNKNOWN
    swapped: object
    mapcount: object
    fault: object              # this statement's fault outcome, None when untouched

    @property
    def label(self) -> str:
        return f"{self.region}[{self.index}]"


@dataclass(frozen=True)
class FrameState:
    """The graph after one statement."""
    line: int
    stmt: int
    processes: tuple
    ptes: tuple                            # Pte, in canonical page order
    frames: tuple                          # frame labels in first-use order
    ksm: frozenset = field(default_factory=frozenset)     # KSM frame labels
    stable_nodes: object = None            # int, or UNKNOWN / None when not recorded

    @property
    def nodes_per_frame(self) -> bool:
        """Every KSM frame has a stable node (the count says so exactly)."""
        return isinstance(self.stable_nodes, int) and self.stable_nodes == len(self.ksm)


def frame_state(rec: dict) -> FrameState:
    fields = rec["fields"]
    pages: dict[tuple, dict] = {}
    for key, v in fields.items():
        m = PAGE_KEY.match(key)
        if m:
            pages.setdefault((m.group(1), m.group(2), int(m.group(3))), {})[m.group(4)] = v
    pages = dict(sorted(pages.items()))
    procs = tuple(dict.fromkeys(p for p, _, _ in pages))
    ptes, frames, ksm = [], [], set()
    for (p, r, i), f in pages.items():
        fr = one(f.get("frame")) if "frame" in f else UNKNOWN
        pte = Pte(p, r, i, fr, one(f.get("swapped")) if "swapped" in f else UNKNOWN,
                  one(f.get("mapcount")) if "mapcount" in f else UNKNOWN,
                  one(f["fault"]) if "fault" in f else None)
        ptes.append(pte)
        if fr not in (None, UNKNOWN):
            if fr not in frames:
                frames.append(fr)
            if one(f.get("ksm")) is True:
                ksm.add(fr)
    nodes = None
    if "counter.pages_shared" in fields:
        n = one(fields["counter.pages_shared"])
        nodes = n if isinstance(n, int) and not isinstance(n, bool) else UNKNOWN
    return FrameState(rec["line"], rec["stmt"], procs, tuple(ptes), tuple(frames),
                      frozenset(ksm), nodes)


def frame_steps(result: dict, which: str = "observations") -> list[FrameState]:
    """The frame graph after every statement of one result."""
    return [frame_state(rec) for rec in states(result, which)]


def last_ksm_step(steps: list[FrameState]) -> FrameState | None:
    """The last state with a KSM frame in it, else the last state."""
    return next((s for s in reversed(steps) if s.ksm), steps[-1] if steps else None)
