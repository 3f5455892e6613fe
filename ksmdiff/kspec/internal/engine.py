"""``prove``: the strategy over models, eras, properties and mutants.

For every model and era: joint k-induction of all invariants and step assertions (with
the base case checked by BMC to depth k) gives unbounded proofs (the user-level model
closes at k = 1, one query per action instance, shared between eras); when it does not
close, BMC to the bound, and for thread models a completeness check (no execution longer
than N steps, N found) turns BMC to N into a proof.  Equivalence claims are checked by BMC
of the product of the two eras.  Mutants are checked on the era they change (5.1-5.8):
thread models by incremental BMC, the user-level model by the explicit-state search
(explicit.py), whose trace Z3 then confirms.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ksmdiff.kspec.internal.cex import is_user_trace, to_listing, to_scenario
from ksmdiff.kspec.internal.check import ERA_SLUG, ERAS, era_contains, eras_of
from ksmdiff.kspec.internal.compile import compile_ts
from ksmdiff.kspec.internal.explicit import explore
from ksmdiff.kspec.internal.prove import (Result, bmc, confirm, counterexample_to_induction,
                                          equivalence, kinduction, longest_execution,
                                          property_names, smt2_bmc, smt2_kind, smt2_step1, write_smt2)
from ksmdiff.versions import Era

# Per model: BMC bound, k-induction limit, equivalence bound, mutant bound.
DEFAULT_BOUNDS = {
    "user": {"bound": 2, "kmax": 1, "equiv": 3, "mutant": 6},
    "race": {"bound": 24, "kmax": 2, "equiv": 0, "mutant": 24},
}
MUTANT_ERA = Era.V5_1_TO_5_8
BOOKKEEPING = ("wellformed", "bounds")      # properties that only make the others inductive


_TS_CACHE: dict = {}


def _compiled(model, era):
    """compile_ts, once per model object and era (the equivalence check reuses the eras'
    transition systems; compiling the user model takes 2-3 s)."""
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


def _bounds(model_name, bound):
    b = dict(DEFAULT_BOUNDS.get(model_name, DEFAULT_BOUNDS["user"]))
    if bound is not None:
        b["bound"] = bound
        b["mutant"] = max(bound, 1)
        b["equiv"] = min(b["equiv"], bound) if b["equiv"] else 0
    return b


def _write_cex(ts, trace, out, stem) -> str | None:
    if out is None:
        return None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if is_user_trace(trace) and trace.steps:
        path = out / f"{stem}.scenario"
        path.write_text(to_scenario(ts, trace))
    else:
        path = out / f"{stem}.trace"
        path.write_text(to_listing(ts, trace))
    return str(path)


def prove(spec, eras=None, props=None, bound=None, mutants=False, emit_smt2=None, out=None,
          models=None, progress=None, only_mutants=None):
    """Run the prover; returns a list of :class:`Result` (one per model, era, property;
    with ``mutants`` one per mutant and property)."""
    results = []
    eras = list(eras) if eras else list(ERAS)
    emit = Path(emit_smt2) if emit_smt2 else None
    manifest = []
    if not mutants:
        for mname, model in spec.models.items():
            if models and mname not in models:
                continue
            b = _bounds(mname, bound)
            for era in eras:
                if not model.actions_at(era) and not model.threads_at(era):
                    continue
                results += _prove_one(model, mname, era, props, b, None, out, emit, manifest,
                                      progress)
            for eq in model.equivs:
                if props and eq.name not in props:
                    continue
                for era in eras:
                    if not era_contains(eq.left, era):
                        continue
                    right = eras_of(eq.right)
                    if not right:
                        continue
                    t0 = time.time()
                    ts_l, ts_r = _compiled(model, era), _compiled(model, right[0])
                    tr = equivalence(ts_l, ts_r, eq, b["equiv"])
                    r = Result(mname, era, eq.name, "proved" if tr is None else "failed", "bmc",
                               b["equiv"], trace=tr, seconds=time.time() - t0,
                               note=f"vs {right[0].value}")
                    if tr is not None:
                        r.file = _write_cex(ts_l, tr, out, f"{mname}-{ERA_SLUG[era]}-{eq.name}")
                    results.append(r)
                    if progress:
                        progress(r)
    else:
        for name, model in spec.mutants.items():
            if only_mutants and name not in only_mutants:
                continue
            b = _bounds(model.name, bound)
            results += _mutant(model, name, b, props, out, emit, manifest, progress)
    if emit is not None:
        emit.mkdir(parents=True, exist_ok=True)
        (emit / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return results


def _prove_one(model, mname, era, props, b, mutant, out, emit, manifest, progress):
    t0 = time.time()
    ts = _compiled(model, era)
    names = property_names(ts)
    if props:
        names = [p for p in names if p in props]
    if not names:
        return []
    results = []
    k = kinduction(ts, property_names(ts), b["kmax"])
    base = b["bound"] if k is None else k
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
    longest = longest_execution(ts, b["bound"]) if ts.threads and k is None else None
    if longest is not None:
        base = longest
    found = bmc(ts, names, base, mutant, incremental=bool(ts.threads))
    failed = {p for p, tr in found.items() if tr is not None}
    method, depth = ("k-induction", base) if k is not None else ("bmc", base)
    if longest is not None and not failed:
        method = "complete"
    if k is not None and failed:
        method = "bmc"
    elapsed = time.time() - t0
    for p in names:
        tr = found.get(p)
        r = Result(mname, era, p, "failed" if tr is not None else "proved", method, depth,
                   k=k, trace=tr, seconds=elapsed / len(names), mutant=mutant, note=why)
        if tr is not None:
            r.file = _write_cex(ts, tr, out, f"{mname}-{ERA_SLUG[era]}-{p}")
        results.append(r)
        if progress:
            progress(r)
    if emit is not None:
        for p in names:
            path = emit / ERA_SLUG[era] / f"{mname}.{p}.bmc{base}.smt2"
            write_smt2(path, smt2_bmc(ts, p, base))
            manifest.append({"file": str(path.relative_to(emit)),
                             "expect": "sat" if p in failed else "unsat"})
        if k == 1 and not failed:
            for what, text in smt2_step1(ts, property_names(ts)):
                path = emit / ERA_SLUG[era] / f"{mname}.kind1.{what}.smt2"
                write_smt2(path, text)
                manifest.append({"file": str(path.relative_to(emit)), "expect": "unsat",
                                 "query": "kind1-step"})
        elif k is not None and not failed:
            path = emit / ERA_SLUG[era] / f"{mname}.kind{k}.smt2"
            write_smt2(path, smt2_kind(ts, property_names(ts), k))
            manifest.append({"file": str(path.relative_to(emit)), "expect": "unsat"})
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


def _mutant(model, name, b, props, out, emit, manifest, progress):
    t0 = time.time()
    ts = compile_ts(model, MUTANT_ERA)
    names = property_names(ts)
    if props:
        names = [p for p in names if p in props]
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
        r = Result(model.name, MUTANT_ERA, "*", "proved", "bmc", b["mutant"], seconds=elapsed,
                   mutant=name, note="mutant survived: no property fails within the bound")
    else:
        p, tr, depth = killer
        r = Result(model.name, MUTANT_ERA, p, "failed", "bmc", depth, trace=tr,
                   seconds=elapsed, mutant=name)
        r.file = _write_cex(ts, tr, out, f"mutant-{name}-{p}")
    if emit is not None:
        p = r.prop if r.prop != "*" else names[0]
        path = emit / "mutants" / f"{name}.{p}.bmc{r.bound}.smt2"
        write_smt2(path, smt2_bmc(ts, p, r.bound))
        manifest.append({"file": str(path.relative_to(emit)),
                         "expect": "sat" if r.status == "failed" else "unsat"})
    if progress:
        progress(r)
    return [r]
