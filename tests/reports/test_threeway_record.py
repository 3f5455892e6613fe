"""A three-way run writes a run record like any other, with the label coverage beside the
results, and the HTML report shows that coverage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ksmdiff.cli import main
from ksmdiff.reports.html import to_html
from ksmdiff.reports.record import load

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cli"))
from _schema_check import errors  # noqa: E402

SCHEMA = json.loads((ROOT / "docs" / "run-record.schema.json").read_text())


def test_a_three_way_record_validates_and_reports_its_coverage(tmp_path):
    scns = sorted((ROOT / "corpora" / "generated" / "5.1-5.8").glob("reuse-*.scenario"))[:2]
    out = tmp_path / "tw.json"
    assert main(["run", *map(str, scns), "--three-way", "--kernel", "5.4", "-q",
                 "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert errors(record, SCHEMA) == []
    assert len(record["results"]) == len(record["three_way"]) == len(scns)
    era = record["coverage"]["5.4"]["5.1-5.8"]
    assert "reuse" in era["corpus"] and "reuse" in era["model"] and era["kernel"] == []
    html = to_html(load(str(out)))
    assert 'id="coverage"' in html and "reuse" in html


def test_merged_records_keep_the_coverage_of_each():
    from ksmdiff.reports.merge import merge_coverage
    a = {"5.4": {"5.1-5.8": {"labels": ["reuse", "gkp_stale"], "corpus": ["reuse"],
                             "model": ["reuse"], "kernel": []}}}
    b = {"5.4": {"5.1-5.8": {"labels": ["reuse", "gkp_stale"], "corpus": ["gkp_stale"],
                             "model": ["gkp_stale"], "kernel": []}},
         "host": {">=6.7": {"labels": ["ksm_copy"], "corpus": ["ksm_copy"],
                            "model": ["ksm_copy"], "kernel": ["ksm_copy"]}}}
    m = merge_coverage([a, b])
    assert m["5.4"]["5.1-5.8"]["corpus"] == ["reuse", "gkp_stale"]
    assert m["host"][">=6.7"]["kernel"] == ["ksm_copy"]
    assert merge_coverage([]) == {}
