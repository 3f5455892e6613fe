"""Reports of a run: the terminal summary (a version × scenario table, then every failure
with its file:line) and the JSON run record."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from typing import IO, Sequence

from ksmdiff.judge import rank
from ksmdiff.scenario import ast as A


def cell_text(cell) -> str:
    if cell.status == "unsupported":
        return "unsupported"
    if cell.status == "not-run":
        if cell.target.startswith("lab:"):      # say why in the cell: never a silent pass
            return "not run: " + cell.reason.split(":")[0]
        return "not run"
    if cell.status == "environment":
        return "environment"
    if cell.mismatch is not None:
        return f"MISMATCH ({cell.mismatch.classification})"
    if cell.violations:
        return f"VIOLATION x{len(cell.violations)}"
    if cell.failed:
        return f"FAIL {len(cell.failed)}/{len(cell.expects)}"
    held = sum(1 for e in cell.expects if e.status == "held")
    text = f"ok {held}"
    return text + " reuse" if cell.ksm_reuse else text


def _name(scn: A.Scenario) -> str:
    base = os.path.splitext(os.path.basename(scn.source))[0]
    parent = os.path.basename(os.path.dirname(scn.source))
    return f"{parent}/{base}" if parent else base


def print_summary(scenarios, versions, cells, *, verbose: bool = False,
                  out: IO[str]) -> None:
    names = [_name(s) for s in scenarios]
    width = max([len(n) for n in names] + [8])
    colw = [max(len(v), max(len(cell_text(cells[(i, v)])) for i in range(len(scenarios))))
            for v in versions]
    out.write("scenario".ljust(width) + "  " + "  ".join(v.ljust(w) for v, w in
                                                         zip(versions, colw)) + "\n")
    for i, n in enumerate(names):
        row = [cell_text(cells[(i, v)]).ljust(w) for v, w in zip(versions, colw)]
        out.write(n.ljust(width) + "  " + "  ".join(row).rstrip() + "\n")
    out.write("\n'ok N' = N expects held (the rest skipped by 'on VERSIONS'); 'reuse' = a "
              "write kept the frame of a KSM page (reuse_ksm_page).\n")

    problems = 0
    for i, scn in enumerate(scenarios):
        for v in versions:
            cell = cells[(i, v)]
            if v == "host":
                where = f"{v} (host kernel)"
            elif v.startswith("lab:"):
                where = f"{v} (kernel {cell.version or 'absent'} under qemu)"
            else:
                where = f"the {v} model"
            if cell.status in ("not-run", "environment"):
                out.write(f"{scn.source}: {cell.status} on {where}: {cell.reason}\n")
            for e in cell.failed:
                problems += 1
                out.write(f"{scn.source}:{e.line}: failed on {where}: {e.text}\n"
                          f"    observed: {e.reason}\n")
            for viol in cell.violations:
                problems += 1
                out.write(f"{scn.source}:{getattr(viol, 'line', '?')}: violation on {where}: "
                          f"{getattr(viol, 'prop', '')}: {getattr(viol, 'detail', viol)}\n")
            if verbose:
                for e in cell.expects:
                    if e.status != "failed":
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


def write_json(path: str, scenarios, versions, cells, elapsed: float, argv: Sequence[str]) -> None:
    record = {
        "tool": "ksmdiff",
        "argv": list(argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - elapsed)),
        "elapsed_s": round(elapsed, 3),
        "host": {"uname": platform.release(), "machine": platform.machine()},
        "versions": list(versions),
        "scenarios": [s.source for s in scenarios],
        "results": [cells[(i, v)].to_json() for i in range(len(scenarios)) for v in versions],
    }
    # Written atomically: a killed run never leaves half a record.
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ksmdiff-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)
