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


def _judged_page_by_page(scn, records, version) -> dict:
    """The long way for the expects on pages: every page read through its own
    expects._PageView and judged by expects._check_page alone.  stmt -> (status, reason)."""
    from ksmdiff.judge import expects as E
    from ksmdiff.scenario import ast as A
    by_stmt = {r.stmt: r for r in records}
    out, last = {}, None
    for i, s in enumerate(scn.statements):
        if not isinstance(s, A.EXPECT_TYPES):
            last = by_stmt.get(i, last)
            continue
        if isinstance(s, (A.ExpectPrctl, A.ExpectCounter)) or last is None or (
                s.versions is not None and not s.versions.contains(version)):
            continue
        idx = list(s.target.indices(E._page_count(scn, i, s.proc, s.target.region)))
        others = [None] * len(idx)
        if isinstance(s.predicate, A.SameFrame):
            q = s.predicate
            idx2 = list(q.target.indices(E._page_count(scn, i, q.proc, q.target.region)))
            others = ([E._PageView(last, q.proc, q.target.region, j) for j in idx2]
                      if len(idx2) > 1 else
                      [E._PageView(last, q.proc, q.target.region, idx2[0])] * len(idx))
        pages = [E._PageView(last, s.proc, s.target.region, j) for j in idx]
        need = E._kernel_may_omit(s.predicate)
        if need and any(p.mapped and p.field(need) is None for p in pages):
            out[i] = (SKIPPED, f"'{need}' was not observable on this kernel")
            continue
        seen = [(p.name(),) + E._check_page(s.predicate, p, o, s.negated)
                for p, o in zip(pages, others)]
        bad = [f"{n}: {w}" for n, ok, w in seen if not ok]
        out[i] = ((FAILED, "; ".join(bad)) if bad else
                  (HELD, "; ".join(f"{n}: {w}" for n, _ok, w in seen)))
    return out


def test_pages_reading_the_same_values_share_one_judgement():
    """evaluate_expects reads an expect's pages column by column from the record's runs
    and judges a page once per distinct tuple of the values it reads, that result
    standing for every page reading the same: the long way, every page read and judged
    on its own, gives the same results, reasons included.  On the corpus on two
    versions, on ksm01 (bench/bench_scale.py) at 64 pages per child, whose expects span
    whole regions of one KSM page's sharers, and on a scenario whose expects read mixed
    values."""
    import sys
    from pathlib import Path

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
expect A buf[1..3] not zero-page
A: fork B
A: write buf[4] 0x02
expect B buf same-frame A buf
expect B buf not same-frame A buf[1]
expect A buf[3..5] copied
A: fill buf[0..1] 0x5a
expect A buf mapcount 1
expect A buf not ksm
''', "mixed.scenario"))
    judged = 0
    for scn in scenarios:
        for v in (V54, V61):
            run = run_model(scn, v)
            if run.status != "ok":
                continue
            got = {r.stmt: (r.status, r.reason)
                   for r in evaluate_expects(scn, run.records, v)}
            want = _judged_page_by_page(scn, run.records, v)
            assert {k: got[k] for k in want} == want, (scn.title, v)
            judged += len(want)
    assert judged > 100
