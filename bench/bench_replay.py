#!/usr/bin/env python3
"""Benchmark: scenarios per second replaying the corpus on the host kernel.

Three ways to replay the same scenarios (the corpus, repeated ``--copies`` times so that a
run is long enough to time):

* ``batch``         – ``run_kernel(..., batch=True)``: one ksmd settle serves every
                      scenario of a batch (the default of ``ksmdiff run``);
* ``one-at-a-time`` – ``run_kernel(..., batch=False)``: each scenario alone, after a reap;
* ``selftest-wait`` – one at a time, and every ``ksm settle`` waits the way the kernel's
                      ksm selftests do: run=1, then poll until full_scans grew by 2.

Each mode runs ``--runs`` times, the modes taking turns (a round is one run of each, so
load from other work on the machine hits every mode alike); the medians and the ratios
are printed, for each ``--copies`` value (``--copies 1,8``).  Needs root.
Not a timed test: run it by hand, ``sudo python3 bench/bench_replay.py``.  ``--json FILE``
writes every run's time (a benchmark result, ksmdiff/reports/bench_record.py) for
``ksmdiff report``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ksmdiff.probe import run_kernel, system  # noqa: E402
from ksmdiff.reports import bench_record  # noqa: E402
from ksmdiff.scenario import find_scenarios, parse_file  # noqa: E402


def selftest_settle(*, min_scans: int = 2, timeout: float = 3.0) -> int:
    """tools/testing/selftests/mm/ksm_functional_tests.c's ksm_merge(): run=1, then poll
    until full_scans grew by 2 (sleep_millisecs stays 0 as pinned), then pause ksmd."""
    start = system.read_int("full_scans")
    deadline = time.monotonic() + timeout
    system.write_knob("run", "1")
    try:
        while system.read_int("full_scans") < start + 2:
            if time.monotonic() > deadline:
                raise system.SettleTimeout("full_scans did not grow by 2")
    finally:
        system.write_knob("run", "0")
    return system.read_int("full_scans") - start


def one_run(scenarios, mode: str) -> tuple[float, dict]:
    saved = system.settle
    if mode == "selftest-wait":
        system.settle = selftest_settle
    try:
        t0 = time.perf_counter()
        runs = run_kernel(scenarios, batch=(mode == "batch"))
        dt = time.perf_counter() - t0
    finally:
        system.settle = saved
    status: dict = {}
    for r in runs:
        status[r.status] = status.get(r.status, 0) + 1
    return dt, status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", default=["corpora"], help="scenario files or dirs")
    ap.add_argument("--copies", default="8",
                    help="replay the corpus N times per run; several: 1,8")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per mode (median)")
    ap.add_argument("--modes", default="batch,one-at-a-time,selftest-wait")
    ap.add_argument("--json", metavar="FILE", help="also write every run as a benchmark result")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_replay: needs root (the kernel side of ksmdiff)", file=sys.stderr)
        return 3
    base = [parse_file(p) for p in find_scenarios(args.paths)]
    copies = [int(c) for c in str(args.copies).split(",")]
    modes = args.modes.split(",")
    print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs; {len(base)} scenarios x "
          f"{'/'.join(map(str, copies))}, {args.runs} runs per mode; the modes take turns "
          "(a round = one run of each), so load from elsewhere hits them alike")
    host = bench_record.start()
    series = []
    one_run(base[:2], "batch")   # warm-up: build the probe, page in
    for n in copies:
        scenarios = base * n
        times: dict[str, list[float]] = {m: [] for m in modes}
        status: dict[str, dict] = {}
        for _ in range(args.runs):
            for mode in modes:
                dt, status[mode] = one_run(scenarios, mode)
                times[mode].append(dt)
        print(f"-- corpus x{n}: {len(scenarios)} scenarios per run")
        med = {m: statistics.median(t) for m, t in times.items()}
        series += [bench_record.series(f"{mode}, corpus x{n}", "scenarios/s",
                                       [len(scenarios) / t for t in times[mode]],
                                       group="replay on the host kernel",
                                       better=bench_record.Better.HIGHER) for mode in modes]
        for mode in modes:
            m = med[mode]
            print(f"{mode:14s} median {m:7.3f} s  {len(scenarios) / m:7.1f} scenarios/s   "
                  f"(runs: {', '.join(f'{t:.3f}' for t in times[mode])}; "
                  f"last statuses {status[mode]})")
        if "batch" in med:
            for mode in modes:
                if mode != "batch":
                    rounds = [o / b for o, b in zip(times[mode], times["batch"])]
                    print(f"batch is {med[mode] / med['batch']:.1f}x faster than {mode} "
                          f"(median of the rounds' ratios {statistics.median(rounds):.1f}x)")
    if args.json:
        bench_record.write(args.json, "replay", host, series)
    return 0


if __name__ == "__main__":
    sys.exit(main())
