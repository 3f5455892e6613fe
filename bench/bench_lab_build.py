#!/usr/bin/env python3
"""Benchmark: build time of the lab's kernels from source (``ksmdiff lab build``).

For each kernel of ``ksmdiff/lab/known.toml`` whose source is on this machine:

* ``clean``   – a full build (unpack, tinyconfig + fragments, ``make bzImage``) into a
                scratch build directory, ``--clean-runs`` times (default 1: minutes each);
* ``mutant``  – a patched kernel from a copy of the built clean tree (sources linked,
                outputs copied, the patch applied, ``make bzImage`` again), ``--runs``
                times; the mutant's tree is removed between runs, the clean one kept;
* ``cached``  – the same ``lab build`` again: no copy, no compile.

Prints wall seconds of the whole call and of make, make's CPU seconds, medians over the
runs, and the mutant/clean ratio.  Uses scratch store and build directories (the real
cache is not touched) unless ``--use-cache``, which takes the clean trees already built
there (then ``clean`` is not measured) and times only mutant rebuilds in a scratch copy.
Not a timed test: run it by hand, ``python3 bench/bench_lab_build.py --kernels 5.4,5.4-no-freeze``.
``--json FILE`` writes every build's wall time (a benchmark result,
ksmdiff/reports/bench_record.py) for ``ksmdiff report``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ksmdiff.lab import build as B  # noqa: E402
from ksmdiff.reports import bench_record  # noqa: E402


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernels", default="", help="comma-separated names (default: all known)")
    ap.add_argument("--runs", type=int, default=3, help="mutant rebuilds per mutant kernel")
    ap.add_argument("--clean-runs", type=int, default=1, help="full builds per clean kernel")
    ap.add_argument("--use-cache", action="store_true",
                    help="start from the clean trees already in the build cache")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--json", metavar="FILE", help="also write every build as a benchmark result")
    args = ap.parse_args()
    host = bench_record.start()

    known = B.load_known()
    names = [n for n in args.kernels.split(",") if n] or [k.name for k in known.kernels]
    by_name = {k.name: k for k in known.kernels}
    real_root = B.build_root()
    scratch = Path(tempfile.mkdtemp(prefix="ksmdiff-bench-build-",
                                    dir=real_root.parent if real_root.parent.exists() else None))
    os.environ["KSMDIFF_LAB_DIR"] = str(scratch / "kernels")
    os.environ["KSMDIFF_LAB_BUILD_DIR"] = str(scratch / "build")
    print(f"scratch: {scratch}; load average at start: {os.getloadavg()}")
    rows = []
    try:
        kernels = sorted((by_name[n] for n in names), key=lambda k: bool(k.patches))
        for k in kernels:
            src = B.find_source(known, k.source_id)
            if src is None:
                print(f"{k.name}: not run: no source ({k.source_id})")
                continue
            if not k.patches:
                if args.use_cache:
                    _seed_clean(src, real_root, scratch / "build")
                    if args.clean_runs == 0:
                        continue
                wall, make, cpu = [], [], []
                for _ in range(args.clean_runs):
                    _forget(k.name, src, [])
                    r = B.build(src, k.name, jobs=args.jobs)
                    wall.append(r.seconds)
                    make.append(r.state["make_seconds"])
                    cpu.append(r.state.get("make_cpu_seconds", float("nan")))
                    print(f"  {k.name} clean: {r.seconds:.1f} s (make {make[-1]:.1f} s, "
                          f"{cpu[-1]:.0f} CPU-s)", flush=True)
                rows.append((k.name, "clean", wall, make, cpu))
            else:
                clean_name = next((c.name for c in known.kernels
                                   if c.source_id == k.source_id and not c.patches), None)
                if args.use_cache:
                    _seed_clean(src, real_root, scratch / "build")
                wall, make, cpu = [], [], []
                for _ in range(args.runs):
                    _forget(k.name, src, k.patches)
                    r = B.build(src, k.name, k.patches, jobs=args.jobs)
                    wall.append(r.seconds)
                    make.append(r.state["make_seconds"])
                    cpu.append(r.state.get("make_cpu_seconds", float("nan")))
                    print(f"  {k.name} mutant: {r.seconds:.1f} s (make {make[-1]:.1f} s, "
                          f"{cpu[-1]:.0f} CPU-s) from {clean_name}", flush=True)
                rows.append((k.name, "mutant", wall, make, cpu))
            t = time.monotonic()
            r = B.build(src, k.name, k.patches, jobs=args.jobs)
            assert r.cached
            rows.append((k.name, "cached", [time.monotonic() - t], [0.0], [0.0]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\nload average at end: {os.getloadavg()}")
    print(f"{'kernel':28} {'kind':7} {'runs':>4} {'wall s':>8} {'make s':>8} {'CPU s':>7}")
    clean_wall = {}
    for name, kind, wall, make, cpu in rows:
        print(f"{name:28} {kind:7} {len(wall):4d} {_median(wall):8.2f} {_median(make):8.2f} "
              f"{_median(cpu):7.0f}")
        if kind == "clean":
            clean_wall[name.split("-")[0]] = _median(wall)
    for name, kind, wall, *_ in rows:
        base = clean_wall.get(name.split("-")[0])
        if kind == "mutant" and base:
            print(f"{name}: mutant/clean wall ratio {_median(wall) / base:.3f}")
    if args.json:
        bench_record.write(args.json, "lab-build", host, [
            bench_record.series(f"{name} {kind}", "s", wall, group=f"lab build: {kind} (wall)")
            for name, kind, wall, *_ in rows])
    return 0


def _forget(name, src, patches):
    """Remove the build tree and the store entry of this kernel (not its clean base)."""
    frags = B.fragments()
    key = B.build_key(B.source_hash(src), B.config_hash(frags),
                      [B.read_patch(p) for p in patches])
    shutil.rmtree(B.build_root() / key[:24], ignore_errors=True)
    shutil.rmtree(Path(os.environ["KSMDIFF_LAB_DIR"]) / name, ignore_errors=True)


def _seed_clean(src, real_root: Path, scratch_root: Path):
    """Copy the clean tree of SRC from the real cache (hard links for sources and
    outputs alike is unsafe; clone_built_tree copies the outputs)."""
    key = B.build_key(B.source_hash(src), B.config_hash(B.fragments()), [])
    d = real_root / key[:24]
    if not (d / "state.json").exists():
        raise SystemExit(f"--use-cache: no built clean tree {d}")
    dest = scratch_root / key[:24]
    if dest.exists():
        return
    dest.mkdir(parents=True)
    srcs = set((d / "source-files.txt").read_text().splitlines())
    B.clone_built_tree(d / "tree", dest / "tree", srcs)
    for f in ("state.json", "source-files.txt"):
        shutil.copy2(d / f, dest / f)


if __name__ == "__main__":
    sys.exit(main())
