"""The judge's replay of ``ksm settle`` on the spec: the spec's one-pass ``settle`` again
until a pass changes nothing, as the kernel's and the model's settle run."""

from __future__ import annotations

from ksmdiff.gen import specmap
from ksmdiff.gen.specmap import replay, world_for
from ksmdiff.gen.threeway import judge_cell
from ksmdiff.judge.threeway import SpecModel
from ksmdiff.scenario import parse
from ksmdiff.session import run_model_cell
from ksmdiff.versions import Era, KernelVersion

# B's buf[1] merges with the unstable tree's B buf[0] and takes that pte; A's buf[0], on
# the frame both shared since the fork, is merged only by the next pass
SIBLING = """scenario "sibling"
process A
A: mmap buf 2
A: fill buf[0] 0x02
A: fork B
B: madvise buf mergeable
A: madvise buf mergeable
B: fill buf[1] 0x02
ksm settle
"""


def _frames(run):
    last = run.records[-1].fields
    return {k: next(iter(v)) for k, v in last.items()
            if k.endswith(".frame") and next(iter(v)) is not None}     # A buf[1]: absent


def test_settle_repeats_the_pass_until_nothing_changes(monkeypatch):
    world = world_for(Era.of(KernelVersion.parse("6.18")))
    scn = parse(SIBLING)
    frames = _frames(replay(world, scn))
    assert len(set(frames.values())) == 1, frames       # the three ptes on one KSM page
    monkeypatch.setattr(specmap, "SETTLE_PASSES", 0)    # the spec's one pass alone
    one = _frames(replay(world, scn))
    assert len(set(one.values())) == 2, one


def test_the_model_and_the_spec_agree_on_it_in_every_era():
    scn = parse(SIBLING)
    for v in ("4.19", "5.4", "5.10", "5.18", "6.1", "6.18"):
        tw = judge_cell(run_model_cell(scn, KernelVersion.parse(v)))
        assert tw.verdict.status in (SpecModel.AGREE, SpecModel.MODEL_WIDER), (v, tw.verdict)
