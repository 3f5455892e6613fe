"""A run record as KernelCI database (KCIDB) I/O data, schema version 5.3.

One checkout and one build per target: a model version (what the model of that version
allows), the host kernel, a lab kernel (``lab:NAME``, with the version it booted).  One
test per scenario × target, its path ``ksmdiff.<dir>.<scenario>``.  Status: held -> PASS;
an expect failed or the kernel showed a value the model does not allow -> FAIL; the
model broke one of its own invariants (the test itself is wrong) -> ERROR; unsupported or
not run -> SKIP; the machine could not run it -> MISS.  The first problem is the log
excerpt; the mismatch class (reproducible, flaky, environment) is in ``misc``."""

from __future__ import annotations

import hashlib
import re

from ksmdiff.reports.record import Outcome, by_target, first_problem, outcome, scenario_name

ORIGIN = "ksmdiff"
SCHEMA_VERSION = {"major": 5, "minor": 3}
STATUS = {
    Outcome.HELD: "PASS",
    Outcome.FAILED: "FAIL",
    Outcome.MISMATCH: "FAIL",
    Outcome.UNSUPPORTED: "SKIP",
    Outcome.NOT_RUN: "SKIP",
    Outcome.ENVIRONMENT: "MISS",
}
_PATH_PART = re.compile(r"[^a-zA-Z0-9_-]")
LOG_MAX = 16384     # the schema's maxLength of log_excerpt


def run_id(record: dict) -> str:
    """Stable for one record: the start time, host and the cells run."""
    h = hashlib.sha256()
    for part in (record["started"], record["host"]["uname"], record["host"]["machine"],
                 *record["versions"], *record["scenarios"]):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def _kind(target: str) -> str:
    if target == "host":
        return "host kernel"
    if target.startswith("lab:"):
        return "lab kernel under qemu"
    return "reference model"


def test_path(source: str) -> str:
    return "ksmdiff." + ".".join(_PATH_PART.sub("_", p) for p in
                                 scenario_name(source).split("/"))


def to_kcidb(record: dict) -> dict:
    rid = run_id(record)
    start = record["started"].replace("Z", "+00:00")
    checkouts, builds, tests = [], [], []
    for target, results in by_target(record).items():
        version = next((r["version"] for r in results if r["version"]), None)
        tid = f"{ORIGIN}:{rid}-{_PATH_PART.sub('_', target)}"
        info = {"target": target, "kind": _kind(target), "kernel_version": version}
        checkouts.append({
            "id": tid, "origin": ORIGIN, "start_time": start, "valid": True,
            "comment": f"{_kind(target)} {version or target}", "misc": info})
        build = {"id": tid, "checkout_id": tid, "origin": ORIGIN, "start_time": start,
                 "comment": f"{target}: kernel {version or 'absent'}", "misc": info}
        if target == "host":
            build["architecture"] = record["host"]["machine"]
        builds.append(build)
        for n, r in enumerate(results, 1):
            o = outcome(r)
            status = STATUS[o]
            if o is Outcome.FAILED and r["violations"] and not any(
                    e["status"] == "failed" for e in r["expects"]):
                status = "ERROR"
            log = first_problem(r) or (f"{o.value}: {r['reason']}" if r["reason"] else "")
            misc = {"outcome": o.value, "scenario": r["source"], "target": target,
                    "expects_held": sum(e["status"] == "held" for e in r["expects"]),
                    "expects_failed": sum(e["status"] == "failed" for e in r["expects"]),
                    "ksm_reuse": r["ksm_reuse"]}
            if r["mismatch"]:
                misc["mismatch_class"] = r["mismatch"]["classification"]
                misc["mismatch_key"] = r["mismatch"]["first"]["key"]
            if r["reason"]:
                misc["reason"] = r["reason"]
            test = {"id": f"{tid}-{n}", "build_id": tid, "origin": ORIGIN,
                    "path": test_path(r["source"]), "comment": r["title"],
                    "status": status, "start_time": start, "misc": misc,
                    "environment": {"comment": f"{record['host']['uname']} "
                                               f"{record['host']['machine']}"}}
            if log:
                test["log_excerpt"] = log[:LOG_MAX]
            tests.append(test)
    return {"version": dict(SCHEMA_VERSION), "checkouts": checkouts, "builds": builds,
            "tests": tests}
