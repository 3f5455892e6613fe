"""Run records made by the real ``ksmdiff run`` on the model: three corpus scenarios plus
one whose expect fails, on a version where one of them is unsupported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ksmdiff.cli import main

REPO = Path(__file__).resolve().parents[2]
CORPUS = ["child-writes", "prctl-merge", "fork-after-merge"]

FAILING = """\
scenario "an expect that cannot hold: a fresh anonymous page is not KSM"
tags demo

process A
A: mmap buf 1
A: fill buf 0x5a
expect A buf[0] ksm
"""


@pytest.fixture(scope="session")
def scenario_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("scenarios") / "demo"
    d.mkdir()
    for name in CORPUS:
        shutil.copy(REPO / "corpora" / "matrix" / f"{name}.scenario", d)
    (d / "fails.scenario").write_text(FAILING)
    return d


@pytest.fixture(scope="session")
def run_json(scenario_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run.json"
    rc = main(["run", str(scenario_dir), "--kernel", "5.4", "--kernel", "6.12", "-q",
               "--json", str(out)])
    assert rc == 1 and out.exists()     # the failing scenario fails
    return out


@pytest.fixture(scope="session")
def prove_json(tmp_path_factory) -> Path:
    """``ksmdiff prove --mutants --json`` of one race-model mutant (a few seconds): one
    failed row with its interleaving."""
    d = tmp_path_factory.mktemp("prove")
    out = d / "prove.json"
    rc = main(["prove", "--mutants", "--mutant", "no-stable-node-check", "-q",
               "--out", str(d / "cex"), "--json", str(out)])
    assert rc == 0 and out.exists()        # the mutant is killed
    return out


@pytest.fixture(scope="session")
def bench_json(tmp_path_factory) -> Path:
    """A benchmark result as bench/*.py write it: two groups, one sample not measured."""
    from ksmdiff.reports import bench_record as B
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    host = B.start()
    B.write(str(out), "demo", host, [
        B.series("prove", "s", [48.0, 51.5, 49.2], group="whole runs"),
        B.series("prove --mutants", "s", [21.0, 20.4, None], group="whole runs"),
        B.series("replay", "scenarios/s", [310.0, 295.5, 322.1], group="throughput",
                 better=B.Better.HIGHER)], argv=["--runs", "3"])
    return out
