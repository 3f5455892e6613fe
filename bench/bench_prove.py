"""Benchmark of `ksmdiff prove`: the time of every model/era and every mutant at
its bound, and the totals, as medians over ``--runs`` cold runs (the prover's in-process
caches are cleared before each run, so no run profits from an earlier one).

    python bench/bench_prove.py [--runs 3] [--json FILE]
    python bench/bench_prove.py --compare OLD_TREE [--runs 1]

``--compare OLD_TREE`` runs this benchmark on another checkout (e.g. ``git worktree add
/tmp/old main``) and on this one, alternately in fresh processes (``--runs`` each), and
prints both side by side per row: wall and CPU medians and the CPU ratio new/old.

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
import json
import os
import subprocess
import tempfile
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

# --tree DIR: import ksmdiff (and its spec) from another checkout (--compare uses it)
_TREE = Path(sys.argv[sys.argv.index("--tree") + 1]).resolve() if "--tree" in sys.argv \
    else Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_TREE))

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
    ap.add_argument("--tree", help="import ksmdiff from this checkout")
    ap.add_argument("--rows", help="write the per-row medians (JSON) here")
    ap.add_argument("--compare", metavar="OLD_TREE",
                    help="benchmark OLD_TREE and this checkout side by side")
    args = ap.parse_args()
    if args.compare:
        return compare(Path(args.compare).resolve(), args.runs)
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
    if args.rows:
        Path(args.rows).write_text(json.dumps({
            "rows": rows, "ok": ok, "tree": str(_TREE),
            "totals": {"prove": [tp, cp], "mutants": [tm, cm]}}))
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


def compare(old: Path, runs: int) -> int:
    """Both checkouts, alternately (old, new, old, new, ...), each run a fresh process with
    the prover's caches cold; the medians side by side."""
    me = Path(__file__).resolve()
    new = me.parents[1]
    got: dict = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            for which, tree in (("old", old), ("new", new)):
                out = Path(tmp) / f"{which}{i}.json"
                subprocess.run([sys.executable, str(me), "--tree", str(tree), "--runs", "1",
                                "--rows", str(out)], check=False, stdout=subprocess.DEVNULL)
                got[which].append(json.loads(out.read_text()))
    med = statistics.median

    def row(which, what, key):
        vals = [r[key] for run in got[which] for r in run["rows"] if r["what"] == what]
        return med(vals) if vals else None
    whats = list(dict.fromkeys(r["what"] for run in got["old"] + got["new"] for r in run["rows"]))
    print(f"old: {old}\nnew: {new}\n{runs} run(s) each, alternating; medians")
    print(f"{'':38s} {'old wall':>9s} {'old CPU':>8s} {'new wall':>9s} {'new CPU':>8s} "
          f"{'CPU new/old':>11s}")
    for what in whats:
        ow, oc = row("old", what, "seconds"), row("old", what, "cpu_seconds")
        nw, nc = row("new", what, "seconds"), row("new", what, "cpu_seconds")
        f = lambda x: "-" if x is None else f"{x:.1f}s"  # noqa: E731
        ratio = f"{nc / oc:.2f}" if oc and nc is not None else "-"
        how = next((r["how"] for run in got["new"] for r in run["rows"] if r["what"] == what), [])
        print(f"{what:38s} {f(ow):>9s} {f(oc):>8s} {f(nw):>9s} {f(nc):>8s} {ratio:>11s}  "
              f"{', '.join(how)}")
    for key, label in (("prove", "prove (every property, every era)"),
                       ("mutants", "prove --mutants")):
        o = [run["totals"][key] for run in got["old"]]
        n = [run["totals"][key] for run in got["new"]]
        print(f"{label:38s} {med(x[0] for x in o):8.1f}s {med(x[1] for x in o):7.1f}s "
              f"{med(x[0] for x in n):8.1f}s {med(x[1] for x in n):7.1f}s "
              f"{med(x[1] for x in n) / med(x[1] for x in o):11.2f}")
    ok = all(run["ok"] for run in got["old"] + got["new"])
    print("nothing failed, all mutants killed (both)" if ok else "SOMETHING FAILED")
    print("load average (1, 5, 15 min):", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
