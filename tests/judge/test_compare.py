"""Stream comparison by allowed-set inclusion, classification, ranking."""

from __future__ import annotations

from ksmdiff.judge import (ENVIRONMENT, FLAKY, REPRODUCIBLE, Divergence, Mismatch, classify,
                           compare, compare_equal, first_divergence, rank, tally)
from ksmdiff.observe import ANY, Record


def rec(stmt, d):
    return Record(stmt, stmt + 3, {k: (v if v is ANY else frozenset(v)) for k, v in d.items()})


MODEL = [rec(0, {"A/b[0].present": [True], "A/b[0].frame": ["A/b[0]"], "A/b[0].fault": ["reused", "copied"]}),
         rec(1, {"A/b[0].present": [True], "A/b[0].ksm": [True], "counter.cow_ksm": ANY})]


def test_inclusion_holds():
    kernel = [rec(0, {"A/b[0].present": [True], "A/b[0].frame": ["A/b[0]"], "A/b[0].fault": ["copied"]}),
              rec(1, {"A/b[0].present": [True], "A/b[0].ksm": [True], "counter.cow_ksm": [17]})]
    assert compare(MODEL, kernel) == []


def test_value_outside_set_is_the_first_divergence():
    kernel = [rec(0, {"A/b[0].present": [True], "A/b[0].frame": ["A/b[0]"], "A/b[0].fault": ["fresh"]}),
              rec(1, {"A/b[0].present": [True], "A/b[0].ksm": [False]})]
    divs = compare(MODEL, kernel)
    assert [(d.stmt, d.key) for d in divs] == [(0, "A/b[0].fault"), (1, "A/b[0].ksm")]
    first = first_divergence(divs)
    assert first.stmt == 0
    assert "kernel showed fresh" in first.describe() and "{copied, reused}" in first.describe()


def test_missing_and_extra_pages_diverge_but_missing_fields_do_not():
    kernel = [rec(0, {"A/b[0].present": [True]}),                        # no frame: skipped
              rec(1, {"A/b[1].present": [True]})]                        # b[0] gone, b[1] new
    divs = compare(MODEL, kernel)
    assert {(d.stmt, d.key) for d in divs} == {(1, "A/b[0].present"), (1, "A/b[1].present")}


def test_records_with_other_status_are_not_compared():
    kernel = [Record(0, 3, {"A/b[0].present": frozenset([False])}, status="environment")]
    assert compare(MODEL, kernel) == []


def test_compare_equal_is_two_sided():
    other = [MODEL[0], rec(1, {"A/b[0].present": [True], "A/b[0].ksm": [True, False],
                               "counter.cow_ksm": ANY})]
    assert [d.key for d in compare_equal(MODEL, other)] == ["A/b[0].ksm"]
    assert compare_equal(MODEL, MODEL) == []


def test_classify():
    d = Divergence(1, 4, "A/b[0].ksm", frozenset([True]), frozenset([False]))
    assert classify(d, [[d], [d]]) == REPRODUCIBLE
    assert classify(d, [[d], []]) == FLAKY
    assert classify(d, [[d], None]) == ENVIRONMENT


def test_rank_folds_one_bug_seen_by_many_scenarios():
    d1 = Divergence(1, 4, "A/b[0].ksm", frozenset([True]), frozenset([False]))
    d2 = Divergence(5, 9, "B/x[2].ksm", frozenset([True]), frozenset([False]))
    d3 = Divergence(2, 5, "counter.cow_ksm", frozenset([1]), frozenset([2]))
    ms = [Mismatch("a.scenario", "a", "6.18", "A: write b[0] 0x01", d1, REPRODUCIBLE, 2, 2),
          Mismatch("b.scenario", "b", "6.18", "B: write x[2] 0x01", d2, REPRODUCIBLE, 2, 2),
          Mismatch("c.scenario", "c", "6.18", "ksm settle", d3, FLAKY, 2, 1)]
    groups = rank(ms)
    assert [len(g.witnesses) for g in groups] == [2, 1]
    assert groups[0].classification == REPRODUCIBLE
    assert groups[1].classification == FLAKY


def test_tally_counts_never_sometimes_always():
    run1 = [rec(0, {"A/b[0].fault": ["copied"]})]
    run2 = [rec(0, {"A/b[0].fault": ["copied"]})]
    t = tally([run1, run2])
    assert t.frequency(0, "A/b[0].fault", "copied") == "always"
    assert t.frequency(0, "A/b[0].fault", "reused") == "never"
    assert t.unseen(MODEL) == [(0, "A/b[0].fault", "reused")]
    t2 = tally([run1, [rec(0, {"A/b[0].fault": ["reused"]})]])
    assert t2.frequency(0, "A/b[0].fault", "reused") == "sometimes"


def test_frequencies_cover_every_alternative():
    t = tally([[rec(0, {"A/b[0].fault": ["copied"]})], [rec(0, {"A/b[0].fault": ["reused"]})],
               [rec(0, {"A/b[0].fault": ["copied"]})]])
    assert t.frequencies(MODEL) == [(0, "A/b[0].fault", "copied", "sometimes"),
                                    (0, "A/b[0].fault", "reused", "sometimes")]
    t1 = tally([[rec(0, {"A/b[0].fault": ["copied"]})]])
    assert t1.frequencies(MODEL) == [(0, "A/b[0].fault", "copied", "always"),
                                     (0, "A/b[0].fault", "reused", "never")]


def test_a_frame_divergence_says_what_a_frame_label_is():
    model = [rec(0, {"A/b[1].frame": ["A/b[0]"]})]
    kernel = [rec(0, {"A/b[1].frame": ["A/b[1]"]})]
    d = first_divergence(compare(model, kernel))
    assert d.describe() == ("line 3: A/b[1].frame: kernel showed A/b[1], model allows A/b[0] "
                            "(a frame is named by the first page that maps it)")
