#!/usr/bin/env python3
"""Benchmark: two ksmdiff trees side by side on the lab (before/after a change).

Alternating the trees round by round (so that the load of other work hits both alike), it
runs each tree's own ``bench/bench_lab.py`` for one round per kernel (the first result and
the whole corpus' result of each boot) and, with ``--six``,
times the six-column corpus run ``ksmdiff run corpora/ --kernel host --kernel lab:5.4 ...``
from each tree.  Prints the medians side by side with the ratio, and the load average
before and after.  Not a timed test: run by hand,
``python3 bench/bench_lab_compare.py --before /path/to/old/tree``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
SIX = ["host", "lab:5.4", "lab:5.8", "lab:5.10", "lab:6.1", "lab:6.12"]
LINE = re.compile(r"^round \d+ (\S+): agent ([0-9.]+|nan) s, first ([0-9.]+|nan) s, "
                  r"result ([0-9.]+|nan) s")


def bench_round(tree: Path, kernels: list[str], corpus: str) -> dict[str, tuple[float, ...]]:
    cmd = [sys.executable, str(tree / "bench" / "bench_lab.py"), "--rounds", "1",
           "--corpus", corpus] + [a for k in kernels for a in ("--kernel", k)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tree,
                       env={**os.environ, "PYTHONPATH": str(tree)})
    out = {}
    for line in r.stdout.splitlines():
        m = LINE.match(line)
        if m:
            out[m.group(1)] = tuple(float(x) for x in m.groups()[1:])
    if r.returncode != 0 or len(out) != len(kernels):
        raise SystemExit(f"{tree}: bench_lab.py failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return out


def six_column(tree: Path) -> tuple[float, int]:
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "ksmdiff", "run", str(tree / "corpora")]
                       + [a for k in SIX for a in ("--kernel", k)],
                       capture_output=True, text=True, cwd=tree,
                       env={**os.environ, "PYTHONPATH": str(tree)})
    took = time.monotonic() - t
    if r.returncode != 0:            # which cells failed, and why (a loaded host's own column)
        print("\n".join(line for line in r.stdout.splitlines()
                        if ": environment on" in line or "mismatch" in line
                        or "failed" in line)[-3000:], flush=True)
    return took, r.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the other tree (e.g. a checkout of main)")
    ap.add_argument("--after", default=str(HERE))
    ap.add_argument("--kernel", action="append", metavar="NAME")
    ap.add_argument("--corpus", default="corpora/seed",
                    help="corpus for the boot rounds (relative to each tree; default the "
                         "seed scenarios: the first result does not wait for the rest)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--six", action="store_true", help="also time the six-column corpus run")
    args = ap.parse_args()
    trees = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    kernels = args.kernel or ["5.4", "5.8", "5.10", "6.1", "6.12"]
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)
    first: dict[str, dict[str, list[float]]] = {t: {k: [] for k in kernels} for t in trees}
    whole: dict[str, dict[str, list[float]]] = {t: {k: [] for k in kernels} for t in trees}
    six: dict[str, list[float]] = {t: [] for t in trees}
    for r in range(args.rounds):
        for name, tree in trees.items():
            got = bench_round(tree, kernels, args.corpus)
            for k in kernels:
                first[name][k].append(got[k][1])
                whole[name][k].append(got[k][2])
            print(f"round {r + 1} {name}: " + ", ".join(
                f"{k} first {got[k][1]:.1f} s result {got[k][2]:.1f} s" for k in kernels),
                flush=True)
        if args.six:
            for name, tree in trees.items():
                s, rc = six_column(tree)
                six[name].append(s)
                print(f"round {r + 1} {name}: six-column run {s:.1f} s (exit {rc}), "
                      f"load {os.getloadavg()}", flush=True)
    for what, times in (("the first result", first), ("the corpus' whole result", whole)):
        print(f"\nmedians over {args.rounds} round(s), seconds from qemu start to {what}")
        print(f"{'kernel':<8} {'before':>8} {'after':>8} {'after/before':>13}")
        for k in kernels:
            b, a = (statistics.median(times[t][k]) for t in ("before", "after"))
            print(f"{k:<8} {b:8.1f} {a:8.1f} {a / b:13.2f}")
    if args.six:
        b, a = (statistics.median(six[t]) for t in ("before", "after"))
        print(f"{'six-col':<8} {b:8.1f} {a:8.1f} {a / b:13.2f}")
    print(f"\nload after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
