"""A run record as KTAP version 1 (the kernel's Documentation/dev-tools/ktap.rst).

One top-level test per target (a model version, ``host``, ``lab:NAME``); inside it one
subtest per scenario, indented by two spaces from its version line to its plan and
results.  A scenario that did not run on a target (unsupported, not run, environment) is
``ok N name # SKIP reason``; a failed expect, a model invariant broken, or a kernel/model
mismatch is ``not ok`` with the first problem as diagnostic lines just before it.  A
target is ``not ok`` when one of its scenarios is, ``# SKIP`` when all of them skipped."""

from __future__ import annotations

from ksmdiff.reports.record import Outcome, by_target, first_problem, outcome, scenario_name

INDENT = "  "      # one level of subtest indentation in KTAP version 1
_SKIPPED = (Outcome.UNSUPPORTED, Outcome.NOT_RUN, Outcome.ENVIRONMENT)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _description(text: str) -> str:
    """A test description: any characters but '#' and newline."""
    return _one_line(text.replace("#", "_"))


def scenario_line(n: int, result: dict) -> tuple[list[str], str]:
    """(diagnostic lines, result line) of one scenario on one target."""
    name = _description(scenario_name(result["source"]))
    o = outcome(result)
    if o in _SKIPPED:
        word = {Outcome.NOT_RUN: "not run"}.get(o, o.value)
        return [], f"ok {n} {name} # SKIP {_one_line(word + ': ' + result['reason'])}"
    if o is Outcome.HELD:
        return [], f"ok {n} {name}"
    diags = [f"# {_one_line(first_problem(result) or o.value)}"]
    failed = sum(1 for e in result["expects"] if e["status"] == "failed")
    if failed:
        judged = sum(1 for e in result["expects"] if e["status"] != "skipped")
        diags.append(f"# {failed}/{judged} expects failed")
    return diags, f"not ok {n} {name}"


def to_ktap(record: dict) -> str:
    groups = by_target(record)
    lines = ["KTAP version 1", f"1..{len(groups)}"]
    for n, (target, results) in enumerate(groups.items(), 1):
        version = next((r["version"] for r in results if r["version"]), None)
        sub = ["KTAP version 1", f"# Subtest: {_one_line(target)}"]
        if version and version != target:
            sub.append(f"# kernel version {version}")
        sub.append(f"1..{len(results)}")
        outcomes = []
        for i, r in enumerate(results, 1):
            diags, line = scenario_line(i, r)
            sub += diags + [line]
            outcomes.append(outcome(r))
        lines += [INDENT + s for s in sub]
        name = _description(target)
        if any(o in (Outcome.FAILED, Outcome.MISMATCH) for o in outcomes):
            lines.append(f"not ok {n} {name}")
        elif outcomes and all(o in _SKIPPED for o in outcomes):
            lines.append(f"ok {n} {name} # SKIP no scenario ran on {name}")
        else:
            lines.append(f"ok {n} {name}")
    return "\n".join(lines) + "\n"
