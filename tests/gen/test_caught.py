"""What generate + three-way judging must catch within the default budget, reduced to at
most 8 statements: a deliberately wrong model (one era's condition flipped) and every
spec mutant of the user-level model.  Spec mutants of the race model (the freeze
protocol against ksmd) are not observable from a user-level scenario: generate refuses
them and says so.

The default budget is generate's default bound and beam (DEFAULT_BOUND, DEFAULT_BEAM)
with one scenario per label: with Z3 the first scenario of each label is the same
whatever ``--per-label`` asks (more only add scenarios), so what one per label catches,
the default of three catches too.
"""

from __future__ import annotations

import pytest

from ksmdiff.gen.generate import generate
from ksmdiff.gen.reduce import ddmin
from ksmdiff.gen.search import DEFAULT_BEAM, DEFAULT_BOUND
from ksmdiff.gen.threeway import failure_signature, judge_cell
from ksmdiff.judge.threeway import SpecModel
from ksmdiff.kspec import load_spec
from ksmdiff.session import run_model_cell
from ksmdiff.versions import Era, KernelVersion

V54 = KernelVersion.parse("5.4")
MAX_REDUCED = 8

pytestmark = pytest.mark.slow


def _caught_and_reduced(scenarios, judge):
    """The first generated scenario that fails, reduced; asserts the reduction."""
    failing = [s for s in scenarios if failure_signature(judge(s))]
    assert failing, "no generated scenario fails: not caught"
    scn = failing[0]
    want = failure_signature(judge(scn))
    small = ddmin(scn, lambda s: bool(failure_signature(judge(s)) & want))
    assert len(small.statements) <= MAX_REDUCED, (len(small.statements), small)
    assert failure_signature(judge(small)) & want
    return small


def test_a_model_with_one_era_condition_flipped_is_caught(monkeypatch):
    """5.1-5.8's reuse_ksm_page never reuses (the era's condition flipped to "copy")."""
    gen = generate([Era.V5_1_TO_5_8], per_label=1, bound=DEFAULT_BOUND, beam=DEFAULT_BEAM,
                   seed=0)
    scns = [g.scenario for g in gen.scenarios]
    assert not any(judge_cell(run_model_cell(s, V54)).failed for s in scns)   # holds first
    import ksmdiff.model.memory as mem
    monkeypatch.setattr(mem, "reuse_ksm_page", lambda m, page: False)
    small = _caught_and_reduced(scns, lambda s: judge_cell(run_model_cell(s, V54)))
    assert judge_cell(run_model_cell(small, V54)).verdict.status is SpecModel.DISAGREE


def _user_mutants():
    spec = load_spec()
    return sorted(n for n, m in spec.mutants.items() if m.mutant.of == "user")


def _race_mutants():
    spec = load_spec()
    return sorted(n for n, m in spec.mutants.items() if m.mutant.of != "user")


def test_the_mutants_are_sorted_into_user_and_race():
    assert _user_mutants() == ["reuse-mapcount-2"]
    assert _race_mutants() == ["freeze-at-2", "no-freeze", "no-stable-node-check",
                               "no-swapcache-check"]


@pytest.mark.parametrize("name", _user_mutants())
def test_each_user_level_spec_mutant_is_caught(name):
    """Scenarios generated from the mutant spec (ksmdiff generate --mutant) carry its
    predictions; the model of the era disagrees with at least one."""
    mutant = load_spec().mutants[name]
    gen = generate([Era.V5_1_TO_5_8], per_label=1, bound=DEFAULT_BOUND, beam=DEFAULT_BEAM,
                   seed=0, model=mutant)
    scns = [g.scenario for g in gen.scenarios]
    small = _caught_and_reduced(scns, lambda s: judge_cell(run_model_cell(s, V54), mutant))
    tw = judge_cell(run_model_cell(small, V54), mutant)
    assert tw.verdict.status is SpecModel.DISAGREE or tw.cell.failed


@pytest.mark.parametrize("name", _race_mutants())
def test_race_model_mutants_are_refused_as_unobservable(name, capsys, tmp_path):
    from ksmdiff.cli import main
    mutant = load_spec().mutants[name]
    with pytest.raises(ValueError, match="not something a user-level scenario"):
        generate([Era.V5_1_TO_5_8], per_label=1, model=mutant)
    assert main(["generate", "--kernel", "5.4", "--out", str(tmp_path), "--mutant",
                 name]) == 2
    err = capsys.readouterr().err
    assert f"mutant {name} changes the race model" in err and "prove --mutants" in err
    assert not any(tmp_path.iterdir())
