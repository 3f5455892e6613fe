"""Benchmark of scenario generation, fuzzing and replay, medians over ``--runs``:

* generate: time to cover every label of one era (``--era``, default 5.1-5.8; target
  < 60 s; wall and CPU seconds: on a shared machine the wall time is mostly the load) and
  scenarios generated per second (search + Z3 confirmation + printing), ``--per-label``
  scenarios per label (default 1; ``ksmdiff generate`` makes 3); side by side, run after
  run: ``cold`` (an empty compiled-model cache: the era's model is compiled, as every
  run did before the cache, and stored) and ``warm`` (the stored model is read back, as
  every later run of the same spec does); each run checks that both make the same
  scenarios;
* replay: the generated corpus (``corpora/generated``) repeated to ``--replay-n``
  scenarios (default 1,000), judged three ways on the model of ``--replay-version``:
  scenarios per second;
* fuzz: scenarios per second of ``ksmdiff fuzz`` on the host kernel through batches
  (target >= 200/s; root, takes the runner lock: a wait for another run counts), or on
  a model with ``--fuzz-kernel``; every scenario run is distinct (draws repeating one
  already run are left out and counted); ``--no-pipeline``: the model's and spec's replays made
  after the kernel's run instead of in a worker during it;
* ``--fuzz-compare OLD_TREE``: ``ksmdiff fuzz --kernel host --seed S --budget N`` of another
  checkout (e.g. ``git worktree add /tmp/old main``) and of this one, alternating, ``--runs``
  each, the same seed and budget: the median scenarios per second of each and their ratio,
  with the load average before and after every run (both trees draw the same scenarios).

    python bench/bench_generate.py [--runs 3] [--fuzz-seconds 60] [--no-host] [--json FILE]
        [--parts generate,replay,fuzz]
    python bench/bench_generate.py --fuzz-compare OLD_TREE [--runs 3] [--fuzz-seconds 60]

Not a timed test: read the numbers with the load average printed beside them.
``--json FILE`` writes every run's numbers (a benchmark result, ksmdiff/reports/
bench_record.py) for ``ksmdiff report``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ksmdiff.gen import specmap  # noqa: E402
from ksmdiff.gen.generate import generate  # noqa: E402
from ksmdiff.kspec.internal.engine import clear_caches  # noqa: E402
from ksmdiff.reports import bench_record  # noqa: E402
from ksmdiff.versions import Era, KernelVersion  # noqa: E402

ERAS = {e.value: e for e in Era}


def bench_generate(era, beam, per_label, cache):
    """One cold generate run of ``era``; ``cache``: the compiled-model cache directory
    (emptied first for a cold one)."""
    clear_caches()
    specmap._WORLDS.clear()
    os.environ["KSMDIFF_CACHE"] = str(cache)
    t0, c0 = time.perf_counter(), time.process_time()
    g = generate([era], per_label=per_label, beam=beam, seed=0)
    dt = time.perf_counter() - t0
    reached = sum(1 for r in g.labels if r.status.value == "reached")
    return (dt, len(g.scenarios), reached, len(g.labels), time.process_time() - c0,
            [x.text for x in g.scenarios])


def bench_generate_pair(era, beam, per_label):
    """(cold, warm): the same generate run with an empty and with a filled cache."""
    import shutil
    import tempfile
    saved = os.environ.get("KSMDIFF_CACHE")
    d = Path(tempfile.mkdtemp(prefix="ksmdiff-bench-cache-"))
    try:
        cold = bench_generate(era, beam, per_label, d)
        warm = bench_generate(era, beam, per_label, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if saved is None:
            os.environ.pop("KSMDIFF_CACHE", None)
        else:
            os.environ["KSMDIFF_CACHE"] = saved
    if cold[5] != warm[5]:
        raise AssertionError("the cached model made other scenarios than the compiled one")
    return cold, warm


def bench_replay(n, version):
    from ksmdiff import session
    from ksmdiff.gen.threeway import judge_cell
    from ksmdiff.scenario import find_scenarios, parse_file
    base = [parse_file(f) for f in find_scenarios(["corpora/generated"])]
    scns = (base * (n // len(base) + 1))[:n]
    v = KernelVersion.parse(version)
    t0 = time.perf_counter()
    bad = sum(1 for s in scns if judge_cell(session.run_model_cell(s, v)).failed)
    dt = time.perf_counter() - t0
    return n / dt, bad


def bench_fuzz(kernel, seconds, batch, pipeline=True):
    """As ``ksmdiff fuzz`` runs: spec-seeded and full-language scenarios, judged three
    ways (the host kernel's cells, or a model's)."""
    from ksmdiff import session
    from ksmdiff.gen.cli import _prefixes
    from ksmdiff.gen.fuzz import fuzz
    from ksmdiff.gen.specmap import world_for
    from ksmdiff.gen.threeway import judge_cell
    prepare = None
    if kernel == "host":
        from ksmdiff.gen.cli import host_fuzz_runner
        v, run_batch, prepare = host_fuzz_runner()
        if not pipeline:
            prepare = None
    else:
        v = KernelVersion.parse(kernel)

        def run_batch(scns):
            return [judge_cell(session.run_model_cell(s, v)) for s in scns]
    era = Era.of(v)
    prefixes = _prefixes(Path(__file__).resolve().parents[1] / "corpora" / "generated", era)
    alphabet = sorted(world_for(era).text_of.values())
    rep = fuzz(run_batch, budget=seconds, seed=int(time.time()) % 1000, batch=batch,
               prefixes=prefixes, alphabet=alphabet, out_dir=None, prepare=prepare)
    return rep.rate, len(rep.found), rep.duplicates, rep.scenarios


def fuzz_cli_rate(tree: Path, seconds: float, seed: int) -> tuple[float, int, str]:
    """(scenarios/s, scenarios, load before and after) of one ``ksmdiff fuzz --kernel
    host`` of the checkout ``tree``, in a process of its own; the note says when it waited
    for another run's runner lock (that wait is in its time)."""
    import re
    import subprocess
    import tempfile
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ksmdiff-bench-fuzz-") as out:
        got = subprocess.run(
            [sys.executable, "-m", "ksmdiff", "fuzz", "--kernel", "host", "--budget",
             f"{seconds:g}s", "--seed", str(seed), "--out", out, "-q"],
            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
            text=True)
    m = re.search(r": (\d+) scenarios, .*\(([\d.]+) scenarios/s\)", got.stdout)
    if m is None:
        raise RuntimeError(f"ksmdiff fuzz in {tree} said: {got.stdout[-500:]}{got.stderr[-500:]}")
    waited = "waiting for another ksmdiff run" in got.stderr   # the runner lock
    return (float(m.group(2)), int(m.group(1)), f"{before:.1f}-{os.getloadavg()[0]:.1f}"
            + (", waited for another kernel run" if waited else ""))


def fuzz_compare(old: Path, runs: int, seconds: float, seed: int) -> int:
    """Old and new trees' fuzz on the host, alternating, ``runs`` each."""
    new = Path(__file__).resolve().parents[1]
    rates: dict = {"old": [], "new": []}
    for k in range(runs):
        for name, tree in (("old", old), ("new", new)):
            rate, n, load = fuzz_cli_rate(tree, seconds, seed)
            rates[name].append(rate)
            print(f"run {k + 1} {name}: {rate:.1f} scenarios/s ({n} in {seconds:g} s), "
                  f"load {load}", flush=True)
    mo, mn = statistics.median(rates["old"]), statistics.median(rates["new"])
    print(f"median scenarios/s: old {mo:.1f}, new {mn:.1f}, new/old {mn / mo:.2f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--era", default="5.1-5.8", choices=sorted(ERAS))
    ap.add_argument("--beam", type=int, default=200)
    ap.add_argument("--per-label", type=int, default=1)
    ap.add_argument("--replay-n", type=int, default=1000)
    ap.add_argument("--replay-version", default="6.12")
    ap.add_argument("--fuzz-kernel", default="host")
    ap.add_argument("--fuzz-seconds", type=float, default=60)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--no-host", action="store_true", help="skip the fuzz measurement")
    ap.add_argument("--no-pipeline", action="store_true",
                    help="fuzz without the worker that replays model and spec ahead")
    ap.add_argument("--parts", default="generate,replay,fuzz",
                    help="which measurements, comma-separated (default all three)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--fuzz-compare", metavar="OLD_TREE",
                    help="the host fuzz of OLD_TREE and of this tree, alternating")
    ap.add_argument("--fuzz-seed", type=int, default=1)
    a = ap.parse_args()
    if a.fuzz_compare:
        return fuzz_compare(Path(a.fuzz_compare).resolve(), a.runs, a.fuzz_seconds, a.fuzz_seed)
    host = bench_record.start()
    out = {"load": os.getloadavg()}
    parts = set(a.parts.split(","))
    if "generate" in parts:
        pairs = [bench_generate_pair(ERAS[a.era], a.beam, a.per_label)
                 for _ in range(a.runs)]
        cold, gen = [p[0] for p in pairs], [p[1] for p in pairs]
        out["cover_era_seconds_cold"] = statistics.median(g[0] for g in cold)
        out["cover_era_seconds"] = statistics.median(g[0] for g in gen)
        out["cover_era_cpu_seconds_cold"] = statistics.median(g[4] for g in cold)
        out["cover_era_cpu_seconds"] = statistics.median(g[4] for g in gen)
        out["cpu_ratio_cold_to_warm"] = statistics.median(c[4] / w[4] for c, w in pairs)
        out["generated_per_second"] = statistics.median(g[1] / g[0] for g in gen)
        out["labels"] = f"{gen[0][2]} reached of {gen[0][3]}"
    if "replay" in parts:
        rep = [bench_replay(a.replay_n, a.replay_version) for _ in range(a.runs)]
        out["replay_per_second"] = statistics.median(r[0] for r in rep)
        out["replay_failed"] = rep[0][1]
    if "fuzz" in parts and not a.no_host:
        fz = [bench_fuzz(a.fuzz_kernel, a.fuzz_seconds, a.batch, not a.no_pipeline)
              for _ in range(a.runs)]
        out["fuzz_per_second"] = statistics.median(f[0] for f in fz)
        out["fuzz_found"] = [f[1] for f in fz]
        out["fuzz_scenarios_run"] = [f[3] for f in fz]
        out["fuzz_duplicate_draws_left_out"] = [f[2] for f in fz]
    out["load_after"] = os.getloadavg()
    for k, v in out.items():
        print(f"{k:24} {v:.2f}" if isinstance(v, float) else f"{k:24} {v}")
    if a.json:
        S, HIGHER = bench_record.series, bench_record.Better.HIGHER
        series = [S(f"cover every label of {a.era}, compiled model cached", "s",
                    [g[0] for g in gen], group="generate: time to cover an era"),
                  S(f"cover every label of {a.era}, compiled model cached (CPU)", "s",
                    [g[4] for g in gen], group="generate: time to cover an era"),
                  S(f"cover every label of {a.era}, model compiled (CPU)", "s",
                    [g[4] for g in cold], group="generate: time to cover an era"),
                  S("generated", "scenarios/s", [g[1] / g[0] for g in gen],
                    group="generate: scenarios per second", better=HIGHER),
                  S(f"replay on the {a.replay_version} model", "scenarios/s",
                    [r[0] for r in rep], group="scenarios per second", better=HIGHER)]
        if not a.no_host:
            series.append(S(f"fuzz on {a.fuzz_kernel}", "scenarios/s", [f[0] for f in fz],
                            group="scenarios per second", better=HIGHER))
        bench_record.write(a.json, "generate", host, series)
    return 0


if __name__ == "__main__":
    sys.exit(main())
