"""The judge: expects, stream comparison, mismatch classification."""

from ksmdiff.judge.classify import (ENVIRONMENT, FLAKY, REPRODUCIBLE, Mismatch, MismatchGroup,
                                    classify, rank)
from ksmdiff.judge.compare import (Divergence, Tally, compare, compare_equal,
                                   first_divergence, tally)
from ksmdiff.judge.expects import FAILED, HELD, SKIPPED, ExpectResult, evaluate_expects

__all__ = ["Divergence", "ExpectResult", "Mismatch", "MismatchGroup", "Tally", "compare",
           "compare_equal", "first_divergence", "tally", "classify", "rank",
           "evaluate_expects", "HELD", "FAILED", "SKIPPED", "REPRODUCIBLE", "FLAKY",
           "ENVIRONMENT"]
