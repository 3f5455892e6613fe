"""Expects judged on hand-made streams: kernel values (one each) and model sets."""

from __future__ import annotations

import pytest

from ksmdiff.judge import FAILED, HELD, SKIPPED, evaluate_expects
from ksmdiff.observe import ANY, Record
from ksmdiff.scenario import parse
from ksmdiff.versions import KernelVersion

V54, V61 = KernelVersion.parse("5.4"), KernelVersion.parse("6.1")

SCN = parse('''scenario "judge"
process A
A: mmap buf 2
A: fill buf 0x5a
ksm settle
expect A buf[0] ksm
expect A buf[0] same-frame A buf[1]
expect A buf mapcount 2 on 5.1..5.8
expect counter pages_sharing +1
A: munmap buf[1]
A: write buf[0] 0x01
expect A buf[0] reused on 5.1..5.8
expect A buf[0] not copied on 5.1..5.8
expect A buf[0] content 0x5a+0x01
expect A buf[1] unmapped
expect A buf[0] not ksm
expect counter cow_ksm +1
''')


def page(proc, region, i, **f):
    return {f"{proc}/{region}[{i}].{k}": (v if v is ANY or isinstance(v, frozenset)
                                          else frozenset([v])) for k, v in f.items()}


def stream(after_settle_frames=("A/buf[0]", "A/buf[0]"), fault=frozenset(["reused"]), ksm_after=False,
           sharing=1):
    r0 = Record(0, 3, {**page("A", "buf", 0, present=False, swapped=False, frame=None),
                       **page("A", "buf", 1, present=False, swapped=False, frame=None)})
    r1 = Record(1, 4, {**page("A", "buf", 0, present=True, frame="A/buf[0]", ksm=False, mapcount=1,
                              content="0x5a"),
                       **page("A", "buf", 1, present=True, frame="A/buf[1]", ksm=False, mapcount=1,
                              content="0x5a")})
    r2 = Record(2, 5, {**page("A", "buf", 0, present=True, frame=after_settle_frames[0],
                              ksm=True, mapcount=2, content="0x5a"),
                       **page("A", "buf", 1, present=True, frame=after_settle_frames[1],
                              ksm=True, mapcount=2, content="0x5a"),
                       "counter.pages_sharing": sharing if sharing is ANY else frozenset([sharing]),
                       "counter.cow_ksm": frozenset([0])})
    r3 = Record(7, 10, {**page("A", "buf", 0, present=True, frame="A/buf[0]", ksm=True, mapcount=1,
                               content="0x5a"),
                        "counter.pages_sharing": frozenset([sharing]),
                        "counter.cow_ksm": frozenset([0])})
    r4 = Record(8, 11, {**page("A", "buf", 0, present=True, frame="A/buf[0]", ksm=ksm_after,
                               mapcount=1, content="0x5a+0x01", fault=fault),
                        "counter.pages_sharing": frozenset([sharing]),
                        "counter.cow_ksm": frozenset([0])})
    return [r0, r1, r2, r3, r4]


def by_line(results):
    return {r.line: r for r in results}


def test_all_hold_on_54():
    res = by_line(evaluate_expects(SCN, stream(), V54))
    assert {r.status for r in res.values()} == {HELD, SKIPPED}, [
        r for r in res.values() if r.status == FAILED]
    assert res[17].status == SKIPPED and "no counter cow_ksm" in res[17].reason


def test_version_filter_skips_and_says_so():
    res = by_line(evaluate_expects(SCN, stream(fault=frozenset(["copied"])), V61))
    assert res[12].status == SKIPPED and res[12].reason == "not on 6.1"
    assert res[8].status == SKIPPED
    assert res[17].status == FAILED and "changed by {0}" in res[17].reason


def test_kernel_value_outside_predicate_fails_with_observation():
    res = by_line(evaluate_expects(SCN, stream(fault=frozenset(["copied"])), V54))
    assert res[12].status == FAILED
    assert "fault = {copied}" in res[12].reason
    assert res[13].status == FAILED


def test_model_set_holds_only_when_every_value_satisfies():
    res = by_line(evaluate_expects(SCN, stream(fault=frozenset(["reused", "copied"])), V54))
    assert res[12].status == FAILED         # reused is not guaranteed
    assert res[13].status == FAILED         # nor is "not copied"


def test_any_never_guarantees_a_value():
    res = by_line(evaluate_expects(SCN, stream(sharing=ANY), V54))
    assert res[9].status == FAILED and "any value" in res[9].reason


def test_same_frame_needs_equal_singletons():
    assert by_line(evaluate_expects(SCN, stream(("A/buf[0]", "A/buf[1]")), V54))[7].status == FAILED
    assert by_line(evaluate_expects(SCN, stream(("A/buf[0]", frozenset(["A/buf[0]", "A/buf[1]"]))),
                                    V54))[7].status == FAILED


def test_unmapped_and_negation():
    res = by_line(evaluate_expects(SCN, stream(ksm_after=True), V54))
    assert res[15].status == HELD          # buf[1] has no fields after the munmap
    assert res[16].status == FAILED        # not ksm, but ksm = {true}


@pytest.mark.parametrize("negated", [False, True])
def test_expect_before_any_record_uses_empty_state(negated):
    scn = parse(f'scenario "t"\nprocess A\nA: mmap b 1\nexpect A b[0] {"not " if negated else ""}present\n')
    r = Record(0, 3, {"A/b[0].present": frozenset([False]), "A/b[0].frame": frozenset([None])})
    (res,) = evaluate_expects(scn, [r], V54)
    assert res.status == (HELD if negated else FAILED)


def test_counter_the_stream_does_not_carry_is_skipped_not_failed():
    s = stream()
    s[-1] = Record(8, 11, {k: v for k, v in s[-1].fields.items() if k != "counter.cow_ksm"})
    res = by_line(evaluate_expects(SCN, s, V61))
    assert res[17].status == SKIPPED
    assert "not observed in this run" in res[17].reason


def test_an_expect_on_a_field_the_kernel_left_absent_is_skipped_not_failed():
    """A kernel whose KPF_KSM cannot be trusted leaves 'ksm' absent: not judged there."""
    from ksmdiff.judge.expects import SKIPPED, evaluate_expects
    from ksmdiff.observe import OK, Record
    from ksmdiff.scenario import parse
    from ksmdiff.versions import KernelVersion
    scn = parse('scenario "t"\nprocess A\nA: mmap buf 1\nA: fill buf 0x01\n'
                'expect A buf[0] ksm\nexpect A buf[0] not ksm\nexpect A buf[0] present\n')
    base = "A/buf[0]."
    fields = {base + "present": frozenset([True]), base + "swapped": frozenset([False]),
              base + "frame": frozenset(["A/buf[0]"]), base + "content": frozenset(["0x01"])}
    recs = [Record(0, 3, dict(fields), OK), Record(1, 4, dict(fields), OK)]
    got = evaluate_expects(scn, recs, KernelVersion.parse("6.12"))
    assert [r.status for r in got] == [SKIPPED, SKIPPED, "held"], got
    assert "not observable" in got[0].reason
    # with the field reported, the same expects are judged
    fields[base + "ksm"] = frozenset([False])
    recs = [Record(0, 3, dict(fields), OK), Record(1, 4, dict(fields), OK)]
    got = evaluate_expects(scn, recs, KernelVersion.parse("6.12"))
    assert [r.status for r in got] == ["failed", "held", "held"], got


def test_pages_reading_the_same_values_share_one_judgement(monkeypatch):
    """evaluate_expects judges a page once per distinct tuple of the values it reads
    (expects._reads) and reuses that result for every page reading the same: the long way,
    every page judged on its own, gives the same results, reasons included.  On the
    corpus on two versions, and on ksm01 (bench/bench_scale.py) at 64 pages per child,
    whose expects span whole regions of one KSM page's sharers."""
    import itertools
    import sys
    from pathlib import Path

    from ksmdiff.judge import expects as E
    from ksmdiff.model import run_model
    from ksmdiff.scenario import find_scenarios, parse_file

    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "bench"))
    try:
        from bench_scale import ksm01_scenario
    finally:
        sys.path.remove(str(root / "bench"))
    scenarios = [parse_file(p) for p in find_scenarios([root / "corpora"])]
    scenarios.append(parse(ksm01_scenario(64, 16), "ksm01.scenario"))
    # pages of one expect reading different values (some of these expects fail)
    scenarios.append(parse('''scenario "mixed"
process A
A: mmap buf 6
A: fill buf 0x5a
A: write buf[2] 0x01
A: madvise buf mergeable
ksm settle
expect A buf same-frame A buf[0]
expect A buf not same-frame A buf[2]
expect A buf ksm
expect A buf content 0x5a
expect A buf mapcount 5
A: fork B
A: write buf[4] 0x02
expect B buf same-frame A buf
expect B buf not same-frame A buf[1]
''', "mixed.scenario"))
    runs = [(scn, v, run_model(scn, v)) for scn in scenarios for v in (V54, V61)]
    runs = [(scn, v, r) for scn, v, r in runs if r.status == "ok"]
    short = [evaluate_expects(scn, r.records, v) for scn, v, r in runs]
    unique = itertools.count()
    monkeypatch.setattr(E, "_reads", lambda pred, page, other: next(unique))
    assert [evaluate_expects(scn, r.records, v) for scn, v, r in runs] == short
    assert any(len(res) > 1 and res[0].status == HELD for res in short)
