"""Every status a run, an expect, a mismatch or a proof can end with, as enums.

Each is a ``str`` enum whose value is the word the JSON records carry, so a record is
written and read with the same words and a status compares equal to its word.  ``str()``
and ``format()`` give that word too (on every Python this project supports).
"""

from __future__ import annotations

import enum


class _Word(str, enum.Enum):
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class RunStatus(_Word):
    """How one scenario's run on one kernel or model ended."""
    OK = "ok"
    UNSUPPORTED = "unsupported"   # the kernel lacks a feature the scenario requires
    ENVIRONMENT = "environment"   # a bounded wait ran out, a syscall failed for a reason of the machine
    NOT_RUN = "not-run"           # e.g. no root: kernel side not run


class ExpectStatus(_Word):
    """How one ``expect`` was judged."""
    HELD = "held"
    FAILED = "failed"
    SKIPPED = "skipped"


class Reproducibility(_Word):
    """A kernel-vs-model mismatch after its re-runs."""
    REPRODUCIBLE = "reproducible"   # every re-run diverges on the same field
    FLAKY = "flaky"                 # some re-run does not
    ENVIRONMENT = "environment"     # a re-run could not observe at all


class ProofStatus(_Word):
    """What the prover established for one property (or mutant) of one era."""
    PROVED = "proved"         # for every execution (induction, or every state visited)
    BOUNDED = "bounded"       # no violation up to the bound: not a proof
    FAILED = "failed"         # a counterexample (for a mutant: the mutant is killed)
    VACUOUS = "vacuous"       # the vacuity check: an action never enabled, a branch never
                              # taken, or no initial state within the declared ranges
