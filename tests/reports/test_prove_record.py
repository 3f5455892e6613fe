"""``prove --json`` as the report reads it: the header, every counterexample as data and
as text, the check of a bad file, and the page's proofs section."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from ksmdiff.cli import main
from ksmdiff.errors import InputError
from ksmdiff.reports import prove_record
from ksmdiff.reports.html import to_html
from ksmdiff.reports.inputs import Kind, load_one


def test_the_prove_result_carries_the_interleaving(prove_json):
    kind, rec = load_one(str(prove_json))
    assert kind is Kind.PROVE and rec["mutants"] is True
    [row] = rec["results"]
    assert prove_record.status(row) is prove_record.ProofStatus.FAILED
    t = row["trace"]
    assert t["depth"] == len(t["steps"]) >= 2
    threads = {s["step"].split(".")[0] for s in t["steps"]}
    assert threads == {"ksmd", "fault"}                     # an interleaving of both
    assert any(s["changed"] for s in t["steps"]) and "rc" in t["initial"]
    # the data and the listing written to --out say the same
    text = open(row["counterexample"]).read()
    assert row["counterexample_text"] == text
    for i, s in enumerate(t["steps"], 1):
        assert f"{i:3d}. {s['step']}" in text


class _Cex(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.steps, self.headers, self._th = [], 0, [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-proof" in a:
            self.cells.append(a["data-proof"])
        if tag == "tr" and "data-cex-step" in a:
            self.steps += 1
        self._th = tag == "th"

    def handle_data(self, data):
        if self._th:
            self.headers.append(data)
            self._th = False


def test_the_page_shows_each_step_in_its_threads_column(prove_json):
    rec = json.loads(prove_json.read_text())
    p = _Cex()
    p.feed(to_html(None, [(str(prove_json), rec)]))
    assert p.cells == ["failed"]
    assert p.steps == rec["results"][0]["trace"]["depth"]
    assert "ksmd" in p.headers and "fault" in p.headers and "changes" in p.headers


def test_a_user_level_counterexample_shows_its_scenario():
    row = {"model": "user", "era": "5.1-5.8", "property": "isolation", "status": "failed",
           "method": "bmc", "bound": 5, "k": None, "seconds": 1.0, "mutant": "m",
           "note": "", "counterexample": "cex/m.scenario",
           "counterexample_text": 'scenario "x"\nprocess A\nA: mmap buf 1\n',
           "trace": {"depth": 1, "initial": {},
                     "steps": [{"step": "mmap(A)", "choices": {}, "changed": {"v": "1"},
                                "prints": "A: mmap buf 1"}]}}
    rec = {"tool": "ksmdiff", "kind": "prove", "format": 1, "started": "t", "argv": [],
           "mutants": True, "seconds": 1.0, "results": [row]}
    prove_record.check(rec)
    page = to_html(None, [("p.json", rec)])
    assert "<pre>scenario &quot;x&quot;" in page and "A: mmap buf 1" in page


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(format=7), "format 7"),
    (lambda r: r["results"][0].update(status="maybe"), "status 'maybe'"),
    (lambda r: r["results"][0].pop("trace"), "lacks trace"),
    (lambda r: r.update(kind="other"), "unknown kind"),
])
def test_a_bad_prove_result_is_an_error_naming_the_file(prove_json, tmp_path, capsys,
                                                         edit, message):
    rec = json.loads(prove_json.read_text())
    edit(rec)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rec))
    out = tmp_path / "r.html"
    assert main(["report", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1:1" in err and message in err and not out.exists()
    with pytest.raises(InputError):
        load_one(str(bad))


def test_ktap_needs_a_run_record(prove_json, tmp_path, capsys):
    assert main(["report", str(prove_json), "--ktap", str(tmp_path / "k.tap")]) == 2
    assert "needs a run record" in capsys.readouterr().err


def test_the_report_reads_every_status_the_prover_writes():
    from ksmdiff.kspec import Status
    assert {s.value for s in Status} == {s.value for s in prove_record.ProofStatus}
