"""Mutants: reuse-mapcount-2 must break isolation; the others are documented no-ops or
observable-only changes at user level."""

import pytest

from ksmdiff.model import MUTANTS

from .conftest import ERA_VERSIONS, last, run

SHARED_WRITE = """A: mmap buf 1
A: fill buf 0x5a
A: madvise buf mergeable
A: fork B
B: write buf 0x01
B: write buf 0x5a
ksm settle
expect A buf[0] same-frame B buf[0]
A: write buf 0x02
"""

SINGLE = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: write buf[0] 0x01
"""

SCENARIOS = [SHARED_WRITE, SINGLE,
             SINGLE.replace("A: write", "A: madvise buf[0] pageout\nA: read buf[0]\nA: write"),
             SINGLE.replace("A: write", "A: pin buf[0]\nA: write"),
             SINGLE.replace("A: write buf[0] 0x01", "A: madvise buf[0] unmergeable"),
             """A: mmap buf 2
A: fill buf 0x5a
A: pin buf[0]
A: madvise buf mergeable
ksm scan 4
"""]


def test_reuse_mapcount_2_breaks_isolation():
    """Two processes share a KSM page, one writes, the other then sees the write."""
    clean = run(SHARED_WRITE, "5.4")
    assert clean.violations == ()
    assert last(clean, "B/buf[0].content") == {"0x5a"}
    bad = run(SHARED_WRITE, "5.4", mutant="reuse-mapcount-2")
    props = {v.prop for v in bad.violations}
    assert "isolation" in props and "writable-exclusive" in props
    v = next(v for v in bad.violations if v.prop == "isolation")
    assert (v.stmt, v.line) == (bad.records[-1].stmt, bad.records[-1].line)
    assert "B/buf[0]" in v.detail
    assert last(bad, "B/buf[0].content") == {"0x5a+0x02"}     # B sees A's write
    assert last(bad, "A/buf[0].fault") == {"reused"}


@pytest.mark.parametrize("version", ["4.19", "5.10", "5.18", "6.1", "6.18"])
def test_mutants_only_touch_the_reuse_era(version):
    for body in SCENARIOS:
        clean = run(body, version)
        for mutant in MUTANTS:
            assert run(body, version, mutant=mutant).records == clean.records, mutant


def test_freeze_at_2_turns_every_reuse_into_a_copy():
    assert last(run(SINGLE, "5.4"), "A/buf[0].fault") == {"reused"}
    r = run(SINGLE, "5.4", mutant="freeze-at-2")
    assert last(r, "A/buf[0].fault") == {"copied"} and r.violations == ()


@pytest.mark.parametrize("mutant", ["no-freeze", "no-swapcache-check", "no-stable-node-check"])
@pytest.mark.parametrize("body", SCENARIOS)
def test_quiet_mutants_change_nothing_observable(mutant, body):
    """Documented: in a quiet user-level model these guards are redundant."""
    clean = run(body, "5.4")
    mut = run(body, "5.4", mutant=mutant)
    assert mut.records == clean.records and mut.violations == ()


@pytest.mark.parametrize("version", ERA_VERSIONS)
@pytest.mark.parametrize("body", SCENARIOS)
def test_unmutated_model_has_no_violation(version, body):
    assert run(body, version).violations == ()


def test_no_stable_node_check_reuses_the_orphan_ksm_page():
    """With a KSM page left without a stable node (see test_merge), the mutant reuses it
    in place on 5.1-5.8: an observable change, no isolation break (one mapper)."""
    from .test_merge import ORPHAN
    body = ORPHAN + "B: write buf[2] 0x02\n"
    assert last(run(body, "5.4"), "B/buf[2].fault") == {"copied"}
    r = run(body, "5.4", mutant="no-stable-node-check")
    assert last(r, "B/buf[2].fault") == {"reused"} and r.violations == ()
