"""The one reader of run records (docs/run-record.schema.json, format 3) for the report
formats: loading with clear errors, and each result's outcome as an enum."""

from __future__ import annotations

import enum
import json
import os
from typing import Iterable

from ksmdiff.errors import InputError, Location
from ksmdiff.status import RunStatus

# 3: a run of pages whose frame labels each name a page at one distance from the page's
# own index is one key with the label written "A/buf[i]" ("A/buf[i+5]"); a reader of
# format 2 would take that text for a label.  2: a frame label names the frame's first
# page (``"A/buf[0]"``); format 1 numbered frames by first use (``"F0"``), which a reader
# of format 2 would misread
FORMAT = 3
OLD_FORMATS = {1: 'frame labels "F0", "F1", ... numbered by first use',
               2: 'a run of pages was one key only where every page read one value; '
                  'format 3 also writes a run of labels that follow the page index '
                  '("A/buf[i]") as one key'}
REQUIRED = ("tool", "tool_version", "format", "argv", "notes", "started", "elapsed_s",
            "host", "versions", "scenarios", "results")
RESULT_REQUIRED = ("source", "title", "target", "version", "status", "reason", "ksm_reuse",
                   "expects", "mismatch", "violations", "observations")
# Fields that say when, how long and by which command line, not what happened: ignored
# when comparing runs (a merged record against the unsharded run).
TIMING_FIELDS = ("started", "elapsed_s", "argv")


class Outcome(enum.Enum):
    """What one scenario did on one target, as every report format shows it."""
    HELD = "held"                   # ran; every judged expect held
    FAILED = "failed"               # an expect failed or a model invariant broke
    MISMATCH = "mismatch"           # the kernel showed a value the model does not allow
    UNSUPPORTED = "unsupported"     # the version lacks a feature the scenario needs
    ENVIRONMENT = "environment"     # the machine could not run it
    NOT_RUN = "not-run"             # the kernel side did not run (no root, no lab kernel)


def outcome(result: dict) -> Outcome:
    status = result["status"]
    if status == RunStatus.UNSUPPORTED:
        return Outcome.UNSUPPORTED
    if status == RunStatus.ENVIRONMENT:
        return Outcome.ENVIRONMENT
    if status == RunStatus.NOT_RUN:
        return Outcome.NOT_RUN
    if result.get("mismatch"):
        return Outcome.MISMATCH
    if result.get("violations") or any(e["status"] == "failed" for e in result["expects"]):
        return Outcome.FAILED
    return Outcome.HELD


def first_problem(result: dict) -> str | None:
    """One line for the first thing that went wrong: the mismatch, the first failed expect,
    the first violation; None when nothing did."""
    m = result.get("mismatch")
    if m:
        f = m["first"]
        return (f"{result['source']}:{f['line']}: mismatch ({m['classification']}, "
                f"{m['reproduced']}/{m['reruns']} re-runs) at {m['statement']}: {f['key']} "
                f"allowed {_values(f['allowed'])}, observed {_values(f['observed'])}")
    for e in result["expects"]:
        if e["status"] == "failed":
            return (f"{result['source']}:{e['line']}: failed: {e['expect']}"
                    + (f" (observed: {e['reason']})" if e["reason"] else ""))
    for v in result.get("violations", ()):
        return f"{result['source']}:{v['line']}: violation: {v['prop']}: {v['detail']}"
    return None


def _values(v) -> str:
    if v is None:
        return "nothing"
    if v == "*":
        return "any value"
    return "{" + ", ".join("null" if x is None else str(x).lower() if isinstance(x, bool)
                           else str(x) for x in v) + "}"


def scenario_name(source: str) -> str:
    """'dir/file' without '.scenario': a test name with no '#' or newline in it."""
    base = os.path.splitext(os.path.basename(source))[0]
    parent = os.path.basename(os.path.dirname(source))
    name = f"{parent}/{base}" if parent else base
    return name.replace("#", "_").replace("\n", " ")


def load(path: str) -> dict:
    """A run record from ``path``; an :class:`InputError` naming the file (and line) when
    it is not JSON or not a ksmdiff run record of this format."""
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as e:
        raise InputError(f"cannot read run record: {e.strerror}",
                         Location(path, 1, 1)) from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not JSON: {e.msg}", Location(path, e.lineno, e.colno)) from None
    check(record, path)
    return record


def check(record, path: str = "<record>") -> None:
    where = Location(path, 1, 1)
    if not isinstance(record, dict) or record.get("tool") != "ksmdiff":
        raise InputError("not a ksmdiff run record", where,
                         expected='an object with "tool": "ksmdiff" (ksmdiff run --json)')
    if record.get("format") != FORMAT:
        why = OLD_FORMATS.get(record.get("format"))
        raise InputError(f"run record format {record.get('format')!r} is not supported"
                         + (f" (it was written by an older ksmdiff: {why}; run the "
                            f"scenarios again to get format {FORMAT})" if why else ""),
                         where, expected=f'"format": {FORMAT}')
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise InputError(f"run record lacks {', '.join(missing)}", where)
    for i, r in enumerate(record["results"]):
        lack = [k for k in RESULT_REQUIRED if k not in r]
        if lack:
            raise InputError(f"results[{i}] lacks {', '.join(lack)}", where)
        if r["target"] not in record["versions"]:
            raise InputError(f"results[{i}] is on target {r['target']!r}, which is not in "
                             f"versions", where)


def with_fields(observations: list[dict]) -> list[dict]:
    """Each observation of a result with its whole ``"fields"`` (JSON form): a record
    written as ``"changes"`` (range-compressed, docs/run-record.md) is applied to the
    state of the records before it."""
    from ksmdiff.observe import expand
    out, state = [], {}
    for rec in observations:
        if "changes" in rec:
            state = dict(state)
            for k, v in expand(rec["changes"]).items():
                if v is None:
                    state.pop(k, None)
                else:
                    state[k] = v
        else:
            state = rec["fields"]
        out.append({**rec, "fields": state})
    return out


def by_target(record: dict) -> dict[str, list[dict]]:
    """Results per target (column), each list in scenario (row) order."""
    out: dict[str, list[dict]] = {v: [] for v in record["versions"]}
    for r in record["results"]:
        out[r["target"]].append(r)
    return out


def cell(record: dict) -> dict[tuple[str, str], dict]:
    """(source, target) -> result."""
    return {(r["source"], r["target"]): r for r in record["results"]}


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}


def kernel_version(record: dict, target: str) -> str | None:
    """The kernel version a target judged (a lab or host kernel's real version)."""
    for r in record["results"]:
        if r["target"] == target and r["version"]:
            return r["version"]
    return None


def targets(records: Iterable[dict]) -> list[str]:
    return list(dict.fromkeys(v for rec in records for v in rec["versions"]))


def states(result: dict, which: str = "observations") -> list[dict]:
    """The observation records of a result (``which``: ``observations``, or
    ``model_observations`` beside a kernel's), each as ``{"stmt", "line", "status",
    "fields"}`` with every field of the state after that statement.  The one place the
    reports read observation records, so that a change of how a record stores them (e.g.
    only the fields that changed) is undone here."""
    return [dict(rec, fields=dict(rec["fields"]))
            for rec in with_fields(list(result.get(which) or ()))]
