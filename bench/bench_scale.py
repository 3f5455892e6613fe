#!/usr/bin/env python3
"""Benchmark: what a scenario costs as it grows (time and peak memory), model and host.

The scenario is a port of LTP's ``ksm01`` (testcases/kernel/mem/ksm/ksm01.c, which calls
``create_same_memory(size, num=3, unit)`` of the ksm library): three children each map
``size`` MB mergeable, then four phases each fill the memory with a pattern and let ksmd
settle; LTP checks pages_shared / pages_sharing after each phase:

    phase   child 0   child 1                      child 2   pages_shared  pages_sharing
    1       'c'       'a'                          'a'       2             total - 2
    2       'c'       'b'                          'a'       3             total - 3
    3       'd'       'd'                          'd'       1             total - 1
    4       'd'       'd', last byte of last page  'd'       1             total - 2
                      'e' (one unshared page)

then ``run=2`` unmerges everything (both counters back to 0).  LTP sets
``max_page_sharing`` to the total number of pages so that one KSM page can take every
sharer.  What the port leaves out: the ``pages_volatile`` / ``pages_unshared`` checks and
``run=2`` (the port unmerges with ``madvise(MADV_UNMERGEABLE)`` in each child instead, which
gives the same counters back), and by default the ``unit``-sized mmaps (``--unit N``
maps them).

``--pages N`` is the pages per child (LTP's default: 128 MB = 32,768 pages; the scaled-down
port the issue measured: 1,024).  Each size runs ``--runs`` times on the model
(``--version``: one version, a comma-separated list, or ``all``: the representative version
of every era, one after the other in one process, as ``ksmdiff run`` does) and, as root,
on the host kernel: ``host probe`` is the kernel run alone (probe, ksmd, decoding the
records), ``host judged`` what ``ksmdiff run --kernel host`` does for it (the kernel run,
the model of the host's version, made beside it in a worker, the expects and the
comparison; ``--serial`` adds the same with the model made afterwards).  The medians of wall
time and of peak RSS (ru_maxrss of a forked child that does the one run) are printed,
with the machine's load average before and after.  ``--write PATH`` writes the scenario
instead (``bench/ltp-ksm01-3x128mb.scenario`` is ``--pages 32768``: LTP's real size).
Not a timed test: run it by hand,

    nice -n 10 python3 bench/bench_scale.py --pages 1024,32768 --runs 3 [--host]

``--sparse N`` times the other end instead: one process fills the pages and forks, then N
statements each write one page (the cost of a statement that changes one page).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ksmdiff.scenario import parse as parse_text  # noqa: E402
from ksmdiff.versions import KernelVersion  # noqa: E402

PROCS = ("A", "B", "C")
# (child 0, child 1, child 2) fill byte per phase; None: child 1's phase-4 'e' write
PHASES = ((0x63, 0x61, 0x61), (0x63, 0x62, 0x61), (0x64, 0x64, 0x64), (0x64, 0x64, 0x64))


def ksm01_scenario(pages: int, unit: int = 0) -> str:
    """The ksm01 port with ``pages`` pages per child, as scenario text; ``unit`` > 0 maps
    each child's memory in regions of ``unit`` pages, as LTP's ``-u`` does (default one
    region per child)."""
    unit = unit or pages
    if pages % unit:
        raise SystemExit(f"--unit {unit} does not divide {pages} pages")
    regions = [f"m{j}" for j in range(pages // unit)]
    total = pages * len(PROCS)
    out = [f"# LTP ksm01 (create_same_memory, 3 children x {pages} pages in regions of "
           f"{unit}) at this size;",
           "# left out: pages_volatile/pages_unshared, run=2 (madvise unmergeable instead).",
           f'scenario "LTP ksm01: 3 x {pages} pages merge into 2, 3, 1, 1 KSM pages"',
           "tags ltp, scale", "",
           "process P",
           f"ksm set max_page_sharing {total}"]
    for c in PROCS:
        out.append(f"P: fork {c}")
        for m in regions:
            out += [f"{c}: mmap {m} {unit}", f"{c}: madvise {m} mergeable"]
    expected = ((2, total - 2), (3, total - 3), (1, total - 1), (1, total - 2))
    last = regions[-1]
    for phase, (bytes_, (shared, sharing)) in enumerate(zip(PHASES, expected)):
        for c, b in zip(PROCS, bytes_):
            for m in regions:
                out.append(f"{c}: fill {m} 0x{b:02x}")
        if phase == 3:
            out.append(f"B: write {last}[{unit - 1}] 0x65")
        out += ["ksm settle", f"expect counter pages_shared +{shared}",
                f"expect counter pages_sharing +{sharing}"]
        if phase == 3:
            out.append(f"expect B {last}[{unit - 1}] not ksm")
        first = regions[0]
        out.append(f"expect A {first} same-frame C {first}[0]" if phase >= 2 else
                   f"expect B {first} same-frame C {first}[0]" if phase == 0 else
                   f"expect A {first}[0] not same-frame B {first}[0]")
    for c in PROCS:
        for m in regions:
            out.append(f"{c}: madvise {m} unmergeable")
    out += ["ksm settle", "expect counter pages_shared +0", "expect counter pages_sharing +0",
            f"expect A {regions[0]} not ksm"]
    return "\n".join(out) + "\n"


def sparse_scenario(pages: int, writes: int) -> str:
    """The other end from ksm01: one process fills ``pages`` pages (one frame each) and
    forks, then ``writes`` statements each write one page (a copy of one COW-shared
    frame): what a statement costs when it changes one page of a large scenario."""
    out = [f"# {pages} pages filled and forked, then {writes} one-page writes",
           f'scenario "sparse: {writes} one-page writes over {pages} shared pages"',
           "tags scale", "", "process P", f"P: mmap m0 {pages}", "P: fill m0 0x61",
           "P: fork B"]
    for k in range(writes):
        i = (k * 7919) % pages
        out += [f"P: write m0[{i}] 0x{(k % 200) + 0x30:02x}",
                f"expect P m0[{i}] not same-frame B m0[{i}]"]
    return "\n".join(out) + "\n"


def _measure(fn):
    """(seconds, peak RSS in bytes, summary) of ``fn()`` run in a forked child, so that each
    run's ru_maxrss is its own (tracemalloc would slow the run several times over).  The
    peak is the child's own plus the largest of its children's (the probe, and on a host
    run the worker that makes the model beside it): an upper bound of what ran at once."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def work():
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        child.send((dt, peak * 1024, _summary(out)))

    proc = ctx.Process(target=work)
    proc.start()
    got = parent.recv()
    proc.join()
    return got


def model_once(text: str, version: KernelVersion):
    from ksmdiff.session import run_model_cell
    scn = parse_text(text, "ksm01.scenario")
    cell = run_model_cell(scn, version)
    return cell


def models_once(text: str, versions: list[KernelVersion]):
    cells = [model_once(text, v) for v in versions]
    bad = [c for c in cells if c.status != "ok" or any(e.status != "held" for e in c.expects)]
    return bad[0] if bad else cells[-1]


def host_once(text: str):
    from ksmdiff.session import run_host_cells
    scn = parse_text(text, "ksm01.scenario")
    return run_host_cells([scn])[0]


def host_serial_once(text: str):
    """``host_once`` with the model made after the kernel run, not beside it."""
    from ksmdiff import session
    session.AHEAD_PAGE_STATEMENTS = float("inf")      # in the forked child only
    return host_once(text)


def host_probe_once(text: str):
    from ksmdiff.probe import run_kernel
    scn = parse_text(text, "ksm01.scenario")
    return run_kernel([scn])[0]


def _summary(cell) -> str:
    if not hasattr(cell, "expects"):         # a kernel run: its status and records
        return (f"{cell.status}{': ' + cell.reason[:120] if cell.reason else ''}, "
                f"{len(cell.records)} records")
    failed = [e for e in cell.expects if e.status != "held"]
    return (f"{cell.status}, {len(cell.expects) - len(failed)}/{len(cell.expects)} expects held"
            + (f", first failure line {failed[0].line}: {failed[0].reason[:120]}" if failed else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", default="1024", help="pages per child, comma-separated sizes")
    ap.add_argument("--unit", type=int, default=0,
                    help="pages per region (LTP -u; default: one region per child)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--version", default="6.8",
                    help="model version(s), comma-separated, or 'all' (every era)")
    ap.add_argument("--host", action="store_true", help="also on the host kernel (root)")
    ap.add_argument("--no-model", action="store_true")
    ap.add_argument("--serial", action="store_true",
                    help="with --host: also the judged run with the model made after the "
                         "kernel's, not beside it (side by side)")
    ap.add_argument("--write", metavar="PATH", help="write the scenario (first size) and stop")
    ap.add_argument("--sparse", type=int, default=0, metavar="N",
                    help="instead of ksm01: fill and fork, then N one-page writes")
    args = ap.parse_args()
    sizes = [int(x) for x in args.pages.split(",")]
    if args.write:
        Path(args.write).write_text(sparse_scenario(sizes[0], args.sparse) if args.sparse
                                    else ksm01_scenario(sizes[0], args.unit))
        return 0
    from ksmdiff.versions import ERA_VERSIONS
    names = ERA_VERSIONS if args.version == "all" else args.version.split(",")
    versions = [KernelVersion.parse(v) for v in names]
    label = "all eras" if args.version == "all" else ",".join(map(str, versions))
    print(f"load average before: {os.getloadavg()}; cpus: {os.cpu_count()}")
    for pages in sizes:
        text = (sparse_scenario(pages, args.sparse) if args.sparse
                else ksm01_scenario(pages, args.unit))
        nstmt = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        targets = [] if args.no_model else [("model " + label,
                                             lambda: models_once(text, versions))]
        if args.host:
            targets.append(("host probe", lambda: host_probe_once(text)))
            targets.append(("host judged", lambda: host_once(text)))
            if args.serial:
                targets.append(("judged serially", lambda: host_serial_once(text)))
        for name, fn in targets:
            times, peaks, summary = [], [], ""
            for _ in range(args.runs):
                dt, peak, summary = _measure(fn)
                times.append(dt)
                peaks.append(peak)
            print(f"{pages:>6} pages/child x3 ({nstmt} lines) {name:>15}: "
                  f"median {statistics.median(times):7.2f} s "
                  f"(runs {', '.join(f'{t:.2f}' for t in times)}), "
                  f"peak RSS median {statistics.median(peaks) / 2**20:7.1f} MB; {summary}",
                  flush=True)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
