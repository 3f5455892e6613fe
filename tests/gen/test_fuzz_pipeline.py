"""fuzz's worker (Ahead, prepare_batch): the model's and the spec's replays of a batch made
in a forked process are those made in-process, the batches drawn do not depend on it, and
the three-way verdicts judged from them are the in-process ones.  (Marked system: the
worker is a forked process.)"""

from __future__ import annotations

import os
import random

import pytest

from ksmdiff import session
from ksmdiff.internal.ahead import Ahead
from ksmdiff.gen.fuzz import SpecSeeded, draw_batch, fuzz, prepare_batch, spec_run_of
from ksmdiff.gen.specmap import OutOfScope, world_for
from ksmdiff.gen.threeway import judge_cell
from ksmdiff.scenario import print_scenario
from ksmdiff.versions import Era, KernelVersion

V = KernelVersion.parse("5.4")
ERA = Era.of(V)
pytestmark = pytest.mark.system

PREFIX = [["process A", "A: mmap buf 2", "A: fill buf[0] 0x01", "A: fill buf[1] 0x01",
           "A: madvise buf mergeable", "ksm settle"]]


def _seeded():
    return SpecSeeded(PREFIX, sorted(world_for(ERA).text_of.values()))


def test_the_worker_makes_what_is_made_in_process():
    scns = draw_batch(random.Random(5), 16, _seeded())
    here = prepare_batch(scns, V, ERA)
    ahead = Ahead(lambda b: prepare_batch(b, V, ERA))
    try:
        ahead.submit(scns[:8])
        ahead.submit(scns[8:])
        there = ahead.result() + ahead.result()
    finally:
        ahead.close()
    assert not ahead.proc.is_alive()
    assert len(there) == len(here) == 16
    kinds = set()
    for (m1, s1), (m2, s2) in zip(here, there):
        assert m1.status == m2.status and m1.records == m2.records
        a, b = spec_run_of(s1), spec_run_of(s2)
        kinds.add(type(a))
        if isinstance(a, OutOfScope):
            assert isinstance(b, OutOfScope) and (a.stmt, a.why) == (b.stmt, b.why)
        else:
            assert a.records == b.records and a.labels == b.labels
    assert OutOfScope in kinds and len(kinds) == 2    # full-language ones are out of scope


def test_a_failing_worker_falls_back_to_making_it_here():
    parent = os.getpid()

    def fn(batch):
        if os.getpid() != parent:
            raise RuntimeError("fails in the worker only")
        return [x * 2 for x in batch]
    ahead = Ahead(fn)
    try:
        ahead.submit([1, 2])
        ahead.submit([3])
        assert ahead.result() == [2, 4]
        assert ahead.result() == [6]
    finally:
        ahead.close()


def test_fuzz_with_a_worker_draws_and_judges_as_without():
    """A model stands in for the kernel: the cells judged from the worker's replays are
    those judged in-process, batch for batch."""
    seen = {"plain": [], "ahead": []}

    def run_plain(scns):
        seen["plain"].append([print_scenario(s) for s in scns])
        return [judge_cell(session.run_model_cell(s, V)) for s in scns]

    def run_ahead(scns, prepared):
        seen["ahead"].append([print_scenario(s) for s in scns])
        made = prepared()
        out = []
        for s, (model, spec) in zip(scns, made):
            cell = session.run_model_cell(s, V)
            assert cell.records == model.records or cell.status != "ok"
            out.append(judge_cell(cell, spec_run=spec_run_of(spec)))
        plain = [judge_cell(session.run_model_cell(s, V)) for s in scns]
        assert [(t.verdict.status, sorted(t.labels)) for t in out] == \
               [(t.verdict.status, sorted(t.labels)) for t in plain]
        return out
    kw = dict(budget=2.0, seed=11, batch=12, prefixes=PREFIX,
              alphabet=sorted(world_for(ERA).text_of.values()))
    a = fuzz(run_plain, **kw)
    b = fuzz(run_ahead, prepare=lambda scns: prepare_batch(scns, V, ERA), **kw)
    n = min(a.batches, b.batches)
    assert n >= 1
    assert seen["plain"][:n] == seen["ahead"][:n]


def _slow(batch):
    import time
    time.sleep(60)
    return batch


def test_closing_ends_a_worker_busy_with_a_batch_nobody_takes():
    """The budget ran out with the next batch submitted: close() does not wait for it."""
    import time
    ahead = Ahead(_slow)
    ahead.submit([1])
    time.sleep(0.2)                         # the worker is inside _slow
    t0 = time.monotonic()
    ahead.close()
    assert time.monotonic() - t0 < 3
    assert not ahead.proc.is_alive()


def test_closing_an_idle_worker_lets_it_end_by_itself():
    ahead = Ahead(lambda b: b)
    ahead.submit([1])
    assert ahead.result() == [1]
    ahead.close()
    assert ahead.proc.exitcode == 0          # it read the end and returned, not killed
