#!/usr/bin/env python3
"""Benchmark: lab kernels under qemu (TCG) — boot to first result, corpus time, medians.

For each lab kernel (default: every kernel in the store) and each round (``--rounds``,
kernels taking turns so that load from other work hits them alike), one boot replays the
corpus (``--corpus``, default ``corpora/``) with the guest's C driver (no Python in the
guest), and the times are taken on the host's clock from qemu's start:

* ``agent``   – the driver's first pass began (boot + init + modules + swap);
* ``first``   – the first scenario's transcript is back on the host;
* ``result``  – every scenario's records are made (re-runs of mismatches included);
* ``corpus``  – the first pass alone: from ``agent`` to its last scenario.

Kernels boot one at a time here (``--jobs 1``) so each kernel's numbers are its own;
``ksmdiff run`` boots them in parallel up to the CPU count.  Also printed: the guest's
uptime at the init's steps (from the console) and the machine's load average before and
after.  Not a timed test: run by hand, ``python3 bench/bench_lab.py``
(``bench/bench_lab_compare.py`` sets two trees side by side).  ``--json FILE`` writes every
round's times (a benchmark result, ksmdiff/reports/bench_record.py) for ``ksmdiff report``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ksmdiff.lab import guest, run, store  # noqa: E402
from ksmdiff.reports import bench_record  # noqa: E402
from ksmdiff.scenario import find_scenarios, parse_file  # noqa: E402

KEYS = ("agent", "first", "result", "corpus")


def one_boot(k: store.KernelImage, scenarios) -> dict:
    res = guest.boot_driver(k, run.make_session(scenarios, k))
    if res.result is None:
        raise SystemExit(f"{k.name}: {res.reason}")
    t = dict(res.timings)
    t["corpus"] = t["pass0"] - t["agent"]
    t["phases"] = guest_phases(res.console)
    t["reruns"] = sum(len(v) for v in res.result["reruns"].values())
    return t


def guest_phases(console: str) -> dict[str, float]:
    """Guest uptime at the init's console lines (its start, the driver's start)."""
    out: dict[str, float] = {}
    for what, key in (("init", r"init \S+ at ([0-9.]+)"), ("driver", r"driver at ([0-9.]+)")):
        m = re.search(r"ksmdiff-lab: " + key, console)
        if m:
            out[what] = float(m.group(1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parent.parent / "corpora"))
    ap.add_argument("--kernel", action="append", metavar="NAME",
                    help="lab kernel (repeatable; default every stored kernel)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", metavar="FILE", help="also write every round as a benchmark result")
    args = ap.parse_args()
    host = bench_record.start()
    why = guest.qemu_available()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 3
    kernels = [store.get_kernel(n) for n in args.kernel] if args.kernel else store.list_kernels()
    if not kernels or any(k is None for k in kernels):
        print("missing lab kernels (ksmdiff lab fetch / lab build)", file=sys.stderr)
        return 3
    scenarios = [parse_file(p) for p in find_scenarios([args.corpus])]
    print(f"{len(scenarios)} scenarios, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    times: dict[str, dict[str, list[float]]] = {k.name: {x: [] for x in KEYS} for k in kernels}
    for r in range(args.rounds):
        for k in kernels:
            t = one_boot(k, scenarios)
            for x in KEYS:
                times[k.name][x].append(t.get(x, float("nan")))
            print(f"round {r + 1} {k.name}: " + ", ".join(
                f"{x} {t.get(x, float('nan')):.1f} s" for x in KEYS)
                + f"; {t['reruns']} re-runs; guest uptime: " + ", ".join(
                f"{x} {v:.1f}" for x, v in t["phases"].items()), flush=True)
    print(f"\nmedians over {args.rounds} rounds (seconds from qemu start; corpus: the "
          "first pass)")
    print("kernel  version   " + "  ".join(f"{x:>7}" for x in KEYS))
    for k in kernels:
        med = [statistics.median(times[k.name][x]) for x in KEYS]
        print(f"{k.name:<7} {str(k.version):<9} " + "  ".join(f"{m:7.1f}" for m in med))
    print(f"\nload after: {os.getloadavg()}")
    if args.json:
        bench_record.write(args.json, "lab", host, [
            bench_record.series(f"{k.name} {x}", "s", times[k.name][x],
                                group=f"lab boot: {x}" if x != "corpus" else
                                "lab: the corpus' first pass")
            for x in KEYS for k in kernels])
    return 0


if __name__ == "__main__":
    sys.exit(main())
