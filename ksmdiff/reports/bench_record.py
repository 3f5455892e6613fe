"""Benchmark results as data: what bench/*.py write with ``--json FILE`` and ``ksmdiff
report`` draws (docs/reports.md).

A result holds every sample, not only the median, so that the report can show the spread::

    {"tool": "ksmdiff", "kind": "bench", "format": 1, "bench": "prove",
     "tool_version": "0.1.0", "started": "2026-12-03T16:00:00Z", "argv": [...],
     "host": {"cpus": 2, "machine": "x86_64", "release": "6.12.48",
              "load_start": [0.5, 0.6, 0.9], "load_end": [...]},
     "series": [{"name": "prove --mutants", "group": "wall time per run", "unit": "s",
                 "better": "lower", "samples": [12.1, 11.8, 12.4]}, ...]}

Series of one ``group`` share an axis in the report (same unit).  A sample that could not
be measured is ``null`` (kept so that runs line up; left out of the statistics).
"""

from __future__ import annotations

import enum
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass

from ksmdiff.errors import InputError, Location
from ksmdiff.reports.header import check_header, check_rows
from ksmdiff.internal.atomic import write_text_atomically

KIND = "bench"
FORMAT = 1


class Better(enum.Enum):
    """Which way a series improves (the plot says so beside its unit)."""
    LOWER = "lower"       # seconds
    HIGHER = "higher"     # scenarios per second


@dataclass(frozen=True)
class Summary:
    """The spread of a series' measured samples."""
    n: int
    median: float
    q1: float
    q3: float
    lo: float
    hi: float


def series(name: str, unit: str, samples, *, group: str | None = None,
           better: Better = Better.LOWER) -> dict:
    """One measured quantity: every sample (``None`` or NaN for one not measured)."""
    out = []
    for s in samples:
        if s is None or (isinstance(s, float) and math.isnan(s)):
            out.append(None)
        else:
            out.append(float(s))
    return {"name": name, "group": group or unit, "unit": unit, "better": better.value,
            "samples": out}


def start() -> dict:
    """The host as a benchmark starts: call before measuring, pass to :func:`record`."""
    u = os.uname()
    return {"cpus": os.cpu_count(), "machine": u.machine, "release": u.release,
            "load_start": [round(x, 2) for x in os.getloadavg()], "t0": time.time()}


def record(bench: str, host: dict, all_series: list[dict], argv=None) -> dict:
    from ksmdiff import __version__
    host = dict(host)
    t0 = host.pop("t0", time.time())
    host["load_end"] = [round(x, 2) for x in os.getloadavg()]
    return {"tool": "ksmdiff", "kind": KIND, "format": FORMAT, "bench": bench,
            "tool_version": __version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
            "argv": list(sys.argv[1:] if argv is None else argv), "host": host,
            "series": all_series}


def write(path: str, bench: str, host: dict, all_series: list[dict], argv=None) -> dict:
    """The result of one benchmark run, written whole or not at all."""
    rec = record(bench, host, all_series, argv)
    check(rec, path)
    write_text_atomically(path, json.dumps(rec, indent=1) + "\n")
    return rec


def summary(samples) -> Summary | None:
    """Median, quartiles and range of the measured samples; None when none was."""
    xs = sorted(float(s) for s in samples if s is not None and not math.isnan(float(s)))
    if not xs:
        return None
    if len(xs) == 1:
        q1 = q3 = xs[0]
    else:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return Summary(len(xs), statistics.median(xs), q1, q3, xs[0], xs[-1])


def check(rec, path: str = "<bench result>") -> None:
    where = Location(path, 1, 1)
    check_header(rec, where, KIND, FORMAT, "benchmark result", "bench/*.py --json",
                 ("bench", "started", "host", "series"))
    check_rows(rec["series"], "series", ("name", "group", "unit", "better", "samples"), where)
    for i, s in enumerate(rec["series"]):
        try:
            Better(s["better"])
        except ValueError:
            raise InputError(f"series[{i}]: better is {s['better']!r}", where,
                             expected='"lower" or "higher"') from None
        bad = [x for x in s["samples"] if x is not None and not isinstance(x, (int, float))]
        if bad or not isinstance(s["samples"], list):
            raise InputError(f"series[{i}]: samples must be numbers or null", where)
