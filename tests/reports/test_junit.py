from __future__ import annotations

import xml.etree.ElementTree as ET

from ksmdiff.cli import main


def test_run_junit(scenario_dir, tmp_path):
    out = tmp_path / "run.xml"
    rc = main(["run", str(scenario_dir), "--kernel", "5.4", "--kernel", "6.12", "-q",
               "--junit", str(out)])
    assert rc == 1
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["5.4", "6.12"]
    for name, suite in suites.items():
        cases = {c.get("name"): c for c in suite.findall("testcase")}
        assert len(cases) == int(suite.get("tests")) == 4
        assert len(suite.findall("testcase/failure")) == int(suite.get("failures")) == 1
        assert len(suite.findall("testcase/skipped")) == int(suite.get("skipped"))
        fail = cases["demo/fails"].find("failure")
        assert "fails.scenario:7: failed: " in fail.get("message") and fail.text
        assert cases["demo/child-writes"].find("failure") is None
        assert cases["demo/child-writes"].find("skipped") is None
    skipped = suites["5.4"].find("testcase[@name='demo/prctl-merge']/skipped")
    assert skipped is not None and skipped.get("message").startswith("unsupported: ")
    assert suites["6.12"].find("testcase[@name='demo/prctl-merge']/skipped") is None
    assert int(root.get("tests")) == 8 and int(root.get("failures")) == 2


def test_report_junit(run_json, tmp_path):
    out = tmp_path / "r.xml"
    assert main(["report", str(run_json), "--junit", str(out)]) == 0
    assert ET.parse(out).getroot().get("tests") == "8"


def test_report_needs_an_output(run_json, capsys):
    assert main(["report", str(run_json)]) == 2
    assert "nothing to write" in capsys.readouterr().err


def test_report_of_a_bad_record(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"tool": "ksmdiff",\n "format": 1,,}')
    before = set(tmp_path.iterdir())
    assert main(["report", str(bad), "--ktap", str(tmp_path / "o.ktap")]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err
    assert set(tmp_path.iterdir()) == before
