"""The rule-based state machine over the full scenario language, seeded from spec states."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from ksmdiff.gen.machine import machine_for

SEED = ["process A", "A: mmap buf 2", "A: fill buf[0] 0x01", "A: fill buf[1] 0x01",
        "A: madvise buf mergeable", "ksm settle"]
FAST = settings(max_examples=15, stateful_step_count=8, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


def test_machine_runs_valid_scenarios_that_hold_on_the_model():
    run_state_machine_as_test(machine_for("6.12", [SEED]), settings=FAST)


def test_machine_catches_a_wrong_oracle_answer():
    seen = []

    def oracle(scn):
        seen.append(scn)
        return "forked" if any(type(s).__name__ == "Fork" for s in scn.statements) else None
    with pytest.raises(AssertionError, match="forked"):
        run_state_machine_as_test(machine_for("5.4", [SEED], oracle),
                                  settings=settings(FAST, max_examples=60))
    assert all(s.statements[:5] == seen[0].statements[:5] for s in seen)
