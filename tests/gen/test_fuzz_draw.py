"""The fuzzer's drawing: valid scenarios without Hypothesis' engine, deterministic for a
seed, and packed by the batch runner into full batches (one settle serves a batch)."""

from __future__ import annotations

import random

from ksmdiff.gen.fuzz import SpecSeeded, draw_batch
from ksmdiff.gen.specmap import world_for
from ksmdiff.gen.strategies import random_scenario
from ksmdiff.scenario import ast as A
from ksmdiff.scenario import parse, print_scenario
from ksmdiff.versions import Era

PREFIX = [["process A", "A: mmap buf 2", "A: fill buf[0] 0x01", "A: fill buf[1] 0x01",
           "A: madvise buf mergeable", "ksm settle"]]


def _seeded():
    world = world_for(Era.V5_1_TO_5_8)
    return SpecSeeded(PREFIX, sorted(world.text_of.values()))


def test_random_scenarios_are_valid_and_round_trip():
    rng = random.Random(7)
    for _ in range(300):
        scn = random_scenario(rng, max_steps=12)
        again = parse(print_scenario(scn))          # the validator agrees
        assert again.statements == scn.statements


def test_a_batch_is_deterministic_for_a_seed():
    a = draw_batch(random.Random(3), 40, _seeded())
    b = draw_batch(random.Random(3), 40, _seeded())
    c = draw_batch(random.Random(4), 40, _seeded())
    assert [print_scenario(s) for s in a] == [print_scenario(s) for s in b]
    assert [print_scenario(s) for s in a] != [print_scenario(s) for s in c]


def test_spec_seeded_scenarios_start_with_the_seed_and_stay_valid():
    seeded = _seeded()
    rng = random.Random(1)
    prefix = parse('scenario "p"\n' + "\n".join(PREFIX[0]) + "\n").statements
    grew = 0
    for _ in range(100):
        scn = seeded.draw(rng)
        grew += len(scn.statements) > len(prefix)
        assert scn.statements[:len(prefix)] == prefix
        parse(print_scenario(scn))
    assert grew > 50                               # the spec's steps extend most seeds


def test_full_language_scenarios_only_settle():
    """Their only ksm statement is 'ksm settle' and they set no knob: any number of them
    agree at every ksm statement, so the batch runner needs one settle per batch."""
    rng = random.Random(2)
    batch = draw_batch(rng, 200, None)
    ksm = [s for scn in batch for s in scn.statements
           if isinstance(s, (A.KsmScan, A.KsmSet, A.KsmSettle))]
    assert ksm and all(isinstance(s, A.KsmSettle) for s in ksm)


def test_fresh_batch_leaves_out_scenarios_already_run():
    from ksmdiff.gen.canon import canonical_hash
    from ksmdiff.gen.fuzz import fresh_batch
    seeded = _seeded()
    ran: set = set()
    first, dup1 = fresh_batch(random.Random(3), 200, seeded, 12, ran)
    hashes = [canonical_hash(s) for s in first]
    assert len(first) == 200 and len(set(hashes)) == 200 and set(hashes) == ran
    # the plain draw of the same seed repeats itself; the fresh batch took the rest
    plain = draw_batch(random.Random(3), 200, seeded, 12)
    assert len({canonical_hash(s) for s in plain}) < 200 and dup1 > 0
    # deterministic for a seed, and nothing of the first batch comes again
    again, dup2 = fresh_batch(random.Random(3), 200, seeded, 12, set())
    assert [print_scenario(s) for s in again] == [print_scenario(s) for s in first]
    assert dup2 == dup1
    nxt, _ = fresh_batch(random.Random(4), 200, seeded, 12, ran)
    assert not {canonical_hash(s) for s in nxt} & set(hashes)


def test_remembered_validity_draws_what_validating_every_step_draws():
    """SpecSeeded remembers which extensions the validator took: the draws of a seed are
    the ones that validating every candidate gives (the drawing as it was before)."""
    from ksmdiff.errors import InputError
    from ksmdiff.scenario.validate import validate
    seeded = _seeded()
    plain = _seeded()

    def draw_validating(rng):
        initial, stmts = plain.prefixes[rng.randrange(len(plain.prefixes))]
        stmts = list(stmts)
        for _ in range(rng.randint(1, plain.max_extra)):
            cand = stmts + [plain.alphabet[rng.randrange(len(plain.alphabet))]]
            try:
                validate(A.Scenario("fuzz", initial, tuple(cand)))
            except InputError:
                continue
            stmts = cand
        return A.Scenario("fuzz", initial, tuple(stmts))
    r1, r2 = random.Random(11), random.Random(11)
    got = [seeded.draw(r1) for _ in range(400)]
    want = [draw_validating(r2) for _ in range(400)]
    assert [print_scenario(s) for s in got] == [print_scenario(s) for s in want]
    assert seeded._validity and r1.random() == r2.random()
    rejected = sum(1 for v in seeded._validity.values() if not v)
    assert rejected > 0                       # some extensions were refused, and remembered


def test_full_language_draws_reach_a_ksm_page_written_while_mapped_twice():
    """Without spec seeds, the drawn scenarios still write KSM pages that several ptes map:
    a 5.1-5.8 model that reuses such a page (the reuse-mapcount-2 mutant) fails on some
    of 512 (uniform draws caught it in 0-2 of 512)."""
    from ksmdiff.gen.fuzz import _failing
    from ksmdiff.gen.threeway import judge_cell
    from ksmdiff.session import run_model_cell
    from ksmdiff.versions import KernelVersion
    v = KernelVersion.parse("5.4")
    scns = draw_batch(random.Random(1), 512, None, 12)
    caught = [s for s in scns if _failing(judge_cell(run_model_cell(s, v, "reuse-mapcount-2")))]
    assert len(caught) >= 10, len(caught)
    assert not any(_failing(judge_cell(run_model_cell(s, v))) for s in caught)
