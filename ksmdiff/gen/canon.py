"""Canonical form of a scenario, for de-duplication: processes renamed A, B, C, ... in the
order they appear, regions r0, r1, ... in the order they are mapped, title and tags
dropped; the hash is over the canonical text (statements and expects)."""

from __future__ import annotations

import dataclasses
import hashlib

from ksmdiff.scenario import ast as A
from ksmdiff.scenario.printer import print_scenario

HASH_CHARS = 12


def _proc_name(i: int) -> str:
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(ord("A") + r) + out
    return out


def canonical(scn: A.Scenario) -> A.Scenario:
    procs = {scn.initial: _proc_name(0)}
    regions: dict[str, str] = {}

    def p(name):
        if name not in procs:
            procs[name] = _proc_name(len(procs))
        return procs[name]

    def r(name):
        if name not in regions:
            regions[name] = f"r{len(regions)}"
        return regions[name]

    def tgt(t):
        return dataclasses.replace(t, region=r(t.region))

    out = []
    for s in scn.statements:
        if isinstance(s, A.Fork):
            s = dataclasses.replace(s, proc=p(s.proc), child=p(s.child))
        elif isinstance(s, A.Mmap):
            s = dataclasses.replace(s, proc=p(s.proc), region=r(s.region))
        elif isinstance(s, A.ExpectPage):
            pred = s.predicate
            if isinstance(pred, A.SameFrame):
                pred = A.SameFrame(p(pred.proc), tgt(pred.target))
            s = dataclasses.replace(s, proc=p(s.proc), target=tgt(s.target), predicate=pred)
        else:
            changes = {}
            if getattr(s, "proc", None) is not None:   # (a machine-wide counter has none)
                changes["proc"] = p(s.proc)
            if hasattr(s, "target"):
                changes["target"] = tgt(s.target)
            if changes:
                s = dataclasses.replace(s, **changes)
        out.append(s)
    return A.Scenario("canonical", procs[scn.initial], tuple(out), (), scn.requires)


def canonical_hash(scn: A.Scenario) -> str:
    text = print_scenario(canonical(scn))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def dedupe(scenarios):
    """The first scenario of every canonical hash, in order."""
    seen = set()
    out = []
    for s in scenarios:
        h = canonical_hash(s)
        if h not in seen:
            seen.add(h)
            out.append(s)
    return out
