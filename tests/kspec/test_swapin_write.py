"""The user spec's non-KSM write fault after a swap-in, era by era, replayed on the spec and
on the reference model (corpora/regressions/swapin-then-write-reuses.scenario and its
neighbours): the spec must predict what the model predicts (the model may allow more only
where swap fullness, which no scenario controls, frees the swap cache at the swap-in)."""

from pathlib import Path

import pytest

from ksmdiff.gen.specmap import replay, world_for
from ksmdiff.gen.threeway import judge_cell
from ksmdiff.judge.threeway import SpecModel
from ksmdiff.observe import page_key
from ksmdiff.scenario import parse
from ksmdiff.session import run_model_cell
from ksmdiff.versions import Era, KernelVersion

REGRESSION = (Path(__file__).resolve().parents[2] / "corpora" / "regressions"
              / "swapin-then-write-reuses.scenario")
VERSIONS = ("5.4", "5.10", "5.18", "6.1", "6.12", "6.18")

HEAD = """scenario "swap-in then write"
process A
A: mmap buf 2
A: fill buf[1] 0x02
A: madvise buf[1] pageout
"""


def spec_fault(text: str, version: str, page: int = 1, proc: str = "A") -> str:
    run = replay(world_for(Era.of(KernelVersion.parse(version))), parse(text))
    (fault,) = run.records[-1].fields[page_key(proc, "buf", page, "fault")]
    return fault


def verdict(text: str, version: str):
    return judge_cell(run_model_cell(parse(text), KernelVersion.parse(version))).verdict


@pytest.mark.parametrize("version", VERSIONS)
def test_the_regression_scenario_agrees_with_the_model(version):
    v = verdict(REGRESSION.read_text(), version)
    assert v.status in (SpecModel.AGREE, SpecModel.MODEL_WIDER), v.describe()


@pytest.mark.parametrize("version, fault", [
    ("5.4", "reused"),       # reuse_swap_page: mapcount 1 + swap count 0
    ("5.10", "copied"),      # page_count 2: the swap cache's reference
    ("5.18", "reused"),      # try_to_free_swap under the page lock, then page_count 1
    ("6.1", "reused"), ("6.12", "reused"), ("6.18", "reused")])
def test_read_swap_in_then_fill(version, fault):
    text = HEAD + "A: read buf[1]\nA: fill buf[1] 0x02\n"
    assert spec_fault(text, version) == fault
    v = verdict(text, version)
    assert v.status in (SpecModel.AGREE, SpecModel.MODEL_WIDER), v.describe()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_write_swap_in_of_the_only_mapping_reuses_in_every_era(version):
    # <= 5.17 do_swap_page(): FAULT_FLAG_WRITE && reuse_swap_page(); >= 5.18
    # should_try_to_free_swap() then page_count == 1
    text = HEAD + "A: write buf[1] 0x03\n"
    assert spec_fault(text, version) == "reused"
    v = verdict(text, version)
    assert v.status in (SpecModel.AGREE, SpecModel.MODEL_WIDER), v.describe()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_fork_siblings_swap_entry_keeps_the_swap_cache_and_the_write_copies(version):
    # B's swap pte still needs the swap cache: reuse_swap_page counts it, try_to_free_swap
    # fails on it, so every era copies
    text = HEAD + "A: fork B\nA: read buf[1]\nA: write buf[1] 0x03\n"
    assert spec_fault(text, version) == "copied"
    v = verdict(text, version)
    assert v.status in (SpecModel.AGREE, SpecModel.MODEL_WIDER), v.describe()
