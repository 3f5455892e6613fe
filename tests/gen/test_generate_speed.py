"""What makes covering an era fast without losing a label: the spec's own witness for a
label the beam misses, traces that are no scenario left out, and one Z3 unrolling per era
shared by every label's queries (bench/bench_generate.py measures the time)."""

from __future__ import annotations

from ksmdiff.gen.confirm import DistinctSolver, confirm_witness, solve_distinct, witness_shape_in
from ksmdiff.gen.generate import _spec_witnesses, fires, is_scenario
from ksmdiff.gen.search import known_witnesses, search
from ksmdiff.gen.specmap import world_for
from ksmdiff.versions import Era


def test_the_spec_witness_reaches_what_the_beam_misses():
    w = world_for(Era.V5_1_TO_5_8)
    known = known_witnesses(w, _spec_witnesses(w))
    kw = known["no_stable_node_copy"]
    assert kw.source == "the spec's witness list" and kw.length == 9
    assert fires(w, list(kw.steps), "no_stable_node_copy")
    cov = search(w, per_label=1, bound=3, beam=20, seed=0, exhaustive_depth=1,
                 labels=["no_stable_node_copy", "fault_fresh"], known=known)
    assert cov.witnesses["no_stable_node_copy"] == [kw]
    assert "no_stable_node_copy" not in cov.unreached
    # a witness of another era's branch does not fire here: left out, not forced
    w67 = world_for(Era.GE_6_7)
    assert "no_stable_node_copy" not in known_witnesses(w67, _spec_witnesses(w67))


def test_a_trace_the_language_refuses_is_no_scenario():
    w = world_for(Era.V5_1_TO_5_8)
    n = {text: k for k, text in w.text_of.items()}
    munmaps = [k for t, k in n.items() if t.startswith("A: munmap")]
    merge = next(k for t, k in n.items() if t == "A: madvise buf mergeable")
    assert is_scenario(w, [merge])
    assert not is_scenario(w, munmaps + [merge])


def test_one_unrolling_serves_several_labels():
    w = world_for(Era.V5_1_TO_5_8)
    ds = DistinctSolver(w.model, w.era, seed=0)
    for label in ("fault_fresh", "unstable_insert"):
        first = list(search(w, per_label=1, bound=4, beam=40, seed=0, exhaustive_depth=1,
                            labels=[label]).witnesses[label][0].steps)
        steps = solve_distinct(w.model, w.era, label, [first], bound=len(first) + 1,
                               accept=lambda s, label=label: fires(w, s, label), solver=ds)
        assert steps is not None and fires(w, steps, label)
        assert confirm_witness(w.model, w.era, steps, label)
        assert witness_shape_in(ds.ts, steps) != witness_shape_in(ds.ts, first)
    assert len(ds.steps) >= 2          # unrolled once, to the deepest query
