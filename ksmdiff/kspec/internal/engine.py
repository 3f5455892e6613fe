"""``prove``: the strategy over models, eras, properties and mutants.

For every model and era: first the vacuity check (some initial state lies within the
declared ranges; every action is enabled in a state reachable within the configured
depth; every branch is taken there, by its witness in prove.toml, or is listed there as
unreachable with the reason), then joint k-induction of all invariants and step
assertions (the base case by BMC to depth k) for unbounded proofs (the user-level model
closes at k = 1, one query per action instance, shared between eras).  When induction
does not close: thread models by BMC to their longest execution (found, then a proof);
the others by the explicit-state search, a proof when it visits every reachable state,
else only *bounded*.  Equivalence claims: BMC of the product of the two eras (bounded).
Mutants are checked on prove.toml's mutant era: thread models by incremental BMC, the
user-level model by the explicit search, whose trace Z3 then confirms.  The settings
(bounds, mutant era, how a counterexample prints) are the spec's ``prove.toml``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import z3

from ksmdiff.kspec.internal.cex import (initial_cells, is_user_trace, to_listing, to_scenario,
                                        to_steps)
from ksmdiff.kspec.internal.check import (ERA_SLUG, ERA_SPAN, ERAS, era_contains, era_has,
                                         eras_of, split_facts)
from ksmdiff.kspec.internal.compile import clear_instances, compile_ts
from ksmdiff.kspec.internal.config import ModelConfig
from ksmdiff.kspec.internal.explicit import coverage, explore, run_sequence
from ksmdiff.kspec.internal.prove import (Result, Status, bmc, confirm,
                                          counterexample_to_induction, equivalence,
                                          kinduction, longest_execution, property_names,
                                          smt2_bmc, smt2_kind, smt2_step1, write_smt2, _check)

BOOKKEEPING = ("wellformed", "bounds")      # properties that only make the others inductive


_TS_CACHE: dict = {}


def _compiled(model, era):
    """compile_ts, once per model object and era (the equivalence check reuses the eras'
    transition systems)."""
    key = (id(model), era)
    hit = _TS_CACHE.get(key)
    if hit is None or hit[0] is not model:
        hit = (model, compile_ts(model, era))
        _TS_CACHE[key] = hit
    return hit[1]


def clear_caches() -> None:
    """Forget compiled models and proved induction steps (benchmarks measure cold runs)."""
    from ksmdiff.kspec.internal import prove as _p
    _TS_CACHE.clear()
    _p._STEP_CACHE.clear()
    clear_instances()


def _bounds(cfg: ModelConfig, bound) -> dict:
    b = {"bound": cfg.bound, "kmax": cfg.kmax, "equiv": cfg.equiv, "mutant": cfg.mutant}
    if bound is not None:
        b["bound"] = bound
        b["mutant"] = max(bound, 1)
        b["equiv"] = min(b["equiv"], bound) if b["equiv"] else 0
    return b


def _write_cex(ts, trace, out, stem, cfg: ModelConfig) -> str | None:
    if out is None:
        return None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.scenario is not None and is_user_trace(trace):
        path = out / f"{stem}.scenario"
        path.write_text(to_scenario(ts, trace, cfg.scenario))
    else:
        path = out / f"{stem}.trace"
        path.write_text(to_listing(ts, trace))
    return str(path)


def _keep_cex(r, ts, trace, out, stem, cfg: ModelConfig) -> None:
    """A failed result's counterexample: written under ``out``, and kept as data (its steps
    and initial state) for ``prove --json``."""
    r.file = _write_cex(ts, trace, out, stem, cfg)
    r.steps = to_steps(ts, trace)
    r.initial = initial_cells(trace)


class _Run:
    """One prove() call: its options, outputs and progress reporting."""

    def __init__(self, spec, props, bound, out, emit, progress, stage):
        self.spec, self.props, self.bound = spec, props, bound
        self.out = out
        self.emit = Path(emit) if emit else None
        self.manifest: list = []
        self.progress, self.stage_cb = progress, stage

    def stage(self, text: str) -> None:
        if self.stage_cb:
            self.stage_cb(text)

    def done(self, r: Result) -> Result:
        if self.progress:
            self.progress(r)
        return r


def prove(spec, eras=None, props=None, bound=None, mutants=False, emit_smt2=None, out=None,
          models=None, progress=None, only_mutants=None, stage=None, vacuity=True):
    """Run the prover; returns a list of :class:`Result` (per model and era the vacuity
    check and one per property; with ``mutants`` one per mutant).  ``progress(result)``
    is called for each result, ``stage(text)`` before each stage of work."""
    run = _Run(spec, props, bound, out, emit_smt2, progress, stage)
    results = []
    eras = list(eras) if eras else list(ERAS)
    if not mutants:
        for mname, model in spec.models.items():
            if models and mname not in models:
                continue
            cfg = spec.config.model(mname)
            b = _bounds(cfg, bound)
            for era in eras:
                if not model.actions_at(era) and not model.threads_at(era):
                    continue
                if vacuity and (not props or "vacuity" in props):
                    results.append(_vacuity(run, model, mname, era, cfg))
                results += _prove_one(run, model, mname, era, cfg, b, None)
            for eq in model.equivs:
                if props and eq.name not in props:
                    continue
                for era in eras:
                    if not era_contains(eq.left, era):
                        continue
                    right = eras_of(eq.right)
                    if not right:
                        continue
                    run.stage(f"{mname} {era.value}: {eq.name} vs {right[0].value} "
                              f"(BMC of both eras, depth {b['equiv']})")
                    t0 = time.time()
                    ts_l, ts_r = _compiled(model, era), _compiled(model, right[0])
                    tr = equivalence(ts_l, ts_r, eq, b["equiv"],
                                     known_l=_proved_invariant(ts_l, results, mname),
                                     known_r=_proved_invariant(ts_r, results, mname))
                    r = Result(mname, era, eq.name,
                               Status.BOUNDED if tr is None else Status.FAILED, "bmc",
                               b["equiv"], trace=tr, seconds=time.time() - t0,
                               note=f"vs {right[0].value}")
                    if tr is not None:
                        _keep_cex(r, ts_l, tr, out, f"{mname}-{ERA_SLUG[era]}-{eq.name}", cfg)
                    results.append(run.done(r))
    else:
        for name, model in spec.mutants.items():
            if only_mutants and name not in only_mutants:
                continue
            cfg = spec.config.model(model.name)
            b = _bounds(cfg, bound)
            results += _mutant(run, model, name, cfg, b)
    if run.emit is not None:
        run.emit.mkdir(parents=True, exist_ok=True)
        (run.emit / "manifest.json").write_text(json.dumps(run.manifest, indent=1))
    return results


def _proved_invariant(ts, results, mname):
    """The conjunction of the invariants of ``ts`` this run proved (unbounded) for its
    era, or None: what an equivalence check of that era may assume of every state."""
    proved = {r.prop for r in results if r.model == mname and r.era == ts.era
              and r.mutant is None and r.status == Status.PROVED and r.method != "vacuity"}
    invs = [e for p, e in ts.invariants.items() if p in proved]
    return z3.And(invs) if invs else None


def _vacuity(run, model, mname, era, cfg: ModelConfig) -> Result:
    """Do the proofs of this model and era say anything?  Some initial state lies within
    the declared ranges (else every query is vacuous); every action is enabled in a state
    reachable within ``cfg.vacuity`` steps; every branch of the era is taken there, or by
    its witness, or is listed unreachable (and indeed not taken)."""
    t0 = time.time()
    run.stage(f"{mname} {era.value}: vacuity (initial states, actions, branches)")
    ts = _compiled(model, era)
    problems, notes = [], []
    if _check([ts.init, ts.types]) is None:
        problems.append("no initial state lies within the declared ranges")
    elif _check([ts.init, z3.Not(ts.types)]) is not None:
        problems.append("an initial state lies outside the declared ranges")
    cov = coverage(model, era, cfg.vacuity, cfg.explore)
    names = list(dict.fromkeys([a.name for a in model.actions_at(era)]
                               + [f"{t.name}.{st.label}" for t in model.threads_at(era)
                                  for st in t.steps]))
    within = "in any reachable state" if cov.complete else f"within {cov.depth} steps"
    dead = [n for n in names if n not in cov.fired and n not in cfg.unreachable]
    for n in names:
        if n in cov.fired and n in cfg.unreachable:
            problems.append(f"{n} is listed unreachable but is enabled")
    if dead:
        problems.append(f"never enabled {within}: {', '.join(dead)}")
    taken = {lab for _owner, lab in cov.hits}
    labels = list(dict.fromkeys(lab for slug, _o, lab in model.branch_labels()
                                if slug == ERA_SLUG[era]))
    witnessed, missing = [], []
    for lab in labels:
        if lab in taken:
            if lab in cfg.unreachable:
                problems.append(f"branch {lab} is listed unreachable but is taken")
            continue
        if lab in cfg.witness:
            _states, hits = run_sequence(model, era, cfg.witness[lab])
            if lab in {x for _o, x in hits}:
                witnessed.append(lab)
                continue
            problems.append(f"the witness of branch {lab} does not take it: "
                            + ", ".join(cfg.witness_text[lab]))
        elif lab not in cfg.unreachable:
            missing.append(lab)
    if missing:
        problems.append(f"never taken {within} (and no witness): "
                        + ", ".join(missing))
    where = "every reachable state" if cov.complete else f"{cov.states} states to depth {cov.depth}"
    notes.append(f"{len(names)} actions enabled, {len(labels)} branches: "
                 f"{len(labels) - len(witnessed) - len([x for x in labels if x in cfg.unreachable])}"
                 f" taken in {where}")
    if witnessed:
        notes.append("by witness: " + ", ".join(witnessed))
    unreach = [x for x in names + labels if x in cfg.unreachable]
    if unreach:
        notes.append("unreachable as prove.toml says: " + ", ".join(unreach))
    split = split_facts(model.facts, era)
    if split:
        # `kernel has FACT` with FACT's first version inside the era: what is proved is the
        # era's representative; the versions on the other side of FACT are not
        notes.append(f"proved as {ERA_SPAN[era][1]}: " + ", ".join(
            f"kernel has {f} is {'true' if era_has(f, era) else 'false'} there, not in all "
            f"of {era.value}" for f in split))
    r = Result(mname, era, "vacuity", Status.VACUOUS if problems else Status.PROVED,
               "vacuity", cov.depth, seconds=time.time() - t0,
               note="; ".join(problems) if problems else "; ".join(notes))
    return run.done(r)


def _prove_one(run, model, mname, era, cfg, b, mutant):
    t0 = time.time()
    run.stage(f"{mname} {era.value}: compiling")
    ts = _compiled(model, era)
    names = property_names(ts)
    if run.props:
        names = [p for p in names if p in run.props]
    if not names:
        return []
    out, emit = run.out, run.emit
    run.stage(f"{mname} {era.value}: {b['kmax']}-induction of {len(property_names(ts))} "
              "properties")
    k = kinduction(ts, property_names(ts), b["kmax"])
    why = ""
    if k is None and b["kmax"] >= 1 and not ts.threads:
        cti = counterexample_to_induction(ts, property_names(ts))
        if cti is not None:
            why = (f"1-induction does not close: {cti.instance.name} breaks "
                   f"{', '.join(cti.broken) or 'a property'}")
            if out is not None:
                path = Path(out) / f"{mname}-{ERA_SLUG[era]}.cti"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(cti.describe())
                why += f" (state in {path})"
    found, status_of = {}, {}
    if k is not None:
        run.stage(f"{mname} {era.value}: base case (BMC to depth {k})")
        found = bmc(ts, names, k, mutant, incremental=bool(ts.threads))
        method, depth = "k-induction", k
        for p in names:
            status_of[p] = Status.PROVED
    elif ts.threads:
        run.stage(f"{mname} {era.value}: longest execution and BMC (to {b['bound']})")
        longest = longest_execution(ts, b["bound"])
        depth = longest if longest is not None else b["bound"]
        found = bmc(ts, names, depth, mutant, incremental=True)
        method = "complete" if longest is not None else "bmc"
        for p in names:
            status_of[p] = Status.PROVED if longest is not None else Status.BOUNDED
    else:
        # not inductive: search every reachable state (a proof when the search ends)
        run.stage(f"{mname} {era.value}: explicit search (up to {cfg.explore} states)")
        ex = explore(model, era, names, max_states=cfg.explore)
        depth, method = ex.depth, ("explicit" if ex.complete else "bmc")
        for p in names:
            v = ex.found.get(p)
            if v is not None:
                seq = [ts.instances.index(_same_instance(ts, st.instance)) for st in v[1]]
                tr = confirm(ts, seq, p, mutant)
                if tr is None:
                    raise AssertionError(f"kspec engines disagree: the explicit search "
                                         f"violates {p}, the Z3 formulas do not")
                found[p] = tr
            status_of[p] = Status.PROVED if ex.complete else Status.BOUNDED
        if not ex.complete:
            why = (why + "; " if why else "") + f"search stopped: {ex.reason}"
    failed = {p for p, tr in found.items() if tr is not None}
    elapsed = time.time() - t0
    results = []
    for p in names:
        tr = found.get(p)
        st = Status.FAILED if tr is not None else status_of[p]
        r = Result(mname, era, p, st, method, depth, k=k, trace=tr,
                   seconds=elapsed / len(names), mutant=mutant, note=why)
        if tr is not None:
            _keep_cex(r, ts, tr, out, f"{mname}-{ERA_SLUG[era]}-{p}", cfg)
        results.append(run.done(r))
    if emit is not None:
        for p in names:
            path = emit / ERA_SLUG[era] / f"{mname}.{p}.bmc{depth}.smt2"
            write_smt2(path, smt2_bmc(ts, p, depth))
            run.manifest.append({"file": str(path.relative_to(emit)),
                                 "expect": "sat" if p in failed else "unsat"})
        if k == 1 and not failed:
            for what, text in smt2_step1(ts, property_names(ts)):
                path = emit / ERA_SLUG[era] / f"{mname}.kind1.{what}.smt2"
                write_smt2(path, text)
                run.manifest.append({"file": str(path.relative_to(emit)), "expect": "unsat",
                                     "query": "kind1-step"})
        elif k is not None and not failed:
            path = emit / ERA_SLUG[era] / f"{mname}.kind{k}.smt2"
            write_smt2(path, smt2_kind(ts, property_names(ts), k))
            run.manifest.append({"file": str(path.relative_to(emit)), "expect": "unsat"})
    return results


def _explicit_first_violation(model, ts, names, bound, mutant):
    """A user-level model's shortest violation by breadth-first search of its states (BMC
    grows 5-7x per step there: depth 5 took Z3 5-10 min, the search about 35 s), checked
    and printed through the Z3 formulas.  A disagreement between the two semantics of the
    spec is an internal error, never a silent result."""
    ex = explore(model, ts.era, names, max_depth=bound, stop_at_first=True)
    hits = [(v[0], p, v[1]) for p, v in ex.found.items() if v is not None]
    if not hits:
        return None
    # the shallowest; at one depth a named property before the bookkeeping ones
    depth, p, steps = min(hits, key=lambda h: (h[0], h[1] in BOOKKEEPING, names.index(h[1])))
    seq = [ts.instances.index(_same_instance(ts, st.instance)) for st in steps]
    tr = confirm(ts, seq, p, mutant)
    if tr is None:
        raise AssertionError(f"kspec engines disagree: the explicit search violates {p} by "
                             f"{[st.instance.name for st in steps]}, the Z3 formulas do not")
    # a named property the same prefix breaks in its last step reads better (isolation
    # shows as content; exclusive_write only as a pte bit)
    for q in names:
        if q == p or q in BOOKKEEPING or names.index(q) > names.index(p):
            continue
        better = confirm(ts, seq[:-1] + [None], q, mutant)
        if better is not None:
            return q, better
    return p, tr


def _same_instance(ts, xi):
    for inst in ts.instances:
        if inst.name == xi.name and inst.args == xi.args:
            return inst
    raise AssertionError(f"no compiled instance {xi.name}{xi.args}")


def _mutant(run, model, name, cfg, b):
    t0 = time.time()
    era = run.spec.config.mutant_era
    run.stage(f"mutant {name}: searching a counterexample on {era.value}")
    ts = compile_ts(model, era)
    names = property_names(ts)
    if run.props:
        names = [p for p in names if p in run.props]
    if ts.threads:
        found = bmc(ts, names, b["mutant"], name, incremental=True)
        hits = sorted((len(tr.steps), names.index(p), p, tr) for p, tr in found.items()
                      if tr is not None)
        hit = (hits[0][2], hits[0][3]) if hits else None
    else:
        hit = _explicit_first_violation(model, ts, names, b["mutant"], name)
    killer = None if hit is None else (hit[0], hit[1], len(hit[1].steps))
    elapsed = time.time() - t0
    if killer is None:
        r = Result(model.name, era, "*", Status.BOUNDED, "bmc", b["mutant"],
                   seconds=elapsed, mutant=name,
                   note="mutant survived: no property fails within the bound")
    else:
        p, tr, depth = killer
        r = Result(model.name, era, p, Status.FAILED, "bmc", depth, trace=tr,
                   seconds=elapsed, mutant=name)
        _keep_cex(r, ts, tr, run.out, f"mutant-{name}-{p}", cfg)
    if run.emit is not None:
        p = r.prop if r.prop != "*" else names[0]
        path = run.emit / "mutants" / f"{name}.{p}.bmc{r.bound}.smt2"
        write_smt2(path, smt2_bmc(ts, p, r.bound))
        run.manifest.append({"file": str(path.relative_to(run.emit)),
                             "expect": "sat" if r.status == Status.FAILED else "unsat"})
    return [run.done(r)]
