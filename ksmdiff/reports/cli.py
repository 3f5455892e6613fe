"""``ksmdiff report`` and ``ksmdiff merge``, and the report flags of ``ksmdiff run``
(``--ktap``, ``--junit``, ``--shard``)."""

from __future__ import annotations

import json
import os
import tempfile

from ksmdiff.errors import UsageError
from ksmdiff.internal.atomic import write_text_atomically

# The report formats: option -> (module, function), each a pure function of a record.
_FORMATS = {
    "ktap": ("ksmdiff.reports.ktap", "to_ktap"),
    "junit": ("ksmdiff.reports.junit", "to_junit"),
}
_REPORT_ONLY = {"kcidb": ("ksmdiff.reports.kcidb", "to_kcidb")}     # report, not run


def _render(fmt: str, record: dict) -> str:
    import importlib
    module, func = {**_FORMATS, **_REPORT_ONLY}[fmt]
    out = getattr(importlib.import_module(module), func)(record)
    return out if isinstance(out, str) else json.dumps(out, indent=1) + "\n"


def write_text(path: str, text: str) -> None:
    """Written to a temporary file beside ``path`` and renamed over it."""
    write_text_atomically(path, text)


def _check_outputs(args, names) -> None:
    from ksmdiff.cli import check_output_path
    for name in names:
        path = getattr(args, name, None)
        if path:
            try:
                check_output_path(path)
            except UsageError as e:
                raise UsageError(str(e).replace("--json", f"--{name}", 1)) from None


# ----------------------------------------------------------------------------- run

def add_run_options(r) -> None:
    r.add_argument("--ktap", metavar="FILE", help="also write the results as KTAP version 1")
    r.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    r.add_argument("--shard", metavar="I/N",
                   help="run only the I-th of N shards of the scenarios (by a hash of each "
                        "scenario's canonical text); merge the records with ksmdiff merge")
    r.add_argument("--cluster", metavar="ADDRESS",
                   help="run the model versions on the Dask distributed scheduler at ADDRESS "
                        "(e.g. tcp://10.0.0.1:8786), one task per batch and version")


def run_on_cluster(args, scenarios, versions) -> dict:
    """The model cells run on ``--cluster`` (none without it)."""
    if not getattr(args, "cluster", None):
        return {}
    from ksmdiff.cluster import run_model_cells
    return run_model_cells(args.cluster, scenarios, versions)


def select_shard(args, scenarios):
    """The scenarios of ``--shard I/N`` (all of them without it); output paths checked."""
    _check_outputs(args, list(_FORMATS))
    if not getattr(args, "shard", None):
        return scenarios
    from ksmdiff.reports.shard import parse_shard, select
    return select(scenarios, parse_shard(args.shard))


def after_run(args, write_record) -> None:
    """Write the ``--ktap``/``--junit`` files from the run's record.  ``write_record(path)``
    writes the JSON record (already written to ``args.json`` when given)."""
    wanted = [f for f in _FORMATS if getattr(args, f, None)]
    if not wanted:
        return
    from ksmdiff.reports.record import load
    if args.json:
        record = load(args.json)
    else:
        fd, tmp = tempfile.mkstemp(prefix="ksmdiff-record-", suffix=".json")
        os.close(fd)
        try:
            write_record(tmp)
            record = load(tmp)
        finally:
            os.unlink(tmp)
    for f in wanted:
        write_text(getattr(args, f), _render(f, record))


# ----------------------------------------------------------------------------- report/merge

def _merged(runs):
    """One record of the run records given (merged when several), None when none."""
    if not runs:
        return None
    if len(runs) == 1:
        return runs[0][1]
    from ksmdiff.reports.merge import merge
    return merge([rec for _, rec in runs], [p for p, _ in runs])


def cmd_report(args) -> int:
    _check_outputs(args, list(_FORMATS) + list(_REPORT_ONLY) + ["output"])
    from ksmdiff.reports.inputs import load_all
    inputs = load_all(args.records)
    record = _merged(inputs.runs)
    written = False
    wanted = [f for f in [*_FORMATS, *_REPORT_ONLY] if getattr(args, f, None)]
    if wanted and record is None:
        raise UsageError(f"report: --{wanted[0]} needs a run record (ksmdiff run --json); "
                         "only prove or benchmark results were given")
    for f in wanted:
        write_text(getattr(args, f), _render(f, record))
        written = True
    if args.output:
        from ksmdiff.reports.html import to_html
        write_text(args.output, to_html(record, inputs.proofs, inputs.benches))
        written = True
    if not written:
        raise UsageError("report: nothing to write; give -o FILE.html, --ktap FILE or "
                         "--junit FILE or --kcidb FILE")
    return 0


def cmd_merge(args) -> int:
    _check_outputs(args, ["output"])
    from ksmdiff.reports.merge import merge
    from ksmdiff.reports.record import load
    merged = merge([load(p) for p in args.records], args.records)
    write_text(args.output, json.dumps(merged, indent=1, sort_keys=True) + "\n")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="write a run record (or several, merged) as HTML, "
                                      "KTAP or JUnit",
                       description="Read run records (ksmdiff run --json) and write them in "
                                   "other forms. Several records are merged first, as "
                                   "ksmdiff merge does. The HTML page also shows prove "
                                   "results (ksmdiff prove --json) and benchmark results "
                                   "(bench/*.py --json) given among the files.")
    p.add_argument("records", nargs="+", metavar="RESULT.json",
                   help="run records, prove results and benchmark results, told apart by "
                        "their content")
    p.add_argument("-o", "--output", metavar="FILE.html", help="a self-contained HTML page")
    p.add_argument("--ktap", metavar="FILE", help="KTAP version 1")
    p.add_argument("--junit", metavar="FILE", help="JUnit XML")
    p.add_argument("--kcidb", metavar="FILE", help="KernelCI database (KCIDB) I/O data, JSON")
    p.set_defaults(func=cmd_report)

    m = sub.add_parser("merge", help="merge the run records of shards and kernels into one",
                       description="Merge run records (e.g. one per shard x kernel of a CI "
                                   "matrix) into the record of one run over all of them.")
    m.add_argument("records", nargs="+", metavar="RUN.json")
    m.add_argument("-o", "--output", metavar="MERGED.json", required=True)
    m.set_defaults(func=cmd_merge)
