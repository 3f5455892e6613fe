"""The spec's rmap_items on stable nodes (spec/ksmd.kspec) and ``kernel has FACT``.

A node whose rmap_items have all gone takes no new sharer (is_page_sharing_candidate()),
and from 6.11 (d58a361b0350, ``ksm_checksum_first``) cmp_and_merge_page() removes the
scanned page's own rmap_item before stable_tree_search().  So a page asking to merge again
rejoins the node of its paged-out twin up to 6.10 and not from 6.11: the spec and the
reference model must say the same in every era (corpora/matrix/pageout-orphaned-node-rejoin).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ksmdiff.errors import InputError
from ksmdiff.gen.specmap import replay, world_for
from ksmdiff.gen.threeway import judge_cell
from ksmdiff.judge.threeway import SpecModel
from ksmdiff.kspec import load_spec
from ksmdiff.kspec.internal.check import build_model, era_has, fact_gaps, split_facts
from ksmdiff.kspec.internal.explicit import Machine
from ksmdiff.kspec.internal.parse import parse_text
from ksmdiff.scenario import parse
from ksmdiff.session import run_model_cell
from ksmdiff.versions import Era, KernelVersion

ROOT = Path(__file__).resolve().parents[2]
REJOIN = ROOT / "corpora" / "matrix" / "pageout-orphaned-node-rejoin.scenario"

# The rejoin scenario's statements, without its expects: B's two pages merge, buf[1] is
# unmerged and asks again, buf[0] (the node's only mapping) is paged out.
REJOIN_STEPS = """scenario "rejoin"
process A
A: mmap buf 2
A: fork B
B: fill buf[1] 0x02
B: madvise buf mergeable
B: fill buf[0] 0x02
ksm settle
B: madvise buf[1] unmergeable
B: madvise buf mergeable
B: madvise buf[0] pageout
ksm settle
"""

# The mirror: the page asking again is scanned before its paged-out twin, whose rmap_item
# is still on the node then: every era merges.
MIRROR_STEPS = REJOIN_STEPS.replace("unmergeable\n", "UNM\n").replace(
    "buf[1] UNM", "buf[0] unmergeable").replace("buf[0] pageout", "buf[1] pageout")


def _last_ksm(era: Era, text: str, page: str, version=None) -> bool:
    run = replay(world_for(era, version=version), parse(text, "<test>"))
    fields = run.records[-1].fields
    return True in fields[f"B/buf[{page}].ksm"]


@pytest.mark.parametrize("era", list(Era))
def test_the_paged_out_nodes_old_sharer_rejoins_up_to_6_10_only(era):
    # (<= 5.0 kernels have no MADV_PAGEOUT; the spec's world of that era has it)
    want = not era_has("ksm_checksum_first", era)
    assert _last_ksm(era, REJOIN_STEPS, "1") is want


def test_a_version_before_the_fact_in_a_split_era_gets_its_own_world():
    # >=6.7 is run as 6.12 (checksum first); 6.8 and 6.10 scan the stable tree first
    assert _last_ksm(Era.GE_6_7, REJOIN_STEPS, "1") is False
    for v in ("6.8", "6.10"):
        w = world_for(Era.GE_6_7, version=KernelVersion.parse(v))
        assert w.facts == {"ksm_checksum_first": False}
        assert _last_ksm(Era.GE_6_7, REJOIN_STEPS, "1", KernelVersion.parse(v)) is True
    assert world_for(Era.GE_6_7, version=KernelVersion.parse("6.18")) is world_for(Era.GE_6_7)
    gaps = fact_gaps({"ksm_checksum_first"}, Era.GE_6_7, KernelVersion.parse("6.8"))
    assert gaps and "d58a361b0350" in gaps[0]
    assert not fact_gaps({"ksm_checksum_first"}, Era.GE_6_7, KernelVersion.parse("6.11"))


@pytest.mark.parametrize("era", [Era.V5_1_TO_5_8, Era.GE_6_7])
def test_a_twin_not_yet_passed_keeps_the_node_a_candidate(era):
    # buf[0] is scanned first: buf[1]'s rmap_item (paged out, not yet passed) is still on
    # the node, so even >= 6.11 finds it
    assert _last_ksm(era, MIRROR_STEPS, "0") is True


@pytest.mark.parametrize("version", ["5.4", "6.1", "6.8", "6.12", "6.18"])
def test_spec_and_model_agree_on_the_rejoin_scenario(version):
    scn = parse(REJOIN.read_text(), str(REJOIN))
    cell = run_model_cell(scn, KernelVersion.parse(version))
    tw = judge_cell(cell)
    assert tw.verdict.status in (SpecModel.AGREE, SpecModel.MODEL_WIDER), \
        tw.verdict.describe()
    assert not tw.failed


def test_the_spec_reads_the_fact_from_the_table():
    m = load_spec().models["user"]
    assert "ksm_checksum_first" in m.facts


BASE = """model m
domain Page = 0..1
var n: 0..3 = 0
"""


def _n_after_a(mc: Machine) -> int:
    (s0,) = mc.initial()
    (nxt,) = [s for _n, _picks, s, _v in mc.successors(s0)]
    return mc.unpack(nxt)[("n", ())]


def test_kernel_has_is_evaluated_per_era():
    m = build_model("m", [parse_text(BASE + "action a() prints \"a\" { "
                                     "if kernel has ksm_checksum_first { n := 1 } else { n := 2 } }\n",
                                     "t.kspec")])
    assert m.facts == {"ksm_checksum_first"}
    assert _n_after_a(Machine(m, Era.V5_19_TO_6_6)) == 2
    assert _n_after_a(Machine(m, Era.GE_6_7)) == 1
    assert _n_after_a(Machine(m, Era.GE_6_7, {"ksm_checksum_first": False})) == 2


def test_an_unknown_fact_is_an_error_with_its_position():
    with pytest.raises(InputError) as e:
        build_model("m", [parse_text(BASE + "action a() { if kernel has no_such_fact "
                                     "{ n := 1 } }\n", "t.kspec")])
    assert "unknown kernel fact 'no_such_fact'" in e.value.message
    assert e.value.location.file == "t.kspec" and e.value.location.line == 4
    assert "ksm_checksum_first" in e.value.expected


def test_prove_says_which_era_a_fact_splits():
    assert split_facts({"ksm_checksum_first"}, Era.GE_6_7) == ["ksm_checksum_first"]
    assert split_facts({"ksm_checksum_first"}, Era.V5_19_TO_6_6) == []
