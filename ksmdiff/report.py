"""Reports of a run: the terminal summary (a version × scenario table, then every failure
with its file:line) and the JSON run record."""

from __future__ import annotations

import json
import os
import platform
import re
import time
from typing import IO, Sequence

from ksmdiff.internal.atomic import write_text_atomically
from ksmdiff.judge import rank
from ksmdiff.scenario import ast as A
from ksmdiff.status import ExpectStatus, RunStatus


def _judged(cell) -> int:
    """Expects judged on this version (held or failed; not skipped)."""
    return sum(1 for e in cell.expects if e.status in (ExpectStatus.HELD, ExpectStatus.FAILED))


def cell_text(cell) -> str:
    if cell.status == RunStatus.UNSUPPORTED:
        return "unsupported"
    if cell.status == RunStatus.NOT_RUN:
        if cell.target.startswith("lab:"):      # say why in the cell: never a silent pass
            return "not run: " + cell.reason.split(":")[0]
        return "not run"
    if cell.status == RunStatus.ENVIRONMENT:
        return "environment"
    if cell.mismatch is not None:
        return f"MISMATCH ({cell.mismatch.classification})"
    if cell.violations:
        return f"VIOLATION x{len(cell.violations)}"
    if cell.failed:
        return f"FAIL {len(cell.failed)}/{_judged(cell)}"
    held = sum(1 for e in cell.expects if e.status == ExpectStatus.HELD)
    text = f"ok {held}" if held else "ran, 0 checked"
    return text + " reuse" if cell.ksm_reuse else text


LEGEND = {
    "ok": "'ok N': the N expects judged on that version held (the others are skipped by "
          "their 'on VERSIONS' or name a counter the version lacks)",
    "ran": "'ran, 0 checked': the scenario ran but no expect applies to that version",
    "reuse": "'reuse': a write kept the frame of a page that was KSM (reuse_ksm_page)",
    "FAIL": "'FAIL n/m': n of the m expects judged on that version failed (listed below)",
    "unsupported": "'unsupported': the version lacks a feature the scenario needs (why: "
                   "below); not a failure",
    "MISMATCH": "'MISMATCH (kind)': the host kernel did what the model does not allow "
                "(reproducible, flaky or environment after re-runs; below)",
    "VIOLATION": "'VIOLATION xN': the model broke one of its own invariants N times (below)",
    "not run": "'not run': the kernel side could not run here (why: below)",
    "environment": "'environment': the machine could not run it (why: below)",
}


def _name(scn: A.Scenario) -> str:
    base = os.path.splitext(os.path.basename(scn.source))[0]
    parent = os.path.basename(os.path.dirname(scn.source))
    return f"{parent}/{base}" if parent else base


def _where(versions: Sequence[str], cells_of=None) -> str:
    """'the 5.4 model', 'the 5.4, 5.10 models', 'the host kernel', 'lab:NAME (kernel V under
    qemu)', joined by 'and'.  ``cells_of(v)`` gives a cell of ``v`` (for a lab kernel's
    version)."""
    models = [v for v in versions if v != "host" and not v.startswith("lab:")]
    parts = []
    if models:
        parts.append(f"the {', '.join(models)} model{'s' if len(models) > 1 else ''}")
    if "host" in versions:
        parts.append("the host kernel")
    for v in versions:
        if v.startswith("lab:"):
            version = getattr(cells_of(v), "version", None) if cells_of else None
            parts.append(f"{v} (kernel {version or 'absent'} under qemu)")
    return " and ".join(parts)


def _unversioned(reason: str, version: str) -> str:
    """A reason with its own version left out, so that equal reasons group."""
    if version == "host":
        return reason
    reason = re.sub(rf"\bkernel {re.escape(version)} ", "the version ", reason)
    return re.sub(rf"(?<![\w.]){re.escape(version)}(?![\w.])", "this version", reason)


_VALUE_SET = re.compile(r"(\w[\w ]*?) = \{([^{}]*)\}")


def _wanted(stmt) -> str | None:
    """The value an expect asks for, as the judge prints observed values."""
    if isinstance(stmt, A.ExpectCounter):
        return str(stmt.delta)
    if not isinstance(stmt, A.ExpectPage):
        return None
    pred = stmt.predicate
    if isinstance(pred, A.Flag):
        if pred.name in ("reused", "copied"):
            return pred.name
        if pred.name == "zero-page":
            return "Z"
        return "true"
    if isinstance(pred, A.Mapcount):
        return str(pred.count)
    if isinstance(pred, A.HasContent):
        return str(pred.content)
    return None


def several_values_note(stmt, reason: str) -> str | None:
    """On the model an expect holds only if every allowed value satisfies it.  When it
    failed on a set of several values one of which is what it asks for, say so."""
    wanted = _wanted(stmt)
    for m in _VALUE_SET.finditer(reason):
        values = [v.strip() for v in m.group(2).split(",")]
        if len(values) > 1 and (wanted in values or getattr(stmt, "negated", False)):
            return (f"expect fails because the model allows {{{', '.join(values)}}}: an "
                    f"expect must hold for every allowed value")
    if "any value" in reason:
        return ("expect fails because the model allows any value here: an expect must hold "
                "for every allowed value")
    return None


def print_summary(scenarios, versions, cells, *, verbose: bool = False,
                  out: IO[str]) -> None:
    names = [_name(s) for s in scenarios]
    width = max([len(n) for n in names] + [8])
    texts = {k: cell_text(c) for k, c in cells.items()}
    colw = [max(len(v), max(len(texts[(i, v)]) for i in range(len(scenarios))))
            for v in versions]
    out.write("scenario".ljust(width) + "  " + "  ".join(v.ljust(w) for v, w in
                                                         zip(versions, colw)) + "\n")
    for i, n in enumerate(names):
        row = [texts[(i, v)].ljust(w) for v, w in zip(versions, colw)]
        out.write(n.ljust(width) + "  " + "  ".join(row).rstrip() + "\n")
    out.write("\n")
    shown = " ".join(texts.values())
    for key, text in LEGEND.items():
        if key in shown:
            out.write(text + "\n")

    problems = 0
    # A kernel that did not run for one reason (no root, not fetched) is said once.
    said_once: set[tuple[str, str, str]] = set()
    for v in versions:
        by_reason: dict[tuple[str, str], list[int]] = {}
        for i in range(len(scenarios)):
            c = cells[(i, v)]
            if c.status in (RunStatus.NOT_RUN, RunStatus.ENVIRONMENT):
                by_reason.setdefault((c.status, c.reason), []).append(i)
        for i in range(len(scenarios)):      # a note about the whole kernel (lab boots)
            c = cells[(i, v)]
            if c.status == RunStatus.OK and c.reason and (v, "note", c.reason) not in said_once:
                out.write(f"note on {_where([v], lambda v, c=c: c)}: {c.reason}\n")
                said_once.add((v, "note", c.reason))
        for (status, reason), rows in by_reason.items():
            if len(rows) > 1:
                word = {"not-run": "not run"}.get(status, status)
                out.write(f"{word} on {_where([v], lambda v, i=rows[0]: cells[(i, v)])}, "
                          f"{len(rows)} scenarios: {reason}\n")
                said_once.add((v, status, reason))
    for i, scn in enumerate(scenarios):
        # One line per distinct problem, with every version it happened on.
        groups: dict[tuple, list[str]] = {}
        for v in versions:
            cell = cells[(i, v)]
            if (v, cell.status, cell.reason) in said_once:
                pass
            elif cell.status in (RunStatus.NOT_RUN, RunStatus.ENVIRONMENT, RunStatus.UNSUPPORTED):
                groups.setdefault(("status", cell.status, _unversioned(cell.reason, v)),
                                  []).append(v)
            for e in cell.failed:
                groups.setdefault(("failed", e.line, e.stmt, e.text,
                                   _unversioned(e.reason, v)), []).append(v)
            for viol in cell.violations:
                groups.setdefault(("violation", getattr(viol, "line", "?"),
                                   getattr(viol, "prop", ""),
                                   str(getattr(viol, "detail", viol))), []).append(v)
        for key, vs in groups.items():
            if key[0] == "status":
                _, status, reason = key
                word = {"not-run": "not run"}.get(status, status)
                out.write(f"{scn.source}: {word} on "
                          f"{_where(vs, lambda v: cells[(i, v)])}: {reason}\n")
            elif key[0] == "failed":
                problems += 1
                _, line, stmt, text, reason = key
                where = _where(vs, lambda v: cells[(i, v)])
                out.write(f"{scn.source}:{line}: failed on {where}: {text}\n"
                          f"    observed: {reason}\n")
                models = [v for v in vs if v != "host" and not v.startswith("lab:")]
                note = several_values_note(scn.statements[stmt], reason) if models else None
                if note:
                    out.write(f"    {note}\n")
            else:
                problems += 1
                _, line, prop, detail = key
                out.write(f"{scn.source}:{line}: violation on "
                          f"{_where(vs, lambda v: cells[(i, v)])}: {prop}: "
                          f"{detail}\n")
        for v in versions:
            cell = cells[(i, v)]
            where = _where([v], lambda v: cell)
            if verbose:
                for e in cell.expects:
                    if e.status != ExpectStatus.FAILED:
                        out.write(f"{scn.source}:{e.line}: {e.status} on {where}: {e.text}"
                                  f"{' (' + e.reason + ')' if e.reason else ''}\n")
            if cell.frequencies:
                seen = {f: sum(1 for x in cell.frequencies if x[3] == f)
                        for f in ("never", "sometimes", "always")}
                out.write(f"{scn.source}: of the model's {len(cell.frequencies)} alternative "
                          f"values, {seen['always']} always, {seen['sometimes']} sometimes, "
                          f"{seen['never']} never showed up\n")
                if verbose:
                    for stmt, key, value, f in cell.frequencies:
                        line = scn.statements[stmt].pos.line
                        out.write(f"    line {line}: {key} = {value}: {f}\n")
    mismatches = [c.mismatch for c in cells.values() if c.mismatch is not None]
    for group in rank(mismatches):
        m = group.witnesses[0]
        problems += 1
        extra = f" (and {len(group.witnesses) - 1} more scenarios)" if len(group.witnesses) > 1 else ""
        out.write(f"\nmismatch, {m.classification} ({m.reproduced}/{m.reruns} re-runs){extra}:\n"
                  f"  scenario {m.source}: {m.title}\n"
                  f"  first diverging statement, line {m.first.line}: {m.statement}\n"
                  f"  {m.first.describe()}\n")
    total = len(cells)
    ok = sum(1 for c in cells.values() if c.ok)
    out.write(f"\n{ok}/{total} runs held, {problems} problem(s)\n")


# bumped when a field changes meaning (docs/run-record.schema.json): the reader's
from ksmdiff.reports.record import FORMAT as RECORD_FORMAT  # noqa: E402


def write_json(path: str, scenarios, versions, cells, elapsed: float, argv: Sequence[str],
               notes: Sequence[str] = (), extra: dict | None = None) -> None:
    """The JSON run record (docs/run-record.md); ``extra``: the optional top-level parts of
    a three-way run (``coverage``, ``three_way``)."""
    from ksmdiff import __version__
    record = {
        "tool": "ksmdiff",
        "tool_version": __version__,
        "format": RECORD_FORMAT,
        "argv": list(argv),
        "notes": list(notes),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - elapsed)),
        "elapsed_s": round(elapsed, 3),
        "host": {"uname": platform.release(), "machine": platform.machine()},
        "versions": list(versions),
        "scenarios": [s.source for s in scenarios],
        "results": [cells[(i, v)].to_json() for i in range(len(scenarios)) for v in versions],
        **(extra or {}),
    }
    # Written atomically: a killed run never leaves half a record.
    write_text_atomically(path, json.dumps(record, indent=1, sort_keys=True, default=str))
