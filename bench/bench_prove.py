"""Benchmark of `ksmdiff prove`: time of each model/era and each mutant at its bound.

    python bench/bench_prove.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ksmdiff.kspec import ERAS, load_spec, prove  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--no-mutants", action="store_true")
    args = ap.parse_args()
    spec = load_spec()
    rows = []
    t_all = time.time()
    for model in spec.models:
        for era in ERAS:
            t0 = time.time()
            rs = prove(spec, eras=[era], models=[model], props=None)
            rs = [r for r in rs if r.era == era]
            if not rs:
                continue
            dt = time.time() - t0
            ok = all(r.status == "proved" for r in rs)
            how = sorted({f"{r.method}:{r.bound}" for r in rs})
            rows.append({"what": f"{model} {era.value}", "seconds": round(dt, 2), "ok": ok,
                         "how": how})
            print(f"{model:5s} {era.value:9s} {dt:6.2f}s  {'proved' if ok else 'FAILED'}  {how}",
                  flush=True)
    if not args.no_mutants:
        for name in spec.mutants:
            t0 = time.time()
            [r] = prove(spec, mutants=True, only_mutants=[name])
            dt = time.time() - t0
            rows.append({"what": f"mutant {name}", "seconds": round(dt, 2),
                         "ok": r.status == "failed", "how": [f"{r.prop}@{r.bound}"]})
            print(f"mutant {name:22s} {dt:6.2f}s  "
                  f"{'killed by ' + r.prop + ' at depth ' + str(r.bound) if r.status == 'failed' else 'SURVIVED'}",
                  flush=True)
    total = time.time() - t_all
    print(f"total {total:.1f}s")
    if args.json:
        Path(args.json).write_text(json.dumps({"total": total, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
