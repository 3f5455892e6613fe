"""What the probe writes: one JSON object a line on its stdout (docs/probe-wire.md).

This module is the one description of that format on the Python side; the C side
(``probe.c``: ``page_fields``, ``counter_names``) prints the same names in its start message,
and :func:`check_start` refuses a probe whose layout differs, so the two cannot drift apart
silently.  Pure: no system access.

Messages, told apart by their keys (:func:`kind`)::

    {"start":1,"pid":P,"fields":[...],"records":"runs","counters":[...]}
                                                          ready; waits for the first "go"
    {"sync":S}                                            at ksm statement S; waits for "go"
    {"s":S,"error":"..."}                                 a syscall failed (S -1: at start)
    {"s":S,"c":{...},"p":[[...],...]}                     the record after statement S
    {"s":S,"k":[M,Z]|null,"kf":F,"p":[[...],...]}         the record after a ksm statement
    {"end":1}                                             done; its processes are gone

A record: ``"s"`` the scenario statement index; ``"c"`` each counter's change over the
statement (a name missing: not measured, e.g. pgreuse on a noisy machine); ``"k"`` (after
a ksm statement) ksm_merging_pages and ksm_zero_pages summed over the live processes'
``/proc/PID/ksm_stat``, null where that file is missing; ``"m"`` (every record, when the
kernel has any of them) one ``[proc, ksm_rmap_items, ksm_merging_pages, ksm_zero_pages]``
per live process (:data:`PROC_KSM_COUNTERS`), then its ``prctl(PR_GET_MEMORY_MERGE)``,
-1 where the kernel lacks that value;
``"pid"`` (after a fork) the new
process's pid; ``"p"`` the mapped pages of live processes whose shown state changed since
the last record that showed them (a page new to the stream, or whose present / swapped
bits, frame label, kpageflags, kpagecount or content changed), or that the statement read
or wrote (their fault), as *runs*: one entry per run of consecutive pages of one region
whose fields are one value, but for the frame label, which may follow the page index
(fields in :data:`PAGE_FIELDS` order, read by the index constants below,
``entry[PRESENT]``); ``"g"`` (:data:`KEY_GONE`) the pages that went since the last record
(munmap, exit), as runs ``[proc, region, first, last]``; ``"kp"`` (:data:`KEY_KSM_PFNS`,
absent when empty) the PFNs of the KSM frames the changed pages map (the attribution of a
shared settle's stable node removals, by PFN); ``"kf"`` (:data:`KEY_KSM_FRAMES`, after a
ksm statement) how many KSM frames the scenario's pages map.  Records are changes (the
start message says ``"records":"runs"``): a reader applies each record's runs to the
pages' state (decode.ScenarioState: as runs too, so decoding costs runs, not pages).

A frame is named by the probe, not by its PFN: by the frame's first page in canonical page
order (``frame_proc``, ``frame_region``, ``frame_page``), as observe.py labels frames, so
the runs compress: with ``frame_follows`` 1, page ``first + j`` of the run names page
``frame_page + j`` (each unshared page is the first page of its own frame; after a fork,
the child's page j names the parent's page j); with 0, every page of the run names
``frame_page`` (one KSM frame).
"""

from __future__ import annotations

import enum

#: the fields of one page entry of a record's "p", in order
PAGE_FIELDS = ("proc", "region", "first", "last", "present", "swapped", "frame_proc",
               "frame_region", "frame_page", "frame_follows", "ksm", "zero_page", "mapcount",
               "exclusive", "content", "fault")
(PROC, REGION, FIRST, LAST, PRESENT, SWAPPED, FRAME_PROC, FRAME_REGION, FRAME_PAGE,
 FRAME_FOLLOWS, KSM, ZERO_PAGE, MAPCOUNT, EXCLUSIVE, CONTENT, FAULT) = range(len(PAGE_FIELDS))
# proc, region: the program's indices (compiler.Program.procs / .regions); first, last: the
# run's pages in the region; present, swapped: pagemap bits 63 and 62 (0/1).  The next ten
# are null when the pages are not present: the frame's first page (frame_proc,
# frame_region: program indices; frame_page, frame_follows: above), null for the zero page;
# ksm and zero_page (/proc/kpageflags KPF_KSM, KPF_ZERO_PAGE), mapcount (/proc/kpagecount),
# exclusive (pagemap bit 56), content (CONTENT_FORMS, null where never loaded: PROT_NONE).
# fault: only for present pages the statement read or wrote (FAULTS); the entry is one
# shorter without it.

#: the counters of a record's "c", in the probe's order (absent: not measured)
COUNTERS = ("cow_ksm", "ksm_swpin_copy", "pgreuse", "pages_shared", "pages_sharing",
            "ksm_zero_pages")

#: a touched page's fault outcome: no frame before / the same frame / another frame
FAULTS = ("fresh", "reused", "copied")

#: content strings, as the scenario language writes them; the two ``?`` forms say the page
#: holds something the scenario never wrote (a wrong salt, or byte N differs)
CONTENT_FORMS = ("zero", "zero+0xWW", "0xFF", "0xFF+0xWW", "?salt", "?byteN=0xXX")

KEY_STMT, KEY_COUNTERS, KEY_PAGES, KEY_KSM_STAT, KEY_PID = "s", "c", "p", "k", "pid"
KEY_PROC_KSM = "m"
KEY_GONE = "g"
KEY_KSM_PFNS, KEY_KSM_FRAMES = "kp", "kf"
#: the start message's "records": every record holds the runs of pages that changed
RECORDS_OF_RUNS = "runs"

#: the values of one entry of a record's "m", after the process index; then the process's
#: prctl(PR_GET_MEMORY_MERGE) (0/1, -1 where the kernel refuses it)
PROC_KSM_COUNTERS = ("ksm_rmap_items", "ksm_merging_pages", "ksm_zero_pages")
#: read an entry of "m" by these: entry[M_PROC], entry[M_COUNTERS], entry[M_MERGE_ANY]
M_PROC = 0
M_COUNTERS = slice(1, 1 + len(PROC_KSM_COUNTERS))
M_MERGE_ANY = 1 + len(PROC_KSM_COUNTERS)


class Kind(enum.Enum):
    START = "start"
    SYNC = "sync"
    END = "end"
    ERROR = "error"
    RECORD = "record"


def kind(msg: dict) -> Kind:
    """Which message ``msg`` is; ValueError for anything else."""
    if KEY_STMT in msg:
        if "error" in msg:
            return Kind.ERROR
        if KEY_PAGES in msg:
            return Kind.RECORD
    elif "sync" in msg:
        return Kind.SYNC
    elif "start" in msg:
        return Kind.START
    elif "end" in msg:
        return Kind.END
    raise ValueError(f"not a probe message: {msg!r:.200}")


def check_start(msg: dict) -> int:
    """The pid of process 0 from a start message, after checking that the probe lays out
    page entries and counters as this module says (ValueError if not)."""
    if tuple(msg.get("fields", ())) != PAGE_FIELDS:
        raise ValueError(f"the probe's page fields {msg.get('fields')} are not "
                         f"{list(PAGE_FIELDS)} (probe and runner from different versions?)")
    if msg.get("records") != RECORDS_OF_RUNS:
        raise ValueError(f"the probe's records are {msg.get('records', 'whole states')!r}, "
                         f"not {RECORDS_OF_RUNS!r} (probe and runner from different "
                         "versions?)")
    if tuple(msg.get("counters", ())) != COUNTERS:
        raise ValueError(f"the probe's counters {msg.get('counters')} are not "
                         f"{list(COUNTERS)}")
    pid = msg.get(KEY_PID)
    if not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"bad pid in the start message: {pid!r}")
    return pid
