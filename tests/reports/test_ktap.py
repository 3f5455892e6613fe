from __future__ import annotations

import pytest

from ksmdiff.cli import main
from ksmdiff.reports.ktap import to_ktap
from ksmdiff.reports.record import load
from .ktap_parser import KtapError, parse


def test_run_ktap_is_strict_ktap_v1(scenario_dir, tmp_path):
    out = tmp_path / "run.ktap"
    rc = main(["run", str(scenario_dir), "--kernel", "5.4", "--kernel", "6.12", "-q",
               "--ktap", str(out)])
    assert rc == 1
    tops = parse(out.read_text())
    assert [t.name for t in tops] == ["5.4", "6.12"]
    by = {t.name: {s.name: s for s in t.subtests} for t in tops}
    assert set(by["5.4"]) == {"demo/child-writes", "demo/fails", "demo/fork-after-merge",
                              "demo/prctl-merge"}
    skip = by["5.4"]["demo/prctl-merge"]
    assert skip.ok and skip.directive == "SKIP" and "prctl-merge" in skip.reason
    assert by["6.12"]["demo/prctl-merge"].directive is None
    fail = by["6.12"]["demo/fails"]
    assert not fail.ok and any("fails.scenario:7: failed: " in d for d in fail.diagnostics)
    assert by["6.12"]["demo/child-writes"].ok
    assert not tops[0].ok and not tops[1].ok


def test_report_ktap_equals_run_ktap(run_json, tmp_path):
    out = tmp_path / "r.ktap"
    assert main(["report", str(run_json), "--ktap", str(out)]) == 0
    assert out.read_text() == to_ktap(load(str(run_json)))
    parse(out.read_text())


def test_everything_skipped_skips_the_target(run_json):
    record = load(str(run_json))
    for r in record["results"]:
        if r["target"] == "5.4":
            r["status"], r["reason"] = "not-run", "no root # for the host"
    tops = parse(to_ktap(record))
    assert tops[0].directive == "SKIP" and tops[0].ok
    assert all(s.directive == "SKIP" and "not run: no root" in s.reason
               for s in tops[0].subtests)


@pytest.mark.parametrize("bad", [
    "KTAP version 1\n1..2\nok 1 a\n",                       # plan says 2
    "KTAP version 1\n1..1\nok 2 a\n",                       # numbering
    "KTAP version 1\n1..1\n KTAP version 1\n 1..1\n ok 1 b\nok 1 a\n",   # 1-space indent
    "KTAP version 1\n1..1\nnot ok 1 a # SKIP why\n",        # skipped but not ok
    "KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  not ok 1 b\nok 1 a\n",  # parent ok
    "1..1\nok 1 a\n",                                       # no version line
])
def test_the_parser_is_strict(bad):
    with pytest.raises(KtapError):
        parse(bad)


def test_an_unwritable_ktap_path_fails_before_the_run(scenario_dir, tmp_path, capsys):
    rc = main(["run", str(scenario_dir), "--kernel", "5.4", "-q",
               "--ktap", str(tmp_path / "no" / "such" / "dir.ktap")])
    assert rc == 2
    err = capsys.readouterr()
    assert "--ktap" in err.err and "no such directory" in err.err and err.out == ""
