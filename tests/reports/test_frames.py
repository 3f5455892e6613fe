"""The frame graph after every statement: the data read from observation records and its
drawing (KSM frames, stable nodes, faults)."""

from __future__ import annotations

from ksmdiff.reports.frames import UNKNOWN, frame_state, frame_steps, last_ksm_step
from ksmdiff.reports.record import load
from ksmdiff.reports.svg import frame_svg


def _rec(line, fields):
    return {"stmt": line, "line": line, "status": "ok", "fields": fields}


MERGED = _rec(5, {
    "A/buf[0].frame": ["A/buf[0]"], "A/buf[0].ksm": [True], "A/buf[0].mapcount": [2],
    "A/buf[1].frame": ["A/buf[0]"], "A/buf[1].ksm": [True], "A/buf[1].mapcount": [2],
    "B/buf[0].frame": ["B/buf[0]"], "B/buf[0].ksm": [False], "B/buf[0].fault": ["copied"],
    "B/buf[1].frame": [None], "B/buf[1].swapped": [True],
    "counter.pages_shared": [1]})


def test_a_state_links_ptes_to_frames_and_ksm_frames_to_stable_nodes():
    s = frame_state(MERGED)
    assert s.processes == ("A", "B") and s.frames == ("A/buf[0]", "B/buf[0]")
    assert s.ksm == {"A/buf[0]"} and s.stable_nodes == 1 and s.nodes_per_frame
    b0 = next(p for p in s.ptes if (p.process, p.index) == ("B", 0))
    assert b0.fault == "copied" and b0.frame == "B/buf[0]"
    svg = frame_svg(s, "after line 5")
    assert svg.count('data-ksm="true"') == 1 and svg.count('data-stable-node="linked"') == 1
    assert 'data-fault="copied"' in svg and "buf[1] swap" in svg


def test_fewer_stable_nodes_than_ksm_frames_is_said_not_guessed():
    two_ksm = dict(MERGED["fields"], **{"B/buf[0].ksm": [True], "counter.pages_shared": [1]})
    s = frame_state(_rec(6, two_ksm))
    assert s.ksm == {"A/buf[0]", "B/buf[0]"} and not s.nodes_per_frame
    svg = frame_svg(s, "x")
    assert svg.count('data-stable-node="unlinked"') == 1 and "which is whose" in svg
    none = frame_svg(frame_state(_rec(6, dict(MERGED["fields"],
                                               **{"counter.pages_shared": [0]}))), "x")
    assert "data-stable-node=" not in none and 'data-no-stable-node="true"' in none


def test_a_field_the_model_allows_several_values_for_is_unknown():
    fields = dict(MERGED["fields"], **{"A/buf[0].frame": ["A/buf[0]", "B/buf[0]"],
                                       "counter.pages_shared": "*"})
    s = frame_state(_rec(7, fields))
    a0 = next(p for p in s.ptes if (p.process, p.index) == ("A", 0))
    assert a0.frame is UNKNOWN and s.stable_nodes is UNKNOWN
    assert "buf[0] map 2 ?" in frame_svg(s, "x")


def test_every_statement_of_a_run_has_a_state(run_json):
    rec = load(str(run_json))
    r = next(r for r in rec["results"]
             if r["source"].endswith("fork-after-merge.scenario") and r["target"] == "5.4")
    steps = frame_steps(r)
    assert [s.line for s in steps] == [o["line"] for o in r["observations"]]
    assert not steps[0].ksm and last_ksm_step(steps).ksm
    assert any(len(s.processes) == 2 for s in steps)          # after the fork
