"""Merging run records: the shards × kernels of a CI matrix into the record one run over
every scenario and kernel would have written.

Rows are the scenarios in path order, columns the targets in the order first seen.  A
scenario run on a target in two records must have the same result there (else an error
naming both files).  A scenario × target that no record ran becomes ``not-run`` with that
reason, never a silent gap."""

from __future__ import annotations

from typing import Sequence

from ksmdiff.errors import InputError, Location
from ksmdiff.reports.record import FORMAT, targets
from ksmdiff.status import RunStatus


def merge(records: Sequence[dict], names: Sequence[str] | None = None) -> dict:
    if not records:
        raise InputError("nothing to merge: no run records given")
    names = list(names or [f"record {i + 1}" for i in range(len(records))])
    versions = targets(records)
    scenarios = sorted({s for rec in records for s in rec["scenarios"]})
    cells: dict[tuple[str, str], tuple[dict, str]] = {}
    titles: dict[str, str] = {}
    for rec, name in zip(records, names):
        for r in rec["results"]:
            key = (r["source"], r["target"])
            titles.setdefault(r["source"], r["title"])
            if key in cells and cells[key][0] != r:
                raise InputError(f"{r['source']} on {r['target']} differs from the result in "
                                 f"{cells[key][1]}", Location(name, 1, 1),
                                 expected="records of disjoint shards or kernels, or equal "
                                          "results")
            cells.setdefault(key, (r, name))
    results = []
    for s in scenarios:
        for v in versions:
            if (s, v) in cells:
                results.append(cells[(s, v)][0])
            else:
                results.append({
                    "source": s, "title": titles[s], "target": v, "version": None,
                    "status": RunStatus.NOT_RUN, "reason": "no merged record ran it on this target",
                    "ksm_reuse": False, "expects": [], "mismatch": None, "violations": [],
                    "observations": []})
    hosts = list(dict.fromkeys((r["host"]["uname"], r["host"]["machine"]) for r in records))
    notes = list(dict.fromkeys(n for rec in records for n in rec["notes"]))
    if len(hosts) > 1:
        notes.append("note: merged from runs on several hosts: "
                     + ", ".join(f"{u} {m}" for u, m in hosts) + "; host is the first")
    tool_versions = list(dict.fromkeys(r["tool_version"] for r in records))
    if len(tool_versions) > 1:
        notes.append("note: merged from runs of ksmdiff " + ", ".join(tool_versions))
    merged = {
        "tool": "ksmdiff",
        "tool_version": tool_versions[0],
        "format": FORMAT,
        "argv": ["merge", *names],
        "notes": notes,
        "started": min(r["started"] for r in records),
        "elapsed_s": round(sum(r["elapsed_s"] for r in records), 3),
        "host": dict(records[0]["host"]),
        "versions": versions,
        "scenarios": scenarios,
        "results": results,
    }
    coverage = merge_coverage([rec["coverage"] for rec in records if "coverage" in rec])
    if coverage:
        merged["coverage"] = coverage
    return merged


def merge_coverage(coverages: Sequence[dict]) -> dict:
    """The label coverage of three-way runs, target by target and era by era: the labels in
    first-seen order, and what the corpus, the model and the kernel reached, united."""
    out: dict = {}
    for cov in coverages:
        for target, eras in cov.items():
            for era, c in eras.items():
                into = out.setdefault(target, {}).setdefault(
                    era, {"labels": [], "corpus": [], "model": [], "kernel": []})
                for key in ("labels", "corpus", "model", "kernel"):
                    into[key] = list(dict.fromkeys([*into[key], *c.get(key, [])]))
    return out
