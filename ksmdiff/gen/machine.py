"""A Hypothesis ``RuleBasedStateMachine`` over the full scenario language.

The machine grows one scenario statement by statement; what a rule may name (live
processes, mapped pages, writable pages, pins) comes from the one layout walker
(ksmdiff/scenario/layout.py), so every step is valid and the validator agrees.  It starts
from a *seed*: the actions of a scenario the spec generated (a state the explicit search
found: a KSM page, a stale node, a swapped page), so random steps begin at interesting
pages.  After every step the oracle judges the scenario so far (default: the model of
``VERSION`` breaks no invariant and, where the spec describes the scenario, agrees with it).

Use :func:`machine_for` to make a machine class for a version, seeds and oracle; run it
with ``run_state_machine_as_test`` or as a pytest ``TestCase``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ksmdiff.gen.threeway import judge_cell
from ksmdiff.judge.threeway import SpecModel
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import parse, print_scenario
from ksmdiff.scenario.layout import Layout
from ksmdiff.session import run_model_cell
from ksmdiff.versions import KernelVersion

BYTES = (0x11, 0x22, 0x5A)
MAX_PROCS = 4
MAX_REGIONS = 3
MAX_STATEMENTS = 24


def _seed_statements(lines: Sequence[str]) -> A.Scenario:
    return parse('scenario "seed"\n' + "\n".join(lines) + "\n", "<seed>")


def default_oracle(version: KernelVersion) -> Callable[[A.Scenario], Optional[str]]:
    """None when the scenario is fine on the model of ``version``, else what is wrong."""
    def check(scn: A.Scenario) -> Optional[str]:
        tw = judge_cell(run_model_cell(scn, version))
        if tw.cell.violations:
            return f"model invariant: {tw.cell.violations[0]}"
        if tw.verdict.status is SpecModel.DISAGREE:
            return tw.verdict.describe()
        return None
    return check


def machine_for(version: str = "6.12", seeds: Sequence[Sequence[str]] = (),
                oracle: Optional[Callable[[A.Scenario], Optional[str]]] = None):
    """A machine class; ``seeds``: statement lines (``process A`` first) to start from."""
    v = KernelVersion.parse(version)
    check = oracle or default_oracle(v)
    seed_scns = [_seed_statements(s) for s in seeds] or [
        _seed_statements(["process A", "A: mmap buf 2"])]

    class ScenarioMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.initial = "A"
            self.stmts: list = []
            self.layout = Layout.start("A")

        # ------------------------------------------------------------------ helpers
        def add(self, s) -> None:
            self.stmts.append(s)
            self.layout.apply(s)

        def scenario(self) -> A.Scenario:
            return A.Scenario("machine", self.initial, tuple(self.stmts))

        def pages(self, *, writable=False, proc=None):
            out = []
            for p in self.layout.alive():
                if proc is not None and p != proc:
                    continue
                for rn, r in self.layout.procs[p].regions.items():
                    for i in range(r.npages):
                        if r.mapped[i] and (not writable or r.prot[i] == "rw"):
                            out.append((p, rn, i))
            return out

        def room(self) -> bool:
            return len(self.stmts) < MAX_STATEMENTS

        # ------------------------------------------------------------------ rules
        @initialize(seed=st.sampled_from(seed_scns))
        def start(self, seed):
            self.initial = seed.initial
            self.layout = Layout.start(seed.initial)
            for s in seed.statements:
                if A.is_action(s):
                    self.add(s)

        @precondition(lambda self: self.room())
        @rule(data=st.data(), n=st.integers(1, 4))
        def mmap(self, data, n):
            alive = self.layout.alive()
            p = data.draw(st.sampled_from(alive))
            names = {rn for q in self.layout.procs.values() for rn in q.regions}
            if len(names) >= MAX_REGIONS:
                return
            self.add(A.Mmap(p, f"r{len(names)}", n))

        @precondition(lambda self: self.room())
        @rule(data=st.data(), kind=st.sampled_from(["fill", "write", "read"]))
        def touch(self, data, kind):
            pages = self.pages(writable=kind != "read")
            if not pages:
                return
            p, rn, i = data.draw(st.sampled_from(pages))
            t = A.Target(rn, i, i)
            if kind == "fill":
                self.add(A.Fill(p, t, data.draw(st.sampled_from((None,) + BYTES))))
            elif kind == "write":
                self.add(A.Write(p, t, data.draw(st.sampled_from(BYTES))))
            else:
                self.add(A.Read(p, t))

        @precondition(lambda self: self.room())
        @rule(data=st.data(), what=st.sampled_from(
            ["mergeable", "mergeable", "unmergeable", "pageout", "dontneed", "ro", "rw",
             "munmap", "pin"]))
        def page_op(self, data, what):
            pages = self.pages()
            if not pages:
                return
            p, rn, i = data.draw(st.sampled_from(pages))
            t = A.Target(rn, i, i)
            if what in ("ro", "rw"):
                self.add(A.Mprotect(p, t, what))
            elif what == "munmap":
                self.add(A.Munmap(p, t))
            elif what == "pin":
                if self.layout.procs[p].pins.get((rn, i), 0) < 2:
                    self.add(A.Pin(p, t))
            else:
                self.add(A.Madvise(p, t, what))

        @precondition(lambda self: self.room())
        @rule(data=st.data())
        def unpin(self, data):
            pinned = [(p, key) for p in self.layout.alive()
                      for key, n in self.layout.procs[p].pins.items() if n > 0]
            if pinned:
                p, (rn, i) = data.draw(st.sampled_from(pinned))
                self.add(A.Unpin(p, A.Target(rn, i, i)))

        @precondition(lambda self: self.room() and len(self.layout.procs) < MAX_PROCS)
        @rule(data=st.data())
        def fork(self, data):
            p = data.draw(st.sampled_from(self.layout.alive()))
            child = next(c for c in "ABCDEFGH" if c not in self.layout.procs)
            self.add(A.Fork(p, child))

        @precondition(lambda self: self.room() and len(self.layout.alive()) > 1)
        @rule(data=st.data())
        def exit(self, data):
            self.add(A.Exit(data.draw(st.sampled_from(self.layout.alive()))))

        @precondition(lambda self: self.room())
        @rule(scans=st.sampled_from([0, 0, 1, 2]))
        def ksm(self, scans):
            self.add(A.KsmSettle() if scans == 0 else A.KsmScan(scans))

        # ------------------------------------------------------------------ oracle
        @invariant()
        def holds(self):
            scn = parse(print_scenario(self.scenario()), "<machine>")   # the validator agrees
            why = check(scn)
            assert why is None, f"{why}\n{print_scenario(scn)}"

    ScenarioMachine.__name__ = f"ScenarioMachine_{version.replace('.', '_')}"
    return ScenarioMachine
