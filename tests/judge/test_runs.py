"""observe.History holds page fields as runs (observe.Runs, IndexLabel): whatever the
runs, every page reads what a per-page record would hold, a record's changes are exactly
the pages whose value changed, and the JSON form reads back to the same states."""

from __future__ import annotations

import random

import pytest

from ksmdiff.observe import (ABSENT, ANY, History, IndexLabel, Record, Runs, column_of,
                             compress, differ, expand, index_label, parse_index_label,
                             records_from_json, runs_from_json, runs_from_points,
                             runs_in_order)

T, F = frozenset([True]), frozenset([False])


def label(name: str) -> frozenset:
    return frozenset([name])


def random_frame(rng: random.Random, prefix: str, i: int):
    """Labels as records hold them: a page's own name, a parent's page of the same
    index, one KSM frame's first page, the zero page, or not present."""
    x = rng.random()
    if x < 0.35:
        return label(f"{prefix}[{i}]")
    if x < 0.55:
        return label(f"A/m[{i}]")
    if x < 0.7:
        return label("A/m[0]")
    if x < 0.8:
        return label(f"A/m[{i + 1}]")
    if x < 0.9:
        return label("Z")
    return ABSENT


def random_changes(rng: random.Random, pages: int) -> dict:
    out = {}
    lo = rng.randrange(pages)
    hi = min(pages - 1, lo + rng.choice([0, 1, 3, 40]))
    for proc in ("A", "B"):
        if rng.random() < 0.5:
            continue
        for i in range(lo, hi + 1):
            if rng.random() < 0.8:
                out[f"{proc}/m[{i}].frame"] = random_frame(rng, f"{proc}/m", i)
            if rng.random() < 0.5:
                out[f"{proc}/m[{i}].ksm"] = rng.choice([T, F, ABSENT])
    if rng.random() < 0.3:
        out["counter.pages_shared"] = frozenset([rng.randrange(3)])
    return out



def _applied(state: dict, changes: dict) -> dict:
    """``state`` after ``changes`` (ABSENT removes a key)."""
    out = dict(state)
    for k, v in changes.items():
        if v is ABSENT:
            out.pop(k, None)
        else:
            out[k] = v
    return out

def test_index_label_reads_and_text():
    lab = index_label("A/m0", -2)
    assert lab is index_label("A/m0", -2)
    assert lab.at(5) == label("A/m0[3]") and lab.text() == "A/m0[i-2]"
    assert parse_index_label("A/m0[i-2]") is lab
    assert parse_index_label("A/m0[i]") is index_label("A/m0", 0)
    assert parse_index_label("A/m0[3]") is None
    with pytest.raises(ValueError, match="no page at index 1"):
        lab.at(1)


def test_a_region_of_own_labels_is_one_run():
    pts = {i: label(f"B/m[{i}]") for i in range(1000)}
    assert runs_from_points(pts) == [(0, 999, index_label("B/m", 0))]
    pts = {i: label("A/m[0]") for i in range(1000)}
    assert runs_from_points(pts) == [(0, 999, label("A/m[0]"))]


def test_runs_compare_by_what_pages_read():
    lab = index_label("A/m", 0)
    assert differ(0, 9, lab, label("A/m[4]")) == [(0, 3), (5, 9)]
    assert differ(0, 9, lab, index_label("A/m", 1)) == [(0, 9)]
    assert differ(0, 9, T, frozenset([True])) == []
    assert differ(0, 9, ABSENT, ABSENT) == []


def test_overlay_matches_pages_one_by_one():
    rng = random.Random(3)
    for _ in range(300):
        state: dict = {}
        runs = Runs([])
        for _step in range(8):
            pts = {}
            for i in sorted(rng.sample(range(60), rng.randrange(1, 30))):
                pts[i] = random_frame(rng, "B/m", i)
            new, changed = runs.overlay(runs_from_points(pts))
            want = _applied(state, pts)
            assert {i: new.at(i) for i in range(60) if new.at(i) is not ABSENT} == want
            moved = {i for i in range(60) if state.get(i) != want.get(i)}
            assert {i for lo, hi, _v in changed for i in range(lo, hi + 1)} == moved
            for lo, hi, v in changed:
                for i in range(lo, hi + 1):
                    got = v.at(i) if isinstance(v, IndexLabel) else v
                    assert got == want.get(i, ABSENT)
            assert new.count == len(want)
            assert all(a[1] < b[0] for a, b in zip(new.runs, new.runs[1:]))
            state, runs = want, new


def test_runs_in_order_merge_as_their_points_would():
    """The model puts a record's changes as runs of pages that changed alike, in page
    order (model/run.py _put_run); runs_in_order merges them into what runs_from_points
    gives for the same points: a page's own label, a parent's page of the same index and
    a KSM frame's first page, in runs split anywhere."""
    rng = random.Random(5)
    for _ in range(500):
        pts: dict = {}
        for i in sorted(rng.sample(range(80), rng.randrange(1, 60))):
            pts[i] = random_frame(rng, "B/m", i)
        runs, prev = [], None
        for i, v in pts.items():
            if prev is not None and prev[1] == i - 1 and prev[2] is v and rng.random() < 0.7:
                prev[1] = i
            else:
                prev = [i, i, v]
                runs.append(prev)
        # (one value object for a run of one label, as the model shares them, or not)
        for r in runs:
            if rng.random() < 0.5 and r[2] is not ABSENT and not isinstance(r[2], IndexLabel):
                r[2] = frozenset(r[2])
        assert runs_in_order(runs) == runs_from_points(pts)


def test_history_reads_as_whole_records_and_json_reads_back():
    rng = random.Random(11)
    h = History()
    whole: list[dict] = []
    state: dict = {}
    records = []
    for step in range(120):
        d = random_changes(rng, 50)
        view, delta = h.commit_delta(d)
        want = _applied(state, d)
        assert dict(view) == want and len(view) == len(want)
        eff = {k for k in set(state) | set(want) if state.get(k) != want.get(k)}
        assert set(delta) == eff and len(delta) == len(eff)
        for k in eff:
            assert delta[k] == want.get(k, ABSENT)
            assert h.changed_at(k, step)
        whole.append(want)
        state = want
        records.append(Record(step, step + 1, view, delta=delta))
    for pos, want in enumerate(whole):         # earlier records read as they were
        assert {k: h.at(k, pos) for k in want} == want
    back = records_from_json([r.to_json() for r in records])
    assert [dict(r.fields) for r in back] == whole
    assert [sorted(r.delta) for r in back] == [sorted(r.delta) for r in records]
    # and the JSON's keys spell out every page
    first = records[0].to_json()["changes"]
    assert {k: v for k, v in expand(first).items()} == {
        k: (None if v is ABSENT else sorted(v)) for k, v in records[0].delta.items()}


def test_json_writes_a_run_of_own_labels_as_one_key():
    h = History()
    d = {f"B/m[{i}].frame": label(f"A/m[{i}]") for i in range(100)}
    d["B/m[100].frame"] = label("A/m[7]")
    view, delta = h.commit_delta(d)
    assert compress(delta) == {"B/m[0-99].frame": ["A/m[i]"], "B/m[100].frame": ["A/m[7]"]}
    assert compress(d) == compress(delta)
    assert view["B/m[42].frame"] == label("A/m[42]")


@pytest.mark.parametrize("key", ["A/m[3-1].ksm", "A/m[x].ksm", "nothing", "A[3].ksm"])
def test_a_malformed_key_is_refused(key):
    with pytest.raises(ValueError):
        runs_from_json({key: [True]})


def test_a_malformed_field_key_is_refused():
    with pytest.raises(ValueError, match="not a field key"):
        column_of("A/m[-1].ksm")
    assert column_of("counter.pages_shared") is None


def test_any_and_counters_keep_their_values():
    h = History()
    view, delta = h.commit_delta({"A/m[0].content": ANY, "counter.x": frozenset([1])})
    assert view["A/m[0].content"] is ANY and delta["counter.x"] == frozenset([1])
    view, delta = h.commit_delta({"A/m[0].content": ANY, "counter.x": ABSENT})
    assert dict(delta) == {"counter.x": ABSENT} and dict(view) == {"A/m[0].content": ANY}


def _random_stream(rng: random.Random, n: int) -> list[Record]:
    h = History()
    out = []
    for step in range(n):
        d = random_changes(rng, 30)
        for k in list(d):
            if k.endswith(".frame") and rng.random() < 0.7:
                d[k.replace(".frame", ".present")] = F if d[k] is ABSENT else T
        if rng.random() < 0.1:
            d["A/m[3].frame"] = rng.choice([ANY, frozenset(["A/m[3]", "Z"])])
        view, delta = h.commit_delta(d)
        out.append(Record(step, step + 1, view, delta=delta))
    return out


def test_run_comparison_matches_a_page_by_page_one():
    """compare() walks the two streams' runs; a comparison of every key of every record
    (the definition) finds the same divergences in the same order."""
    from ksmdiff.judge import compare
    from ksmdiff.judge.compare import MISSING, Divergence, _diverges

    def whole(reference, observed):
        out = []
        by_stmt = {r.stmt: r for r in reference}
        for obs in observed:
            ref = by_stmt[obs.stmt]
            d = {}
            for key in set(ref.fields) | set(obs.fields):
                got = _diverges(key, ref.fields.get(key, ABSENT), obs.fields.get(key, ABSENT))
                if got is not None:
                    d[key] = got
            missing = sorted(k for k, (_a, o) in d.items() if o == MISSING)
            rest = sorted((k for k, (_a, o) in d.items() if o != MISSING),
                          key=obs.fields.rank)
            out += [Divergence(obs.stmt, obs.line, k, *d[k]) for k in missing + rest]
        return out

    for seed in range(40):
        rng = random.Random(seed)
        a, b = _random_stream(rng, 25), _random_stream(rng, 25)
        assert compare(a, b) == whole(a, b), seed
        assert compare(a, a) == []
        # the observed stream going back to an earlier statement: judged whole again
        back = b[:10] + b[3:6] + b[10:]
        assert compare(a, back) == whole(a, back), seed
