"""The JSON run record that ``ksmdiff run --json`` writes matches docs/run-record.schema.json,
and the schema is strict enough to catch a record that drifts from it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from ksmdiff.cli import main

from _schema_check import errors  # tests/cli/_schema_check.py

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "run-record.schema.json").read_text())
CORPUS = ROOT / "corpora"


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "run.json"
    # model cells of several eras (unsupported ones included: pageout on 4.19, prctl < 6.4)
    # and a version outside the checked range (a note); tests/kernel replays on the host
    code = main(["run", str(CORPUS / "seed"), str(CORPUS / "matrix" / "prctl-merge.scenario"),
                 str(CORPUS / "matrix" / "pin-blocks-merge.scenario"),
                 "--kernel", "4.19", "--kernel", "5.4", "--kernel", "6.12", "--kernel", "7.3",
                 "--json", str(out), "-q"])
    assert code == 0
    return json.loads(out.read_text())


def test_a_real_record_matches_the_schema(record):
    assert errors(record, SCHEMA) == []
    statuses = {r["status"] for r in record["results"]}
    assert {"ok", "unsupported"} <= statuses
    assert record["notes"] and record["results"][0]["observations"]


@pytest.mark.parametrize("breakage", [
    lambda r: r.pop("tool_version"),
    lambda r: r.update(format=1),                     # (frame labels "F0": format 1)
    lambda r: r.update(format=2),                     # (no "A/buf[i]" label runs)
    lambda r: r["results"][0].update(status="passed"),
    lambda r: r["results"][0]["expects"][0].update(status="ok"),
    lambda r: r["results"][0]["observations"][0]["changes"].update({"A/buf[0].colour": [1]}),
    lambda r: r["results"][0]["observations"][0]["changes"].update({"counter.cow_ksm": 3}),
    lambda r: r["results"][0].update(surprise=True),
])
def test_the_schema_catches_a_drifting_record(record, breakage):
    broken = copy.deepcopy(record)
    breakage(broken)
    assert errors(broken, SCHEMA) != []


def test_the_schema_is_valid_json_schema_where_jsonschema_is_installed(record):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed; the "
                                     "built-in checker above still ran")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(record, SCHEMA)



def test_a_run_of_labels_following_the_index_is_one_key(tmp_path):
    """Each of A's filled pages is the first page of its own frame, and after the fork B's
    page i shares A's page i: format 3 writes each region's labels as one key,
    ``["A/buf[i]"]``, and reading the record back gives each page its label."""
    from ksmdiff.observe import records_from_json
    scn = tmp_path / "fork.scenario"
    scn.write_text('scenario "fork"\nprocess A\nA: mmap buf 64\nA: fill buf 0x61\n'
                   'A: fork B\nexpect B buf[5] same-frame A buf[5]\n')
    out = tmp_path / "run.json"
    assert main(["run", str(scn), "--kernel", "6.12", "--json", str(out), "-q"]) == 0
    rec = json.loads(out.read_text())
    assert errors(rec, SCHEMA) == []
    obs = rec["results"][0]["observations"]
    assert obs[1]["changes"]["A/buf[0-63].frame"] == ["A/buf[i]"]
    assert obs[2]["changes"]["B/buf[0-63].frame"] == ["A/buf[i]"]
    last = records_from_json(obs)[-1].fields
    assert last["B/buf[5].frame"] == last["A/buf[5].frame"] == frozenset(["A/buf[5]"])
