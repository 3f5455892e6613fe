"""Delta debugging (ddmin, Zeller and Hildebrandt) over a scenario's statements.

A candidate keeps a subset of the statements (the ``process`` line always stays); it is
kept only when it is still a valid scenario (the validator accepts its printed text) and
the failure still shows: ``still_fails(scenario) -> bool`` decides, e.g. "the model of 5.4
disagrees with the spec at the same field" or "the host kernel still mismatches".
"""

from __future__ import annotations

from typing import Callable, Optional

from ksmdiff.errors import InputError
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import parse, print_scenario


def _build(scn: A.Scenario, keep: list[int]) -> Optional[A.Scenario]:
    cand = A.Scenario(scn.title, scn.initial, tuple(scn.statements[i] for i in keep),
                      scn.tags, scn.requires, scn.source)
    try:
        return parse(print_scenario(cand), scn.source)
    except InputError:
        return None


def ddmin(scn: A.Scenario, still_fails: Callable[[A.Scenario], bool],
          max_tests: int = 2000) -> A.Scenario:
    """The smallest scenario ddmin finds (1-minimal in statements when the budget lasts)."""
    items = list(range(len(scn.statements)))
    tests = [0]
    cache: dict = {}

    def test(keep) -> bool:
        key = tuple(keep)
        if key in cache:
            return cache[key]
        if tests[0] >= max_tests:
            return False
        tests[0] += 1
        cand = _build(scn, keep)
        ok = cand is not None and bool(still_fails(cand))
        cache[key] = ok
        return ok

    n = 2
    while len(items) >= 2:
        chunk = max(1, len(items) // n)
        subsets = [items[i:i + chunk] for i in range(0, len(items), chunk)]
        progressed = False
        for sub in subsets:                           # reduce to a subset
            if test(sub):
                items, n, progressed = sub, 2, True
                break
        if not progressed:
            for sub in subsets:                       # reduce to a complement
                comp = [i for i in items if i not in sub]
                if comp and test(comp):
                    items, n, progressed = comp, max(n - 1, 2), True
                    break
        if not progressed:
            if n >= len(items):
                break
            n = min(len(items), n * 2)
    out = _build(scn, items)
    return out if out is not None else scn
