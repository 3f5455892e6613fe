"""The status enums: one word per status, the same in records, text and comparisons."""

import json

import pytest

from ksmdiff.status import ExpectStatus, ProofStatus, Reproducibility, RunStatus

ALL = [*RunStatus, *ExpectStatus, *Reproducibility, *ProofStatus]


@pytest.mark.parametrize("s", ALL, ids=lambda s: f"{type(s).__name__}.{s.name}")
def test_a_status_is_its_word_in_text_json_and_comparison(s):
    assert str(s) == s.value and f"{s}" == s.value and f"{s:>3}" == f"{s.value:>3}"
    assert json.dumps({"status": s}) == json.dumps({"status": s.value})
    assert s == s.value and type(s)(s.value) is s


def test_words_are_unique_within_each_enum():
    for enum in (RunStatus, ExpectStatus, Reproducibility, ProofStatus):
        assert len({s.value for s in enum}) == len(enum)


def test_the_prover_and_the_prove_reports_share_one_enum():
    from ksmdiff.kspec import Status
    from ksmdiff.reports import prove_record
    assert Status is ProofStatus and prove_record.ProofStatus is ProofStatus


def test_a_record_read_back_gives_the_status_it_was_written_with():
    from ksmdiff.reports.record import Outcome, outcome
    for status, want in ((RunStatus.UNSUPPORTED, Outcome.UNSUPPORTED),
                         (RunStatus.ENVIRONMENT, Outcome.ENVIRONMENT),
                         (RunStatus.NOT_RUN, Outcome.NOT_RUN)):
        row = json.loads(json.dumps({"status": status, "expects": []}))
        assert outcome(row) is want
