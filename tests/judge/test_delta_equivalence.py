"""Records of changes (observe.History) judge exactly as whole records did, on the corpus.

The reference here is the whole-record form: every record a plain dict of every field,
built by the interpreter's ``fields()`` after each step, and the whole-record comparison
(every field of every record, below as ``compare_whole``).  For every scenario of the
corpus on one version of each era: the view of each record equals the whole record, the
expects give the same results, comparing against another version's stream gives the same
divergences in the same order, and the JSON form (range-compressed changes) reads back
to the same records."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksmdiff.judge import compare
from ksmdiff.judge.compare import MISSING, Divergence
from ksmdiff.judge.expects import evaluate_expects
from ksmdiff.model import run_model
from ksmdiff.model.run import Interpreter
from ksmdiff.observe import ANY, OK, ABSENT, History, Record, changes, records_from_json
from ksmdiff.scenario import find_scenarios, parse_file
from ksmdiff.versions import KernelVersion

ROOT = Path(__file__).resolve().parents[2]
CORPUS = [p for p in find_scenarios([ROOT / "corpora"])]
VERSIONS = ["4.19", "5.4", "5.19", "6.6", "6.18"]
PAIRS = [("5.4", "6.6"), ("6.18", "5.4"), ("4.19", "5.19")]


def compare_whole(reference, observed) -> list[Divergence]:
    """The whole-record comparison: every field of every record."""
    def page_of(key):
        return None if key.startswith("counter.") else key.rsplit(".", 1)[0]

    ref_by_stmt = {r.stmt: r for r in reference}
    out = []
    for obs in observed:
        ref = ref_by_stmt.get(obs.stmt)
        if ref is None or obs.status != OK or ref.status != OK:
            continue
        ref_pages = {page_of(k) for k in ref.fields if page_of(k)}
        obs_pages = {page_of(k) for k in obs.fields if page_of(k)}
        for page in sorted(ref_pages - obs_pages):
            out.append(Divergence(obs.stmt, obs.line, page + ".present",
                                  ref.fields.get(page + ".present", MISSING), MISSING))
        for key, values in obs.fields.items():
            page = page_of(key)
            allowed = ref.fields.get(key, MISSING)
            if allowed == MISSING:
                if page is not None and page not in ref_pages and key.endswith(".present"):
                    out.append(Divergence(obs.stmt, obs.line, key, MISSING, values))
                continue
            if allowed is ANY:
                continue
            if values is ANY or not set(values) <= set(allowed):
                out.append(Divergence(obs.stmt, obs.line, key, allowed, values))
    return out


def whole(records):
    return [Record(r.stmt, r.line, dict(r.fields), r.status, r.note) for r in records]


class _Both(Interpreter):
    """Keeps the whole record beside the changes after every step."""

    def observe(self, faults):
        self.whole = getattr(self, "whole", [])
        self.whole.append(self.fields(faults))
        return super().observe(faults)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(ROOT)))
def test_views_expects_and_json_match_whole_records(path):
    scn = parse_file(path)
    for v in VERSIONS:
        version = KernelVersion.parse(v)
        run = run_model(scn, version)
        if run.status != OK:
            continue
        it = _Both(scn, version, None)
        it.run()
        for rec, full in zip(it.records, it.whole):
            assert dict(rec.fields) == full, (v, rec.stmt)
            assert len(rec.fields) == len(full)
        full = whole(run.records)
        assert evaluate_expects(scn, run.records, version) == \
            evaluate_expects(scn, full, version), v
        back = records_from_json([r.to_json() for r in run.records])
        assert [dict(r.fields) for r in back] == [dict(r.fields) for r in run.records], v
        assert [(r.stmt, r.line, r.status, r.note) for r in back] == \
            [(r.stmt, r.line, r.status, r.note) for r in run.records]


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(ROOT)))
def test_divergences_match_whole_records(path):
    scn = parse_file(path)
    for a, b in PAIRS:
        ra, rb = (run_model(scn, KernelVersion.parse(x)) for x in (a, b))
        if ra.status != OK or rb.status != OK:
            continue
        got = compare(ra.records, rb.records)
        want = compare_whole(whole(ra.records), whole(rb.records))
        assert got == want, (a, b)
        # and mixed: whole records on one side, changes on the other
        assert compare(whole(ra.records), rb.records) == want


def test_changes_falls_back_to_whole_states_for_a_filtered_stream():
    h = History()
    recs = [Record(i, i + 1, h.commit(d), delta=d) for i, d in enumerate(
        [{"A/b[0].ksm": frozenset([True])}, {"A/b[0].ksm": frozenset([False])},
         {"A/b[0].ksm": ABSENT}])]
    picked = [recs[0], recs[2]]           # not consecutive: the delta of recs[2] is not
    assert [sorted(k) for _r, k in changes(picked)] == [["A/b[0].ksm"], ["A/b[0].ksm"]]
    assert [list(k) for _r, k in changes(recs)] == [["A/b[0].ksm"]] * 3


def test_json_changes_are_range_compressed():
    h = History()
    d = {f"A/b[{i}].ksm": frozenset([True]) for i in range(1000)}
    d["A/b[1000].ksm"] = frozenset([False])
    rec = Record(0, 1, h.commit(d), delta=d)
    assert rec.to_json()["changes"] == {"A/b[0-999].ksm": [True], "A/b[1000].ksm": [False]}


def test_a_pickled_stream_reads_and_compares_as_the_original():
    """A fuzz worker sends the model's runs back pickled; History pickles its fields'
    histories only (no interning table, no rank index): the records read, rank and
    compare as before, and the history still takes commits."""
    import pickle
    path = sorted(find_scenarios([str(Path(__file__).resolve().parents[2] / "corpora")]))[0]
    run = run_model(parse_file(path), KernelVersion.parse("6.12"))
    again = pickle.loads(pickle.dumps(run.records))
    assert [dict(r.fields) for r in again] == [dict(r.fields) for r in run.records]
    assert [dict(r.delta.items()) for r in again] == [dict(r.delta.items())
                                                      for r in run.records]
    assert compare(run.records, again) == []
    last = again[-1].fields
    keys = list(last)
    assert [last.rank(k) for k in keys] == [run.records[-1].fields.rank(k) for k in keys]
    h = last._h
    view = h.commit({keys[0]: ABSENT})
    assert keys[0] not in view and len(view) == len(last) - 1
