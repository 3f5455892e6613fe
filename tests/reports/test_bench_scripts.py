"""bench/bench_prove.py --json writes a benchmark result the report reads (on a small spec,
so that it takes a second; the other benchmarks need root, qemu or kernel sources and
write through the same bench_record.write)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ksmdiff.kspec import load_spec
from ksmdiff.reports.inputs import Kind, load_one

ROOT = Path(__file__).resolve().parents[2]
SMALL = """model user
var x: 0..3 = 0
action inc() prints "inc" { require x < 3  x := x + 1 }
invariant small: x <= 3
"""


def _module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_prove_writes_every_run(tmp_path, monkeypatch, capsys):
    d = tmp_path / "spec"
    d.mkdir()
    (d / "m.kspec").write_text(SMALL)
    bench = _module("bench_prove")
    monkeypatch.setattr(bench, "load_spec", lambda: load_spec(d))
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "argv", ["bench_prove.py", "--runs", "2", "--json", str(out)])
    assert bench.main() == 0
    kind, rec = load_one(str(out))
    assert kind is Kind.BENCH and rec["bench"] == "prove"
    names = [s["name"] for s in rec["series"]]
    assert names[:2] == ["prove (every property, every era)", "prove --mutants"]
    assert any(n.startswith("user ") for n in names[2:])
    assert all(len(s["samples"]) == 2 and all(x >= 0 for x in s["samples"])
               for s in rec["series"])
