"""``ksmdiff fuzz``: batches of generated scenarios through a batch runner, judged three
ways; every reproducible failure is reduced (ddmin, ksmdiff/gen/reduce.py) and saved with
the seed that found it.

Scenarios are drawn from a seeded ``random.Random`` through the same walker as the public
Hypothesis strategy (:func:`ksmdiff.gen.strategies.build_statements`): Hypothesis' engine
costs tens of milliseconds per drawn scenario, more than the host kernel takes to run
one in a batch.  Two kinds, half each:

* *spec-seeded*: a scenario the spec generated (its actions, without expects: a state the
  explicit search found) followed by random steps of the spec's own alphabet, so that
  the spec, the model and the kernel are all compared, from interesting pages;
* *full language* (more processes, pins, zero pages, mprotect, exit, several regions),
  compared model against kernel; ``ksm settle`` is their only ksm statement, so the
  batch runner packs them into full batches sharing one settle.

``run_batch(list[Scenario]) -> list[ThreeWayCell]`` is given by the caller (the model of
a version, or the host kernel through ``ksmdiff.probe.run_kernel``'s batches).

On a kernel most of a batch's time is waiting (for the probes, for ksmd's scans), while
the model's replay and the spec's (:func:`prepare_batch`, pure) are CPU work that does
not depend on the kernel: with ``prepare``, a forked worker (:class:`Ahead`) makes them
(ksmdiff/internal/ahead.py) for the batch the kernel runs and for the next one, and ``run_batch(scns, prepared)``
takes them (``prepared()``: the list, in order) once the kernel is done.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ksmdiff.errors import InputError
from ksmdiff.gen.canon import canonical_hash
from ksmdiff.gen.reduce import ddmin
from ksmdiff.gen.strategies import random_scenario
from ksmdiff.gen.threeway import failure_signature
from ksmdiff.internal.gcpause import collector_paused
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import parse, print_scenario
from ksmdiff.scenario.parser import parse_raw
from ksmdiff.scenario.validate import validate


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
    duplicates: int = 0         # draws left out: a scenario already run (canonical hash)

    @property
    def rate(self) -> float:
        return self.scenarios / self.seconds if self.seconds else 0.0


def _failing(tw) -> set:
    """What failed, reproducibly: a flaky or environment mismatch is not a finding."""
    from ksmdiff.judge import REPRODUCIBLE
    return {s for s in failure_signature(tw) if not s.startswith("expect ")
            and (not s.startswith("mismatch ") or s.endswith(f"({REPRODUCIBLE})"))}


class SpecSeeded:
    """Spec-seeded scenarios drawn from a ``random.Random``: a generated scenario's actions,
    then up to ``max_extra`` actions of the spec's alphabet, each kept when the scenario
    stays valid.  The texts are parsed once; a draw only runs the validator."""

    def __init__(self, prefixes: Sequence[Sequence[str]], alphabet: Sequence[str],
                 max_extra: int = 6):
        head = 'scenario "fuzz"\n'
        self.prefixes = []
        for lines in prefixes:
            scn = parse(head + "\n".join(lines) + "\n", "<fuzz>")
            self.prefixes.append((scn.initial, scn.statements))
        self.alphabet = []
        for line in alphabet:
            raw = parse_raw(head + "process A\n" + line + "\n", "<fuzz>")
            self.alphabet.extend(raw.statements)
        self.max_extra = max_extra
        self._validity: dict = {}

    def draw(self, rng: random.Random, title: str = "fuzz") -> A.Scenario:
        k = rng.randrange(len(self.prefixes))
        initial, stmts = self.prefixes[k]
        stmts = list(stmts)
        picked: tuple = (title, k)          # the draw so far, by prefix and alphabet index
        for _ in range(rng.randint(1, self.max_extra)):
            j = rng.randrange(len(self.alphabet))
            cand = stmts + [self.alphabet[j]]
            if self._valid(picked + (j,), initial, cand, title):
                stmts = cand
                picked += (j,)
        return A.Scenario(title, initial, tuple(stmts))

    def _valid(self, key: tuple, initial: str, stmts: list, title: str) -> bool:
        """Does the validator take ``stmts``?  Remembered by ``key`` (title, prefix index,
        alphabet indices): draws share their first steps, and the validator is pure."""
        got = self._validity.get(key)
        if got is None:
            try:
                validate(A.Scenario(title, initial, tuple(stmts)))
                got = True
            except InputError:
                got = False
            if len(self._validity) >= 1 << 16:
                self._validity.clear()
            self._validity[key] = got
        return got


def draw_batch(rng: random.Random, n: int, seeded: Optional[SpecSeeded] = None,
               max_steps: int = 12) -> list:
    """``n`` scenarios, half spec-seeded (when there are seeds), half of the full language.
    The full-language ones use ``ksm settle`` as their only ksm statement (and set no
    knob), so the batch runner packs them into full batches: their ksm statements agree
    at every index, and one settle serves the whole batch; most hold no ksm statement
    at all and need no ksmd."""
    out = []
    for k in range(n):
        if seeded is not None and k % 2 == 0:
            out.append(seeded.draw(rng))
        else:
            out.append(random_scenario(rng, max_steps=max_steps, expects=False, knobs=False,
                                       scans=False))
    return out


def fresh_batch(rng: random.Random, n: int, seeded: Optional[SpecSeeded], max_steps: int,
                ran: set, max_draws: Optional[int] = None) -> tuple[list, int]:
    """Up to ``n`` scenarios none of which was run before: draws (as :func:`draw_batch`,
    one at a time, in its order) whose canonical hash is in ``ran`` or earlier in the batch
    are left out, at most ``max_draws`` draws (default ``4 n``).  ``ran`` takes the hashes
    of the scenarios returned.  Returns (scenarios, draws left out).  A third of the draws
    of a 512 batch are renamings of one another (short full-language scenarios): running
    them again tells nothing the first run did not."""
    out: list = []
    dup = 0
    limit = max_draws if max_draws is not None else 4 * n
    k = 0
    while len(out) < n and k < limit:
        one = draw_batch(rng, 1, seeded if k % 2 == 0 else None, max_steps)[0]
        k += 1
        h = canonical_hash(one)
        if h in ran:
            dup += 1
            continue
        ran.add(h)
        out.append(one)
    return out, dup


def prepare_batch(scns, version, era, spec_model=None) -> list:
    """Per scenario: the model's run on ``version`` and the spec's replay in ``era``
    (SpecRun, or ("out of scope", stmt, why): exceptions do not pickle back from a
    worker).  Pure."""
    from ksmdiff.gen.specmap import OutOfScope, replay, world_for
    from ksmdiff.internal.audit import pure
    from ksmdiff.model import run_model
    world = world_for(era, spec_model)
    out = []
    with pure():
        for scn in scns:
            model = run_model(scn, version)
            try:
                spec = replay(world, scn)
            except OutOfScope as e:
                spec = ("out of scope", e.stmt, e.why)
            out.append((model, spec))
    return out


def spec_run_of(prepared_spec):
    """The spec replay of a :func:`prepare_batch` entry, as ``judge_cell`` takes it."""
    from ksmdiff.gen.specmap import OutOfScope
    if isinstance(prepared_spec, tuple) and prepared_spec[:1] == ("out of scope",):
        return OutOfScope(prepared_spec[1], prepared_spec[2])
    return prepared_spec


def _save(f: Found, out_dir: Path, h: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"fuzz-{h}.scenario"
    path.write_text(f"# found by ksmdiff fuzz, seed {f.seed}: {', '.join(f.signature)}\n"
                    + print_scenario(A.Scenario(f"fuzz regression {h}", f.scenario.initial,
                                                f.scenario.statements, ("regression",))))
    f.path = str(path)


def fuzz(run_batch: Callable, *, budget: float, seed: int, batch: int = 512,
         prefixes: Sequence[Sequence[str]] = (), alphabet: Sequence[str] = (),
         out_dir: Optional[Path] = None, run_one: Optional[Callable] = None,
         progress: Optional[Callable[[FuzzReport], None]] = None,
         max_steps: int = 12, prepare: Optional[Callable] = None) -> FuzzReport:
    """Fuzz for ``budget`` seconds: batches of ``batch`` scenarios drawn from
    ``random.Random(seed)`` (the drawing is deterministic for a seed), each batch one call
    of ``run_batch``.  A failure is re-checked alone with ``run_one`` (scenario ->
    ThreeWayCell; default ``run_batch`` of one): only a reproducible one is reduced
    (ddmin) and saved.  Ctrl-C keeps what was found.  ``prepare(batch)``: the kernel-
    independent part of judging a batch (:func:`prepare_batch`), made in a worker
    (:class:`Ahead`) while the kernel runs; ``run_batch`` is then called as
    ``run_batch(scns, prepared)``.  The scenarios drawn do not depend on it."""
    rep = FuzzReport(seed)
    run_one = run_one or (lambda s: run_batch([s])[0])
    t0 = time.monotonic()
    rng = random.Random(seed)
    seeded = SpecSeeded(prefixes, alphabet) if prefixes and alphabet else None
    seen_hashes: set = set()
    if prepare is not None:
        from ksmdiff.internal.ahead import Ahead
    ahead = Ahead(prepare) if prepare is not None else None
    ran: set = set()
    scns, dup = fresh_batch(rng, batch, seeded, max_steps, ran)
    rep.duplicates += dup
    if ahead is not None:
        ahead.submit(scns)
    try:
        while time.monotonic() - t0 < budget:
            if not scns:
                break                   # every draw is a scenario already run
            # bulk work on acyclic objects (gcpause.py); the batch's cells are dropped
            # before the collector is back, so that its first pass has little to walk
            with collector_paused():
                nxt, dup = fresh_batch(rng, batch, seeded, max_steps, ran)
                rep.duplicates += dup
                if ahead is not None:
                    ahead.submit(nxt)       # made while the kernel runs this batch
                    cells = run_batch(scns, ahead.result)
                else:
                    cells = run_batch(scns)
                failing = [(scn, sig) for scn, sig in zip(scns, map(_failing, cells)) if sig]
                del cells
            rep.batches += 1
            rep.scenarios += len(scns)
            rep.seconds = time.monotonic() - t0
            if progress:
                progress(rep)
            for scn, sig in failing:
                h0 = canonical_hash(scn)
                if h0 in seen_hashes:
                    continue
                seen_hashes.add(h0)
                if not (_failing(run_one(scn)) & sig):
                    continue                         # not reproducible: keep fuzzing
                small = ddmin(scn, lambda s: bool(_failing(run_one(s)) & sig))
                h = canonical_hash(small)
                if h in seen_hashes and h != h0:
                    continue
                seen_hashes.add(h)
                f = Found(small, scn, tuple(sorted(sig)), seed)
                if out_dir is not None:
                    _save(f, out_dir, h)
                rep.found.append(f)
            scns = nxt
    except KeyboardInterrupt:
        rep.interrupted = True
    finally:
        if ahead is not None:
            ahead.close()
    rep.seconds = time.monotonic() - t0
    return rep
