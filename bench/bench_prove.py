"""Benchmark of `ksmdiff prove`: the time of every model/era and every mutant at
its bound, and the totals, as medians over ``--runs`` cold runs (the prover's in-process
caches are cleared before each run, so no run profits from an earlier one).

    python bench/bench_prove.py [--runs 3] [--json FILE]

``--json FILE`` writes every run's times (a benchmark result, ksmdiff/reports/
bench_record.py) for ``ksmdiff report``.

Not a timed test: the target (every property of every era in under 60 s, 1-3 unbounded,
the vacuity checks included) is read off this output on a quiet machine; the load average
is printed with it.  Beside the wall-clock seconds, the CPU seconds of this process (Z3
runs in it): on a shared machine the wall clock measures the other users too.  The CPU
of a row is the CPU spent from the previous result to this one (compiling an era is
counted with its first result, the vacuity check).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ksmdiff.kspec import load_spec, prove  # noqa: E402
from ksmdiff.kspec.internal.engine import clear_caches  # noqa: E402
from ksmdiff.reports import bench_record  # noqa: E402


def _what(r):
    if r.mutant:
        return f"mutant {r.mutant}"
    return f"{r.model} {r.era.value}" if r.prop != "same_result" else \
        f"{r.model} {r.prop} {r.era.value}"


class _Cpu:
    """CPU seconds per row, from the progress callback (called once per result)."""

    def __init__(self):
        self.per = defaultdict(float)
        self.last = time.process_time()

    def __call__(self, r):
        now = time.process_time()
        self.per[_what(r)] += now - self.last
        self.last = now


def one_run(spec):
    per = defaultdict(float)
    how = defaultdict(set)
    cpu = _Cpu()
    clear_caches()
    t0, c0 = time.perf_counter(), time.process_time()
    results = prove(spec, progress=cpu)
    t_prove, c_prove = time.perf_counter() - t0, time.process_time() - c0
    for r in results:
        what = _what(r)
        per[what] += r.seconds
        how[what].add(f"{r.prop}={r.status.value}:{r.method}:{r.bound}"
                      if r.status in ("proved", "bounded") else f"{r.prop}={r.status.value}")
    clear_caches()
    t0, c0 = time.perf_counter(), time.process_time()
    muts = prove(spec, mutants=True, progress=cpu)
    t_mut, c_mut = time.perf_counter() - t0, time.process_time() - c0
    for r in muts:
        per[f"mutant {r.mutant}"] += r.seconds
        how[f"mutant {r.mutant}"].add(f"killed by {r.prop} at depth {r.bound}"
                                      if r.status == "failed" else "SURVIVED")
    ok = all(r.status in ("proved", "bounded") for r in results) and \
        all(r.status == "failed" for r in muts)
    return t_prove, t_mut, per, how, ok, cpu.per, c_prove, c_mut


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    host = bench_record.start()
    spec = load_spec()
    runs = [one_run(spec) for _ in range(args.runs)]
    med = statistics.median
    rows = []
    print(f"{'':38s} {'wall':>8s} {'CPU':>8s}")
    for what in runs[0][2]:
        secs = med(r[2][what] for r in runs)
        cpu = med(r[5][what] for r in runs)
        rows.append({"what": what, "seconds": round(secs, 2), "cpu_seconds": round(cpu, 2),
                     "how": sorted(runs[0][3][what])})
        print(f"{what:38s} {secs:7.2f}s {cpu:7.2f}s  {', '.join(sorted(runs[0][3][what]))}")
    tp, tm = med(r[0] for r in runs), med(r[1] for r in runs)
    cp, cm = med(r[6] for r in runs), med(r[7] for r in runs)
    ok = all(r[4] for r in runs)
    print(f"prove (every property, every era): median {tp:.1f}s wall, {cp:.1f}s CPU over "
          f"{args.runs} runs ({', '.join(f'{r[0]:.1f}' for r in runs)})")
    print(f"prove --mutants:                   median {tm:.1f}s wall, {cm:.1f}s CPU "
          f"({', '.join(f'{r[1]:.1f}' for r in runs)})")
    print("nothing failed, all mutants killed" if ok else "SOMETHING FAILED")
    print("load average (1, 5, 15 min):", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    if args.json:
        S = bench_record.series
        bench_record.write(args.json, "prove", host, [
            S("prove (every property, every era)", "s", [r[0] for r in runs],
              group="whole runs"),
            S("prove --mutants", "s", [r[1] for r in runs], group="whole runs"),
            S("prove, CPU (every property, every era)", "s CPU", [r[6] for r in runs],
              group="whole runs, CPU"),
            S("prove --mutants, CPU", "s CPU", [r[7] for r in runs], group="whole runs, CPU"),
            *[S(what, "s", [r[2][what] for r in runs], group="per model/era and mutant")
              for what in runs[0][2]]])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
