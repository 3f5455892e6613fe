"""exec on the host: the probe execs itself, the scenario process goes on in the new image
(same pid, new mm), and the run matches the model and keeps every expect."""

from __future__ import annotations

import pytest

from ksmdiff.observe import OK
from ksmdiff.probe import host_version, run_kernel
from ksmdiff.scenario import parse, parse_file
from ksmdiff.versions import has_feature

from _kstate import ROOT

PORT = ROOT / "corpora" / "kselftest" / "functional-prctl-fork-exec.scenario"

PLAIN = """scenario "exec without prctl"
process A
A: mmap buf 4
A: fill buf 0x5a
A: madvise buf mergeable
A: fork B
ksm settle
B: exec
expect counter B ksm_rmap_items =0 on >=6.1
B: mmap buf 2
B: fill buf 0x5a
B: madvise buf mergeable
ksm settle
expect counter B ksm_merging_pages =2 on >=5.19
expect B buf ksm
expect B buf same-frame A buf[0]
"""


def _check(scn, state_kept):
    from ksmdiff import judge, model
    run = run_kernel([scn])[0]
    assert run.status == OK, run.reason
    m = model.run_model(scn, host_version())
    assert not judge.compare(m.records, run.records)
    failed = [r for r in judge.evaluate_expects(scn, run.records, host_version())
              if r.status == judge.FAILED]
    assert not failed, failed


def test_exec_after_merge_matches_the_model(state_kept):
    _check(parse(PLAIN), state_kept)


def test_prctl_fork_exec_port(state_kept):
    if not has_feature(host_version(), "prctl-merge"):
        pytest.skip("the host kernel has no PR_SET_MEMORY_MERGE (6.4+)")
    _check(parse_file(PORT), state_kept)
