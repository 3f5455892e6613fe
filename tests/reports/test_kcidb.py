from __future__ import annotations

import copy
import json

import pytest

from ksmdiff.cli import main
from ksmdiff.reports.kcidb import to_kcidb
from ksmdiff.reports.record import load

schema = pytest.importorskip("kcidb_io.schema",
                             reason="kcidb-io is not installed (pip install kcidb-io)")


def _with_host_and_lab(record: dict) -> dict:
    """The record as a run on the host and a lab kernel would have written it: a host
    column with a reproducible mismatch, a lab column that did not boot."""
    rec = copy.deepcopy(record)
    src = rec["scenarios"][0]
    base = next(r for r in rec["results"] if r["source"] == src and r["target"] == "6.12")
    host = dict(copy.deepcopy(base), target="host", version="6.12.48")
    host["mismatch"] = {
        "source": src, "title": base["title"], "version": "6.12.48",
        "statement": "B: write buf[0] 0x02",
        "first": {"stmt": 7, "line": 14, "key": "B/buf[0].fault",
                  "allowed": ["copied"], "observed": ["reused"]},
        "classification": "reproducible", "reruns": 2, "reproduced": 2}
    lab = dict(copy.deepcopy(base), target="lab:bookworm", version=None, status="not-run",
               reason="lab kernel bookworm is not fetched (ksmdiff lab fetch bookworm)",
               expects=[], observations=[])
    rec["versions"] += ["host", "lab:bookworm"]
    rec["results"] += [host, lab]
    return rec


def test_run_record_is_valid_kcidb(run_json, tmp_path):
    out = tmp_path / "kcidb.json"
    assert main(["report", str(run_json), "--kcidb", str(out)]) == 0
    data = json.loads(out.read_text())
    schema.LATEST.validate(data)
    assert data["version"] == {"major": schema.LATEST.major, "minor": schema.LATEST.minor}
    record = load(str(run_json))
    assert len(data["checkouts"]) == len(data["builds"]) == len(record["versions"])
    assert len(data["tests"]) == len(record["results"])
    status = {(t["misc"]["target"], t["path"]): t["status"] for t in data["tests"]}
    assert status[("5.4", "ksmdiff.demo.prctl-merge")] == "SKIP"
    assert status[("6.12", "ksmdiff.demo.prctl-merge")] == "PASS"
    assert status[("6.12", "ksmdiff.demo.fails")] == "FAIL"
    fail = next(t for t in data["tests"] if t["path"] == "ksmdiff.demo.fails")
    assert "fails.scenario:7: failed" in fail["log_excerpt"]
    builds = {b["id"] for b in data["builds"]}
    assert all(t["build_id"] in builds for t in data["tests"])
    assert len({t["id"] for t in data["tests"]}) == len(data["tests"])


def test_host_and_lab_kernels(run_json):
    data = to_kcidb(_with_host_and_lab(load(str(run_json))))
    schema.LATEST.validate(data)
    checkouts = {c["misc"]["target"]: c for c in data["checkouts"]}
    assert checkouts["host"]["misc"]["kernel_version"] == "6.12.48"
    assert checkouts["lab:bookworm"]["misc"]["kind"] == "lab kernel under qemu"
    host = [t for t in data["tests"] if t["misc"]["target"] == "host"]
    assert host[0]["status"] == "FAIL" and host[0]["misc"]["mismatch_class"] == "reproducible"
    assert "mismatch (reproducible" in host[0]["log_excerpt"]
    lab = [t for t in data["tests"] if t["misc"]["target"] == "lab:bookworm"]
    assert lab[0]["status"] == "SKIP" and "not fetched" in lab[0]["log_excerpt"]


def test_a_broken_invariant_is_an_error(run_json):
    rec = load(str(run_json))
    r = next(r for r in rec["results"] if r["status"] == "ok" and "fails" not in r["source"])
    r["violations"] = [{"stmt": 1, "line": 3, "prop": "mapcount_matches", "detail": "x"}]
    statuses = {t["status"] for t in to_kcidb(rec)["tests"]}
    assert "ERROR" in statuses


def test_the_validator_is_not_vacuous(run_json):
    data = to_kcidb(load(str(run_json)))
    data["tests"][0]["status"] = "HELD"
    with pytest.raises(Exception):
        schema.LATEST.validate(data)
