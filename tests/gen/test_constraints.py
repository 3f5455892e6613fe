"""User constraints of ksmdiff generate (ksmdiff/gen/constraints.py): parsing with
positions, checking against the spec, search + Z3 confirmation, unsatisfiability."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksmdiff.errors import InputError
from ksmdiff.gen.confirm import Reach
from ksmdiff.gen.constraints import (Anchor, Counts, Tracker, check_constraints,
                                     confirm_constrained, generate_constrained,
                                     load_constraints, parse_constraints, parse_where)
from ksmdiff.gen.specmap import replay, world_for
from ksmdiff.gen.threeway import judge_cell
from ksmdiff.session import run_model_cell
from ksmdiff.versions import Era, KernelVersion

STALE = Path(__file__).resolve().parents[2] / "spec" / "constraints" / "stale_node.constraints"
SMALL = dict(bound=6, beam=60, exhaustive_depth=2)


def _checked(text, era=Era.V5_1_TO_5_8):
    w = world_for(era)
    return w, check_constraints(w.model, parse_where(text), Counts.load())


def test_parse_forms():
    cs = parse_constraints("at write: refcount[frame[p, v]] == 2\n"
                           "after reuse: reused_node[frame[p, v]]\n"
                           "eventually exists f: Frame . swapcache[f]\n"
                           "finally not ksm[0]; always true\n"
                           "processes == 2  # a count\n", "c.txt")
    assert [c.anchor for c in cs] == [Anchor.AT, Anchor.AFTER, Anchor.EVENTUALLY,
                                      Anchor.FINALLY, Anchor.ALWAYS, Anchor.TRACE]
    assert cs[0].label == "write" and cs[1].label == "reuse"
    assert cs[4].loc.line == 4 and cs[4].loc.column == 21
    assert cs[5].text == "processes == 2"


@pytest.mark.parametrize("text,line,col,expect", [
    ("at write refcount[frame[p, v]] == 2", 1, 10, "':'"),
    ("eventually refcount[0] ==", 1, 1, "end of the constraint"),
    ("eventually $", 1, 12, "unexpected character"),
])
def test_parse_errors_have_positions(text, line, col, expect):
    with pytest.raises(InputError) as ei:
        parse_where(text)
    e = ei.value
    assert e.location.file == "--where #1"
    assert str(e).count(expect) or expect in (e.expected or ""), str(e)
    if "end of" not in expect:
        assert (e.location.line, e.location.column) == (line, col), str(e)


def test_file_errors_name_file_line_column(tmp_path):
    p = tmp_path / "c.constraints"
    p.write_text("# comment\nat reuse: true\neventually refcount[0] = 2\n")
    with pytest.raises(InputError) as ei:
        load_constraints(p)
    assert ei.value.location.file == str(p)
    assert (ei.value.location.line, ei.value.location.column) == (3, 24)


@pytest.mark.parametrize("text,col,what,expected", [
    ("at write: refcont[frame[p, v]] == 2", 11, "unknown map 'refcont'", "map variable"),
    ("at wrte: true", 4, "unknown label or action 'wrte'", "reuse"),
    ("at settle: refcount[frame[p, v]] == 2", 27, "unknown name 'p'", "settle binds none"),
    ("alive[A]", 1, "'alive' is spec state", "anchor"),
    ("threads == 2", 1, "unknown name 'threads'", "processes"),
    ("eventually refcount[0]", 12, "expected a bool", "condition"),
    ("eventually processes == 2", 12, "'processes' is a trace count", "without an anchor"),
])
def test_unknown_names_and_types(text, col, what, expected):
    with pytest.raises(InputError) as ei:
        _checked(text)
    e = ei.value
    assert what in e.message, str(e)
    assert expected in (e.expected or ""), str(e)
    assert e.location.column == col, str(e)


def test_label_binds_the_firing_actions_parameters():
    _w, cs = _checked("at early_copy: refcount[frame[p, v]] == 2")
    assert cs[0].binds == (("p", "Proc"), ("v", "Page"))


def test_satisfiable_constraint_yields_scenarios_that_satisfy_it():
    cs = parse_where("at write: present[p, v] and refcount[frame[p, v]] == 2", 1) + parse_where("processes == 2", 2)
    gen = generate_constrained([Era.V5_1_TO_5_8], cs, wanted=2, seed=1, **SMALL)
    [rep] = gen.labels
    assert rep.status is Reach.REACHED and rep.scenarios == len(gen.scenarios) >= 1
    w = world_for(Era.V5_1_TO_5_8)
    checked = check_constraints(w.model, cs, Counts.load())
    tr = Tracker(w, checked, Counts.load())
    for g in gen.scenarios:
        assert "# where at write: present[p, v] and refcount[frame[p, v]] == 2" in g.text
        steps = [w.statement_instance(s) for s in g.scenario.statements
                 if w.statement_instance(s) is not None]
        # the explicit engine and Z3 agree that the scenario satisfies the constraints ...
        assert tr.replay(steps)
        assert confirm_constrained(w.model, w.era, steps, checked, Counts.load())
        # ... and the reference model runs it with the spec's expects holding
        assert "A: fork B" in g.text
        tw = judge_cell(run_model_cell(g.scenario, KernelVersion.parse("5.4")))
        assert not tw.failed, (g.text, tw.verdict.describe())
        run = replay(w, g.scenario)
        assert run.records


def test_a_refuted_trace_is_refuted_by_both_engines():
    w, cs = _checked("at write: present[p, v] and refcount[frame[p, v]] == 2")
    tr = Tracker(w, cs, Counts.load())
    inv = {t: n for n, t in w.text_of.items()}
    steps = [inv["A: fill buf[0] 0x01"], inv["A: write buf[0] 0x03"]]   # refcount 1
    assert not tr.replay(steps)
    assert not confirm_constrained(w.model, w.era, steps, cs, Counts.load())
    steps = [inv["A: fill buf[0] 0x01"], inv["A: fork B"], inv["A: write buf[0] 0x03"]]
    assert tr.replay(steps)
    assert confirm_constrained(w.model, w.era, steps, cs, Counts.load())


def test_stale_node_example():
    cs = load_constraints(STALE)
    assert [c.label for c in cs] == ["reuse", "anon_copy", "gkp_stale"]
    gen = generate_constrained([Era.V5_1_TO_5_8], cs, wanted=1, seed=0, bound=10, beam=200,
                               exhaustive_depth=1)
    assert gen.labels[0].status is Reach.REACHED, gen.labels[0].why
    [g] = gen.scenarios
    tw = judge_cell(run_model_cell(g.scenario, KernelVersion.parse("5.4")))
    assert not tw.failed, (g.text, tw.verdict.describe())
    assert "reuse" in tw.model_reached        # the model reuses the KSM page too


def test_missing_label_of_an_era_is_unsatisfiable_at_any_depth():
    gen = generate_constrained([Era.GE_6_7], load_constraints(STALE), wanted=1, **SMALL)
    rep = gen.labels[0]
    assert rep.status is Reach.UNREACHABLE and not gen.scenarios
    assert "has no branch reuse" in rep.why


def test_unsatisfiable_by_the_invariants():
    gen = generate_constrained([Era.V5_1_TO_5_8], parse_where("processes == 3"), wanted=1,
                               **SMALL)
    rep = gen.labels[0]
    assert rep.status is Reach.UNREACHABLE and "at any depth" in rep.why
    assert "processes is one of [0, 1, 2]" in rep.why
    gen = generate_constrained([Era.V5_1_TO_5_8],
                               parse_where("eventually exists f: Frame . ksm[f] and not used[f]"),
                               wanted=1, **SMALL)
    assert gen.labels[0].status is Reach.UNREACHABLE


def test_unsatisfiable_within_the_bound_says_the_bound():
    # two KSM frames need 4 steps at least: not within 3
    gen = generate_constrained([Era.V5_1_TO_5_8], parse_where("ksm_frames == 1"), wanted=1,
                               bound=3, beam=30, exhaustive_depth=3)
    rep = gen.labels[0]
    assert rep.status is Reach.NOT_REACHED, rep.why
    assert "at most 3 steps" in rep.why and "width 30, seed 0" in rep.why


def test_deterministic_for_a_seed():
    cs = parse_where("at write: present[p, v] and refcount[frame[p, v]] == 2")
    a = generate_constrained([Era.V5_1_TO_5_8], cs, wanted=2, seed=5, **SMALL)
    b = generate_constrained([Era.V5_1_TO_5_8], cs, wanted=2, seed=5, **SMALL)
    assert [g.text for g in a.scenarios] == [g.text for g in b.scenarios]


def test_frame_literals_turn_off_frame_symmetry():
    from ksmdiff.gen.constraints import symmetric_in
    w, cs = _checked("at write: refcount[frame[p, v]] == 2")
    assert symmetric_in(w.model, cs, "Frame")
    for text in ("finally not ksm[0]", "at write: frame[p, v] == 1"):
        w, cs = _checked(text)
        assert not symmetric_in(w.model, cs, "Frame"), text


def test_command_line(tmp_path, capsys):
    from ksmdiff.cli import main
    out = tmp_path / "out"
    small = ["--bound", "4", "--beam", "30", "--per-label", "1"]
    assert main(["generate", "--kernel", "5.4", "--out", str(out), "--where",
                 "at write refcount[frame[p, v]] == 2"] + small) == 2
    assert "--where #1:1:10: error: unexpected 'refcount'" in capsys.readouterr().err
    assert not out.exists()
    assert main(["generate", "--kernel", "5.4", "--out", str(out), "-q",
                 "--where", "processes == 3"] + small) == 1
    assert "unsatisfiable at any depth" in capsys.readouterr().out
    js = tmp_path / "r.json"
    assert main(["generate", "--kernel", "5.4", "--out", str(out), "-q", "--json", str(js),
                 "--where", "at write: present[p, v] and refcount[frame[p, v]] == 2"] + small) == 0
    [f] = list(out.rglob("*.scenario"))
    assert "# where at write: present[p, v] and refcount[frame[p, v]] == 2" in f.read_text()
    assert '"at write: present[p, v] and refcount[frame[p, v]] == 2"' in js.read_text()


def test_swap_cache_write_holds_on_the_reference_model():
    """'the page is in the swap cache when written', checked on the model's own records:
    just before one of the scenario's writes, the model shows that page swapped out."""
    from ksmdiff.scenario import ast as S
    cs = parse_where("at write: swapped[p, v] and swapcache[frame[p, v]]")
    gen = generate_constrained([Era.V5_9_TO_5_17], cs, wanted=2, seed=2, **SMALL)
    assert gen.scenarios, gen.labels[0].why
    for g in gen.scenarios:
        cell = run_model_cell(g.scenario, KernelVersion.parse("5.10"))
        assert not judge_cell(cell).failed
        recs = list(cell.records)
        seen = False
        for k, r in enumerate(recs[1:], 1):
            s = g.scenario.statements[r.stmt]
            if isinstance(s, S.Write):
                key = f"{s.proc}/{s.target.region}[{s.target.lo}].swapped"
                seen |= True in recs[k - 1].fields.get(key, frozenset())
        assert seen, g.text
