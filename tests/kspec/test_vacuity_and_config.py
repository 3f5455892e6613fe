"""`prove` means proved: ranges are not wrapped, vacuous checks are reported, a
non-inductive property is searched (not silently bounded), settings live in prove.toml,
and counterexamples go where the user says (or a temporary directory), printed as
scenarios by the scenario printer."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ksmdiff.errors import InputError
from ksmdiff.kspec import Status, load_spec, prove
from ksmdiff.kspec.internal.explicit import run_sequence
from ksmdiff.versions import Era

ERA = Era.V5_1_TO_5_8
ROOT = Path(__file__).resolve().parents[2]

REPRO = """model user
var x: 0..20 = 0
action inc() prints "inc" { x := x + 1 }
invariant small: x <= 3
"""

DEAD = """model user
var x: 0..3 = 0
action inc() prints "inc" { require x < 3  x := x + 1 }
action never() prints "never" { require x > 5  x := 0 }
invariant small: x <= 3
"""


def _spec(tmp_path, text, toml=None):
    d = tmp_path / "spec"
    d.mkdir(parents=True)
    (d / "m.kspec").write_text(text)
    if toml is not None:
        (d / "prove.toml").write_text(toml)
    return load_spec(d)


def _by_prop(results):
    return {r.prop: r for r in results}


def test_a_range_wider_than_five_bits_is_not_wrapped(tmp_path):
    spec = _spec(tmp_path, REPRO)
    assert spec.models["user"].width == 6
    res = _by_prop(prove(spec, eras=[ERA], out=tmp_path / "out"))
    assert res["small"].status == Status.FAILED
    assert len(res["small"].trace.steps) == 4          # x = 0, 1, 2, 3, 4
    assert res["bounds"].status == Status.FAILED       # 20 + 1 leaves 0..20
    assert res["vacuity"].status == Status.PROVED


def test_a_dead_action_is_reported(tmp_path):
    res = _by_prop(prove(_spec(tmp_path, DEAD), eras=[ERA], out=None))
    assert res["vacuity"].status == Status.VACUOUS
    assert "never" in res["vacuity"].note
    assert res["small"].status == Status.PROVED


def test_no_initial_state_in_range_is_vacuous(tmp_path):
    with pytest.raises(InputError) as e:                  # a literal: refused at once
        _spec(tmp_path, DEAD.replace("= 0", "= 5", 1))
    assert "m.kspec:2:" in e.value.render() and "outside 0..3" in e.value.render()
    res = _by_prop(prove(_spec(tmp_path / "b", DEAD + "init { x := 3 + 2 }\n"), eras=[ERA]))
    assert res["vacuity"].status == Status.VACUOUS
    assert "no initial state lies within the declared ranges" in res["vacuity"].note


def test_a_literal_outside_its_cells_range_is_a_check_error(tmp_path):
    with pytest.raises(InputError) as e:
        _spec(tmp_path, DEAD.replace("x := 0", "x := 25"))
    assert "m.kspec:4:" in e.value.render() and "outside the range of x" in e.value.render()


def test_an_empty_range_is_a_check_error(tmp_path):
    with pytest.raises(InputError) as e:
        _spec(tmp_path, DEAD.replace("0..3", "3..0", 1))
    assert "m.kspec:2:" in e.value.render() and "empty range" in e.value.render()


def test_a_true_non_inductive_property_is_proved_by_visiting_every_state(tmp_path):
    text = DEAD.replace("invariant small: x <= 3", "invariant p: x != 3 or x >= 2")
    text = text.replace("require x < 3", "require x < 2")        # x never reaches 3
    res = _by_prop(prove(_spec(tmp_path, text + "invariant q: x <= 2\n"), eras=[ERA]))
    assert res["q"].status == Status.PROVED and res["q"].method in ("k-induction", "explicit")


def test_prove_toml_is_checked(tmp_path):
    with pytest.raises(InputError) as e:
        _spec(tmp_path, DEAD, "[model.user]\nbound = 2\nbogus = 1\n")
    assert "prove.toml:3:" in e.value.render()
    with pytest.raises(InputError) as e:
        _spec(tmp_path / "b", DEAD, '[model.user.witness]\nnope = ["inc()"]\n')
    assert "no branch 'nope'" in e.value.render()


def test_shipped_config_holds_the_spec_knowledge():
    spec = load_spec()
    cfg = spec.config
    assert cfg.mutant_era == ERA
    assert cfg.model("user").scenario.region == "buf"
    assert cfg.model("race").bound >= 14


def test_every_witness_takes_its_branch_in_every_era_that_has_it():
    spec = load_spec()
    for mname, model in spec.models.items():
        cfg = spec.config.model(mname)
        for label, steps in cfg.witness.items():
            eras = {slug for slug, _o, lab in model.branch_labels() if lab == label}
            for era in Era:
                from ksmdiff.kspec.internal.check import ERA_SLUG
                if ERA_SLUG[era] not in eras:
                    continue
                states, hits = run_sequence(model, era, steps)
                assert states and label in {lab for _o, lab in hits}, (label, era)


def test_the_race_models_unreachable_branches_are_proved_so():
    """Its search visits every reachable state: an `unreachable` entry that the model
    does take, or a dead step that prove.toml does not explain, makes the check fail."""
    spec = load_spec()
    [r] = [r for r in prove(spec, eras=[ERA], models=["race"], props=["vacuity"])]
    assert r.status == Status.PROVED and "every reachable state" in r.note
    assert "race_no_node_copy" in r.note and "fault.f_sleep" in r.note


@pytest.mark.system                     # runs the CLI as a subprocess
def test_cli_writes_counterexamples_to_a_temporary_directory_it_names(tmp_path):
    d = tmp_path / "spec"
    d.mkdir()
    (d / "m.kspec").write_text(REPRO)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "ksmdiff.kspec.cli", "prove", "--spec", str(d),
                        "--era", "5.4"], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=300)
    assert p.returncode == 1, p.stderr
    assert sorted(os.listdir(tmp_path)) == ["spec"]          # nothing in the cwd
    line = [x for x in p.stdout.splitlines() if "are in " in x][0]
    out = Path(line.split("are in ")[1])
    assert (out / "user-5.1-5.8-small.trace").is_file()
    assert "... user 5.1-5.8: vacuity" in p.stderr          # one line per stage (no TTY)
    q = subprocess.run([sys.executable, "-m", "ksmdiff.kspec.cli", "prove", "--spec", str(d),
                        "--era", "5.4", "-q", "--out", str(tmp_path / "o")], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=300)
    assert q.stderr == "" and (tmp_path / "o" / "user-5.1-5.8-small.trace").is_file()
