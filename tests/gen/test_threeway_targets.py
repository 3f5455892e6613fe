"""``ksmdiff run --three-way`` takes the targets and options of plain ``ksmdiff run``:
``lab:NAME`` kernels (tests/lab/test_lab_threeway.py), ``--shard``, ``--ktap`` and
``--junit``."""

from __future__ import annotations

import json
from pathlib import Path

from ksmdiff.cli import main
from ksmdiff.gen.threeway import on_kernel

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "corpora" / "generated"


def test_kernel_targets_are_the_host_and_lab_kernels():
    assert on_kernel("host") and on_kernel("lab:5.4") and on_kernel("lab:5.4-no-freeze")
    assert not on_kernel("5.4") and not on_kernel("6.12.1")


def test_shard_ktap_and_junit_on_a_model(tmp_path, capsys):
    ktap, junit, js = tmp_path / "r.ktap", tmp_path / "r.xml", tmp_path / "r.json"
    rc = main(["run", str(GENERATED), "--kernel", "6.12", "--three-way", "-q",
               "--shard", "1/2", "--ktap", str(ktap), "--junit", str(junit),
               "--json", str(js)])
    assert rc == 0, capsys.readouterr().out
    record = json.loads(js.read_text())
    every = len(list(GENERATED.rglob("*.scenario")))
    assert 0 < len(record["results"]) < every          # one shard of two
    assert len(record["three_way"]) == len(record["results"])
    text = ktap.read_text()
    assert text.startswith("KTAP version 1") and "not ok" not in text
    assert f'tests="{len(record["results"])}"' in junit.read_text()
    rc = main(["run", str(GENERATED), "--kernel", "6.12", "--three-way", "-q",
               "--shard", "2/2", "--json", str(js)])
    assert rc == 0
    assert len(json.loads(js.read_text())["results"]) + len(record["results"]) == every


def test_a_bad_kernel_is_a_usage_error(capsys):
    assert main(["run", str(GENERATED), "--kernel", "lab:../x", "--three-way"]) == 2
    assert main(["run", str(GENERATED), "--kernel", "nonsense", "--three-way"]) == 2
