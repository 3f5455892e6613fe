"""Shared helpers for the model tests.  tests/conftest.py runs every test of this folder
inside ksmdiff.internal.audit.pure(): the model cannot open /sys, /proc or /dev."""

from __future__ import annotations

from ksmdiff.model import run_model
from ksmdiff.model.run import ENVIRONMENT, Interpreter
from ksmdiff.scenario import parse
from ksmdiff.versions import KernelVersion

V = KernelVersion.parse

# One representative per era, plus the edges the tables hinge on.
ERA_VERSIONS = ["4.19", "5.0", "5.1", "5.4", "5.8", "5.9", "5.17", "5.18", "5.19", "6.1",
                "6.6", "6.7", "6.12", "6.18"]
REUSE_ERA = {"5.1", "5.4", "5.8"}
# MADV_PAGEOUT exists from 5.4 on (1a4e58cce84e)
PAGEOUT_VERSIONS = [v for v in ERA_VERSIONS if KernelVersion.parse(v).mm >= (5, 4)]


def scenario(body: str, title: str = "t", requires: str = ""):
    head = f'scenario "{title}"\n'
    if requires:
        head += f"requires {requires}\n"
    return parse(head + "process A\n" + body)


def run(body: str, version: str, *, mutant=None, requires: str = ""):
    return run_model(scenario(body, requires=requires), V(version), mutant=mutant)


def interp(body: str, version: str, *, mutant=None, assume=None) -> Interpreter:
    """Run and hand back the interpreter, for tests that inspect internal state.  Without
    ``assume`` it takes the quiet branch of every assumption (swap not full, ...)."""
    full = None
    if assume is not None:
        full = {name: False for name in ENVIRONMENT}
        full.update(assume)
    it = Interpreter(scenario(body), V(version), mutant, assume=full)
    it.run()
    return it


def last_of(it: Interpreter, key):
    """The allowed set of ``key`` in the interpreter's last record."""
    return it.records[-1].fields[key]


def last(r, key):
    """The allowed set of ``key`` in the last record."""
    return r.records[-1].fields[key]


def at(r, n, key):
    """The allowed set of ``key`` in the n-th record (0-based over actions)."""
    return r.records[n].fields[key]


def one(values):
    assert isinstance(values, frozenset) and len(values) == 1, values
    return next(iter(values))
