"""``ksmdiff generate``: for every branch label of the spec, user-level scenarios that reach
it, printed through the scenario printer with the spec's predicted expects.  A label's
first scenario is found by the explicit search (search.py) and confirmed by Z3; each
further one (``per_label``) is solved by Z3 over the compiled model with a blocking
clause on the shape of every earlier one: the actions' order, the number of processes,
the number of pages (confirm.py).  A label the search does not reach is checked against
the model's invariants (unreachable at any depth) before any exhaustive search.

A scenario made for one era carries expects ``on`` that era's versions; made for several
(``--all-eras``), each expect names the eras whose spec predicts it (none when all do).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ksmdiff.gen.canon import canonical_hash
from ksmdiff.gen.confirm import (DISTINCT_EXTRA_DEPTH, DistinctSolver, NoAnswer, Reach,
                                 confirm_witness, excluded_by_invariants, solve_distinct)
from ksmdiff.gen.search import (DEFAULT_BEAM, DEFAULT_BOUND, EXHAUSTIVE_DEPTH, Witness,
                                known_witnesses, search)
from ksmdiff.gen.specmap import SpecWorld, era_slug, labels_of, replay, world_for
from ksmdiff.scenario import ast as S
from ksmdiff.scenario import parse, print_scenario
from ksmdiff.observe import split_page_key
from ksmdiff.scenario import implied_features
from ksmdiff.scenario.parser import parse_raw
from ksmdiff.versions import Era, KernelVersion, has_feature

# The versions of each era, as an ``on`` clause.
ERA_ON = {
    Era.LE_5_0: "<=5.0", Era.V5_1_TO_5_8: "5.1..5.8", Era.V5_9_TO_5_17: "5.9..5.17",
    Era.V5_18: "5.18", Era.V5_19_TO_6_6: "5.19..6.6", Era.GE_6_7: ">=6.7",
}


@dataclass
class Generated:
    scenario: S.Scenario
    text: str                   # the printed scenario, header comment included
    era: Era
    label: str
    seed: int
    bound: int
    hash: str


@dataclass
class LabelReport:
    era: Era
    label: str
    status: Reach
    scenarios: int = 0
    why: str = ""

    def to_json(self) -> dict:
        return {"era": self.era.value, "label": self.label, "status": self.status.value,
                "scenarios": self.scenarios, "why": self.why}


@dataclass
class Generation:
    scenarios: list = field(default_factory=list)      # [Generated]
    labels: list = field(default_factory=list)         # [LabelReport]
    seconds: float = 0.0


def _page_name(region: str, key: str) -> tuple:
    proc, _r, idx, _f = split_page_key(key)
    return proc, idx


# The version whose features (ksmdiff.versions.FEATURE_SINCE) bound an era's scenarios:
# its oldest, so that every kernel of the era can run them.
ERA_VERSION = {era: KernelVersion.parse(v) for era, v in {
    Era.LE_5_0: "4.19", Era.V5_1_TO_5_8: "5.4", Era.V5_9_TO_5_17: "5.9", Era.V5_18: "5.18",
    Era.V5_19_TO_6_6: "5.19", Era.GE_6_7: "6.7"}.items()}


def supported_instances(world: SpecWorld, version: KernelVersion) -> tuple[set, set]:
    """The spec actions whose statements ``version`` can run, and the features the
    others would need (MADV_PAGEOUT before 5.4)."""
    allowed, lacking = set(), set()
    head = 'scenario "x"\n' + "\n".join(world.prelude) + "\n"
    for n, text in world.text_of.items():
        need = [f for f in implied_features(parse_raw(head + text + "\n"))
                if not has_feature(version, f)]
        if need:
            lacking.update(need)
        else:
            allowed.add(n)
    return allowed, lacking


def unobservable_mutant(model, cfg_model: str) -> Optional[str]:
    """Why generate + three-way judging cannot catch a spec mutant of another model than
    the user-level one ``generate`` reads (None for a mutant of that model)."""
    decl = getattr(model, "mutant", None)
    if decl is None or decl.of == cfg_model:
        return None
    return (f"mutant {decl.name} changes the {decl.of} model ({decl.doc}), not the "
            f"{cfg_model} model that scenarios are generated from and judged against: "
            f"its step ordering against ksmd is not something a user-level scenario "
            f"chooses, so no generated scenario tells it apart ('ksmdiff prove --mutants' "
            f"kills it on the {decl.of} model)")


def is_scenario(world: SpecWorld, steps) -> bool:
    """Is the scenario of ``steps`` a valid one?  The spec lets an action name pages the
    scenario language refuses (``madvise mergeable`` of a region whose pages are all
    unmapped); such a trace is no scenario."""
    from ksmdiff.errors import InputError
    body = list(world.prelude) + [world.text_of[n] for n in steps]
    try:
        parse("\n".join(['scenario "x"'] + body) + "\n", "<generated>")
    except InputError:
        return False
    return True


def fires(world: SpecWorld, steps, label: str) -> bool:
    """Does the scenario of ``steps`` (replayed as scenarios are: each step's first
    outcome) fire ``label`` at its last step?"""
    state = world.initial()
    picks = ()
    for n in steps:
        outs = world.step(state, n)
        if not outs:
            return False
        picks, state = outs[0]
    return bool(steps) and label in labels_of(picks)


def predicted_expects(world: SpecWorld, scn: S.Scenario) -> list[str]:
    """The spec's predictions after the last statement, as expect lines."""
    run = replay(world, scn)
    last = run.records[-1]
    prev = run.records[-2] if len(run.records) > 1 else None
    region = world.cfg.region
    pages = {}
    for key, vals in last.fields.items():
        proc, _r, idx, fname = split_page_key(key)
        pages.setdefault((proc, idx), {})[fname] = next(iter(vals))
    out = []
    for (proc, idx), f in pages.items():
        page = f"{proc} {region}[{idx}]"
        if f["present"]:
            out.append(f"expect {page} content {f['content']}")
            out.append(f"expect {page} {'' if f['ksm'] else 'not '}ksm")
            fault = f.get("fault")
            was_ksm = prev is not None and True in prev.fields.get(
                f"{proc}/{region}[{idx}].ksm", frozenset())
            if fault in ("reused", "copied") and was_ksm:
                out.append(f"expect {page} {fault}")
        elif f["swapped"]:
            out.append(f"expect {page} swapped")
        else:
            out.append(f"expect {page} not present")
    present = [(k, f) for k, f in pages.items() if f["present"]]
    for i, ((p1, v1), f1) in enumerate(present):
        for (p2, v2), f2 in present[i + 1:]:
            if f1["frame"] == f2["frame"]:
                out.append(f"expect {p1} {region}[{v1}] same-frame {p2} {region}[{v2}]")
            elif f1["content"] == f2["content"]:
                out.append(f"expect {p1} {region}[{v1}] not same-frame {p2} {region}[{v2}]")
    return out


def scenario_text(world: SpecWorld, witness: Witness, eras_worlds: dict, *, title: str,
                  header: list[str], tags=("generated",)) -> tuple[S.Scenario, str]:
    """The scenario of ``witness`` with the expects of every world in ``eras_worlds``."""
    body = list(world.prelude) + [world.text_of[n] for n in witness.steps]
    plain = "\n".join([f'scenario "{title}"', "tags " + ", ".join(tags)] + body) + "\n"
    scn = parse(plain, "<generated>")
    per_era = {}
    for era, w in eras_worlds.items():
        per_era[era] = predicted_expects(w, scn)
    lines = []
    for era, exps in per_era.items():
        for e in exps:
            if e not in lines:
                lines.append(e)
    expects = []
    for e in lines:
        holds = [era for era in per_era if e in per_era[era]]
        if len(holds) == len(per_era) and len(per_era) == len(Era):
            expects.append(e)
        else:
            expects.append(e + " on " + ", ".join(ERA_ON[era] for era in holds))
    full = parse(plain + "\n".join(expects) + "\n", "<generated>")
    text = "\n".join(f"# {h}" for h in header) + "\n" + print_scenario(full)
    return full, text


def generate(eras, *, per_label: int = 3, seed: int = 0, bound: int = DEFAULT_BOUND,
             beam: int = DEFAULT_BEAM, model=None, exhaustive_depth: int = EXHAUSTIVE_DEPTH,
             expect_eras=None, progress: Optional[Callable[[str], None]] = None,
             confirm: bool = True, constraints=None) -> Generation:
    """Scenarios for every branch label of every era in ``eras``; ``expect_eras``: the eras
    whose predictions the scenarios carry (default: ``eras``).  With ``constraints``
    (ksmdiff/gen/constraints.py): up to ``per_label`` scenarios per era satisfying them."""
    if constraints:
        from ksmdiff.gen.constraints import generate_constrained
        return generate_constrained(eras, constraints, wanted=per_label, seed=seed,
                                    bound=bound, beam=beam, model=model,
                                    exhaustive_depth=exhaustive_depth,
                                    expect_eras=expect_eras, progress=progress,
                                    confirm=confirm)
    if model is not None:
        from ksmdiff.gen.specmap import load_config
        why = unobservable_mutant(model, load_config().model)
        if why:
            raise ValueError(why)
    t0 = time.monotonic()
    gen = Generation()
    expect_eras = list(expect_eras or eras)
    seen = set()
    for era in eras:
        world = world_for(era, model)
        worlds = {e: world_for(e, model) for e in expect_eras}
        allowed, lacking = supported_instances(world, ERA_VERSION[era])
        excluded: dict = {}

        def hopeless(label, world=world, era=era):
            if label not in excluded:
                excluded[label] = excluded_by_invariants(world.model, era, label)
            return excluded[label]
        # the search keeps up to per_label witnesses of different shapes (actions' order,
        # processes, pages), each confirmed by Z3; where it has fewer, Z3 gives the rest,
        # each with a shape no earlier one has (blocking clauses).  (Z3 first, the search's
        # only where Z3 had no answer in time, took minutes per era: a query over the whole
        # step relation at the depth of a reuse often runs out of its 20 s.)
        # a label the beam misses: the spec's own witness (prove.toml), when it fires here
        known = known_witnesses(world, _spec_witnesses(world), allowed)
        cov = search(world, per_label=per_label, bound=bound, seed=seed, beam=beam,
                     exhaustive_depth=exhaustive_depth, allowed=allowed,
                     hopeless=hopeless if confirm else None, known=known)
        if progress:
            progress(f"{era.value}: search {cov.seconds:.1f} s, {cov.states} states, "
                     f"{len(cov.witnesses)} of {len(cov.labels)} labels")
        distinct = None         # the era's unrolling in Z3, made once for every label
        for label in cov.labels:
            ws = cov.witnesses.get(label, [])
            if ws and confirm and excluded.get(label):
                raise AssertionError(
                    f"kspec engines disagree: the explicit search reaches {label} on "
                    f"{era.value}, Z3 excludes it by the invariants")
            refused = [w for w in ws if not is_scenario(world, w.steps)]
            ws = [w for w in ws if is_scenario(world, w.steps)][:per_label]
            if refused and not ws and confirm:
                # every trace the search kept is no scenario: Z3 for one that is, with
                # their shapes blocked
                if distinct is None:
                    distinct = DistinctSolver(world.model, era, seed=seed, allowed=allowed,
                                              proc_domain=world.cfg.proc_domain,
                                              page_domain=world.cfg.page_domain)
                try:
                    steps = distinct.solve(
                        label, [list(w.steps) for w in refused], bound=bound,
                        accept=lambda st, label=label, world=world: (
                            fires(world, st, label) and is_scenario(world, st)))
                except NoAnswer:
                    steps = None
                if steps is not None:
                    ws = [Witness(label, tuple(steps), (), "Z3")]
            rep = LabelReport(era, label, Reach.REACHED if ws else Reach.NOT_REACHED)
            if refused and not ws:
                cov.unreached[label] = ("the traces that reach it (the search's, and Z3's "
                                        "with their shapes blocked) are no valid scenario")
            for w in ws:
                if confirm and not confirm_witness(world.model, era, list(w.steps), label):
                    raise AssertionError(
                        f"kspec engines disagree: the explicit search reaches {label} on "
                        f"{era.value} by {[world.text_of[n] for n in w.steps]}, Z3 does not")
            kind = [w.source for w in ws]
            while confirm and ws and len(ws) < per_label:
                if distinct is None:
                    distinct = DistinctSolver(world.model, era, seed=seed, allowed=allowed,
                                              proc_domain=world.cfg.proc_domain,
                                              page_domain=world.cfg.page_domain)
                try:
                    steps = solve_distinct(
                        world.model, era, label, [list(w.steps) for w in ws], bound=bound,
                        seed=seed, allowed=allowed, proc_domain=world.cfg.proc_domain,
                        page_domain=world.cfg.page_domain,
                        accept=lambda st, label=label, world=world: (
                            fires(world, st, label) and is_scenario(world, st)),
                        solver=distinct)
                except NoAnswer as e:
                    rep.why = f"{len(ws)} of {per_label} scenarios: {e}"
                    break
                if steps is None:
                    rep.why = (f"{len(ws)} of {per_label} scenarios: no trace of "
                               f"{len(ws[0].steps)} to {len(ws[0].steps) + DISTINCT_EXTRA_DEPTH}"
                               f" steps (at most {bound}) has another shape (actions' order, "
                               f"processes, pages)")
                    break
                ws.append(Witness(label, tuple(steps), ()))
                kind.append("Z3")
            for k, w in enumerate(ws):
                title = f"{label} on {era.value} ({k + 1} of {len(ws)})"
                how = (", found by Z3 with the shapes of the earlier ones blocked"
                       if kind[k] == "Z3" else
                       f", from {kind[k]}, confirmed by Z3")
                header = [f"generated by ksmdiff generate: branch label {label}, era "
                          f"{era.value}, seed {seed}, bound {bound}",
                          f"witness {k + 1} of {len(ws)}, {w.length} spec steps"
                          + (how if confirm else "")]
                scn, text = scenario_text(world, w, worlds, title=title, header=header,
                                          tags=("generated", label))
                h = canonical_hash(scn)
                if h in seen:
                    continue
                seen.add(h)
                gen.scenarios.append(Generated(scn, text, era, label, seed, bound, h))
                rep.scenarios += 1
            if not ws:
                if hopeless(label):
                    rep.status = Reach.UNREACHABLE
                    rep.why = ("unreachable at any depth: no state satisfying the model's "
                               "invariants fires it")
                    known = _known_unreachable(world).get(label)
                    if known:
                        rep.why += f" ({' '.join(known.split())})"

                else:
                    rep.why = cov.unreached.get(label, f"not reached within bound {bound}")
                    known = _known_unreachable(world).get(label)
                    if known:
                        rep.why += (f"; the prover lists it as unreachable "
                                    f"({' '.join(known.split())})")
                    if lacking:
                        rep.why += (f" (without {', '.join(sorted(lacking))}: not in "
                                    f"{ERA_VERSION[era]})")
            gen.labels.append(rep)
    gen.seconds = time.monotonic() - t0
    return gen


def _spec_witnesses(world: SpecWorld) -> dict:
    """label -> [(action, codes)], from prove.toml's [model.NAME.witness] (sequences the
    prover's vacuity check knows to take a branch its search does not reach)."""
    from ksmdiff.gen.specmap import _DEFAULT, world_for  # noqa: F401  (spec loaded once)
    spec = _DEFAULT.get("spec")
    if spec is None or not hasattr(spec, "config"):
        return {}
    return dict(spec.config.model(world.cfg.model).witness)


def _known_unreachable(world: SpecWorld) -> dict:
    """label -> why, from prove.toml's [model.NAME.unreachable] (the prover's list)."""
    from ksmdiff.gen.specmap import _DEFAULT, world_for  # noqa: F401  (spec loaded once)
    spec = _DEFAULT.get("spec")
    if spec is None or not hasattr(spec, "config"):
        return {}
    return dict(spec.config.model(world.cfg.model).unreachable)


def file_name(g: Generated) -> str:
    return f"{era_slug(g.era)}/{g.label}-{g.hash}.scenario"
