#!/usr/bin/env python3
"""Benchmark: lab kernels under qemu (TCG) — boot to first result, corpus time, medians.

For each lab kernel (default: every kernel in the store) and each round (``--rounds``,
kernels taking turns so that load from other work hits them alike), one boot runs the
corpus (``--corpus``, default ``corpora/``) with the agent, and the times are taken on the
host's clock from qemu's start:

* ``agent``   – the agent's python is running (boot + init + interpreter start);
* ``first``   – the first scenario result exists in the guest (its progress report);
* ``result``  – the whole corpus' result is written (including re-runs of mismatches);
* ``corpus``  – run_kernel's own time for the corpus inside the guest (guest clock).

Kernels boot one at a time here (``--jobs 1``) so each kernel's numbers are its own;
``ksmdiff run`` boots them in parallel up to the CPU count.  ``--python`` adds one boot per
kernel that only times ``python -S -c pass`` and the agent's imports in the guest.  Also
printed: the machine's load average before and after.  Not a timed test: run by hand,
``python3 bench/bench_lab.py``.  ``--json FILE`` writes every round's times (a benchmark
result, ksmdiff/reports/bench_record.py) for ``ksmdiff report``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ksmdiff.lab import guest, run, store  # noqa: E402
from ksmdiff.reports import bench_record  # noqa: E402
from ksmdiff.scenario import find_scenarios, parse_file  # noqa: E402

KEYS = ("agent", "first", "result", "corpus")


def one_boot(k: store.KernelImage, scenarios, profile: bool = False) -> dict:
    job = run.make_job(scenarios, k, None)
    job["profile"] = profile
    res = guest.boot(k, job)
    if profile and res.result:
        print(f"{k.name}: the guest's run_kernel under cProfile (guest seconds)\n"
              + res.result.get("profile", ""))
    if res.result is None or "error" in res.result:
        raise SystemExit(f"{k.name}: {res.reason or res.result.get('error')}")
    t = dict(res.timings)
    t["corpus"] = res.result["corpus_s"]
    t["phases"] = guest_phases(res)
    t["reruns"] = sum(len(v) for v in res.result.get("reruns", {}).values())
    return t


def guest_phases(res) -> dict[str, float]:
    """Guest uptime at each step: the init's console lines ("init at", "agent at") and the
    agent's own marks (interpreter up, imports, payload, first result, corpus, re-runs)."""
    import re
    out: dict[str, float] = {}
    for what, key in (("init", r"init \S+ at ([0-9.]+)"), ("init-done", r"agent at ([0-9.]+)")):
        m = re.search(r"ksmdiff-lab: " + key, res.console)
        if m:
            out[what] = float(m.group(1))
    out.update(res.result.get("phases", {}))
    return out


PY_TIMING = """#!/bin/sh
up() {{ cut -d" " -f1 /proc/uptime; }}
a=$(up); {python} -S -c pass; b=$(up)
PYTHONPATH={pythonpath} {python} -S -c 'import ksmdiff.probe.runner, ksmdiff.judge.compare'
c=$(up)
echo "{{\\"python\\": $(echo "$b - $a" | bc 2>/dev/null || echo 0), \\"a\\": $a, \\"b\\": $b, \\"c\\": $c}}" > {out}/py.json
"""


def python_startup(k: store.KernelImage) -> tuple[float, float]:
    """(python -S -c pass, the agent's imports) in seconds of guest time."""
    import json
    import tempfile
    saved = guest.RUN_SH
    guest.RUN_SH = PY_TIMING
    seen = {}
    orig = tempfile.TemporaryDirectory.cleanup

    def keep(self):
        p = Path(self.name) / "py.json"
        if p.exists():
            seen.update(json.loads(p.read_text()))
        orig(self)
    tempfile.TemporaryDirectory.cleanup = keep
    try:
        guest.boot(k, {"payload": ""})
    finally:
        guest.RUN_SH = saved
        tempfile.TemporaryDirectory.cleanup = orig
    if not seen:
        return float("nan"), float("nan")
    return seen["b"] - seen["a"], seen["c"] - seen["b"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parent.parent / "corpora"))
    ap.add_argument("--kernel", action="append", metavar="NAME",
                    help="lab kernel (repeatable; default every stored kernel)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true",
                    help="run the guest's corpus under cProfile and print where it went "
                         "(slower: not for the timings)")
    ap.add_argument("--python", action="store_true",
                    help="also time the interpreter's start and the agent's imports")
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
            t = one_boot(k, scenarios, args.profile)
            for x in KEYS:
                times[k.name][x].append(t.get(x, float("nan")))
            print(f"round {r + 1} {k.name}: " + ", ".join(
                f"{x} {t.get(x, float('nan')):.1f} s" for x in KEYS)
                + f"; {t['reruns']} re-runs; host clock: " + ", ".join(
                f"{x[6:]} {v:.1f}" for x, v in t.items() if x.startswith("phase:"))
                + "; guest uptime: " + ", ".join(
                f"{x} {v:.1f}" for x, v in t["phases"].items()), flush=True)
    print(f"\nmedians over {args.rounds} rounds (seconds from qemu start; corpus: inside "
          "the guest)")
    print("kernel  version   " + "  ".join(f"{x:>7}" for x in KEYS))
    for k in kernels:
        med = [statistics.median(times[k.name][x]) for x in KEYS]
        print(f"{k.name:<7} {str(k.version):<9} " + "  ".join(f"{m:7.1f}" for m in med))
    if args.python:
        print("\nguest python (guest seconds): interpreter start (-S), agent imports")
        for k in kernels:
            a, b = python_startup(k)
            print(f"{k.name:<7} {a:6.2f} {b:6.2f}")
    print(f"\nload after: {os.getloadavg()}")
    if args.json:
        bench_record.write(args.json, "lab", host, [
            bench_record.series(f"{k.name} {x}", "s", times[k.name][x],
                                group=f"lab boot: {x}" if x != "corpus" else
                                "lab: the corpus inside the guest")
            for x in KEYS for k in kernels])
    return 0


if __name__ == "__main__":
    sys.exit(main())
