"""``ksmdiff fuzz``: batches of Hypothesis-drawn scenarios through a batch runner, judged three
ways; Hypothesis shrinks a failing batch, ddmin then shrinks the scenario, and every
reproducible failure is saved with the seed that found it.

Two kinds of scenarios are drawn, half each:

* *spec-seeded*: a scenario the spec generated (its actions, without expects: a state the
  explicit search found) followed by random steps of the spec's own alphabet, so that
  the spec, the model and the kernel are all compared, from interesting pages;
* *full language*: :func:`ksmdiff.gen.strategies.scenarios` (more processes, pins, zero
  pages, mprotect, exit, several regions), compared model against kernel.

``run_batch(list[Scenario]) -> list[ThreeWayCell]`` is given by the caller (the model of
a version, or the host kernel through ``ksmdiff.probe.run_kernel``'s batches).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from hypothesis import HealthCheck, Phase, given, seed as hseed, settings
from hypothesis import strategies as st

from ksmdiff.errors import InputError
from ksmdiff.gen.canon import canonical_hash
from ksmdiff.gen.reduce import ddmin
from ksmdiff.gen.strategies import scenarios as full_scenarios
from ksmdiff.gen.threeway import failure_signature
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import parse, print_scenario

SHRINK_SECONDS = 120          # Hypothesis' shrinking of one failing batch, at most


class _OutOfBudget(BaseException):
    """Ends the Hypothesis run without a failure (a BaseException: never shrunk)."""


class _ShrinkDone(BaseException):
    """Ends Hypothesis' shrinking when it has had its time; the last failure stands."""


@dataclass
class Found:
    scenario: A.Scenario          # reduced
    original: A.Scenario
    signature: tuple
    seed: int
    path: Optional[str] = None


@dataclass
class FuzzReport:
    seed: int
    scenarios: int = 0
    batches: int = 0
    seconds: float = 0.0
    found: list = field(default_factory=list)
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.scenarios / self.seconds if self.seconds else 0.0


@st.composite
def spec_seeded(draw, prefixes: Sequence[Sequence[str]], alphabet: Sequence[str],
                max_extra: int = 6) -> A.Scenario:
    """A generated scenario's actions plus up to ``max_extra`` spec actions, each kept only
    when the result is still a valid scenario."""
    lines = list(draw(st.sampled_from(list(prefixes))))
    head = 'scenario "fuzz"\n'
    for _ in range(draw(st.integers(1, max_extra))):
        cand = lines + [draw(st.sampled_from(list(alphabet)))]
        try:
            parse(head + "\n".join(cand) + "\n")
        except InputError:
            continue
        lines = cand
    return parse(head + "\n".join(lines) + "\n", "<fuzz>")


def _failing(tw) -> set:
    """What failed, reproducibly: a flaky or environment mismatch is not a finding."""
    from ksmdiff.judge import REPRODUCIBLE
    return {s for s in failure_signature(tw) if not s.startswith("expect ")
            and (not s.startswith("mismatch ") or s.endswith(f"({REPRODUCIBLE})"))}


def fuzz(run_batch: Callable, *, budget: float, seed: int, batch: int = 50,
         prefixes: Sequence[Sequence[str]] = (), alphabet: Sequence[str] = (),
         out_dir: Optional[Path] = None, run_one: Optional[Callable] = None,
         progress: Optional[Callable[[FuzzReport], None]] = None) -> FuzzReport:
    """Fuzz for ``budget`` seconds; ``run_one`` (scenario -> ThreeWayCell) re-checks and
    reduces what failed (default: ``run_batch`` of one)."""
    rep = FuzzReport(seed)
    run_one = run_one or (lambda s: run_batch([s])[0])
    t0 = time.monotonic()
    parts = [full_scenarios(max_steps=12, expects=False, knobs=False)]
    if prefixes and alphabet:
        parts.insert(0, spec_seeded(prefixes, alphabet))
    one = st.one_of(*parts)
    state = {"shrink_started": None, "last": None}
    seen_hashes = set()

    def body(scns):
        now = time.monotonic()
        if state["shrink_started"] is not None:
            if now - state["shrink_started"] > SHRINK_SECONDS:
                raise _ShrinkDone
        elif now - t0 > budget:
            raise _OutOfBudget
        cells = run_batch(list(scns))
        rep.batches += 1
        if state["shrink_started"] is None:
            rep.scenarios += len(scns)
            rep.seconds = time.monotonic() - t0
            if progress:
                progress(rep)
        for scn, tw in zip(scns, cells):
            sig = _failing(tw)
            if sig:
                if state["shrink_started"] is None:
                    state["shrink_started"] = time.monotonic()
                state["last"] = (scn, sig)
                raise AssertionError(f"{sorted(sig)}")

    def make(seed_value):
        return hseed(seed_value)(settings(
            max_examples=10 ** 9, deadline=None, database=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck))(
                given(st.lists(one, min_size=max(1, batch // 2), max_size=batch))(body)))

    test = make(seed)
    while True:
        state["shrink_started"] = None
        state["last"] = None
        try:
            test()
        except _OutOfBudget:
            break
        except KeyboardInterrupt:
            rep.interrupted = True
            break
        except (_ShrinkDone, Exception):     # the failure (or a flaky replay of it)
            pass
        if state["last"] is None:
            break
        scn, sig = state["last"]
        again = _failing(run_one(scn))
        if not (again & sig):
            continue                                 # not reproducible: keep fuzzing
        small = ddmin(scn, lambda s: bool(_failing(run_one(s)) & sig))
        h = canonical_hash(small)
        if h not in seen_hashes:
            seen_hashes.add(h)
            f = Found(small, scn, tuple(sorted(sig)), seed)
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                path = out_dir / f"fuzz-{h}.scenario"
                path.write_text(f"# found by ksmdiff fuzz, seed {seed}: {', '.join(f.signature)}\n"
                                + print_scenario(A.Scenario(f"fuzz regression {h}", small.initial,
                                                            small.statements, ("regression",))))
                f.path = str(path)
            rep.found.append(f)
        if time.monotonic() - t0 > budget:
            break
        seed += 1                                    # a fresh run after a failure
        test = make(seed)
    rep.seconds = time.monotonic() - t0
    return rep
