"""``ksmdiff prove``: the formal spec's properties per era, and the mutants.

The lead's CLI calls :func:`register` with its subparsers; ``python -m ksmdiff.kspec.cli``
runs it standalone.  Exit codes: 0 nothing failed (every property proved or bounded, the
vacuity checks passed; every mutant killed with ``--mutants``), 1 a property failed, a
vacuity check failed or a mutant survived, 2 input or usage error.

Counterexamples (.scenario, .trace), induction counterexamples (.cti) go to ``--out DIR``,
else to a fresh temporary directory that is named at the end (and removed when empty).
Progress: a live status line on a terminal, one line per stage otherwise (stderr), none
with ``-q``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from ksmdiff.errors import InputError, InvalidArgument
from ksmdiff.internal.atomic import write_text_atomically
from ksmdiff.versions import Era, KernelVersion

HELP = "prove the formal spec's properties (Z3: k-induction, BMC) for every kernel era"


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("prove", help=HELP, description=HELP + ". Properties: "
                              "isolation, refcount, exclusive_write, freeze, same_result, "
                              "stale_node, no_reuse_spin (plus wellformed and bounds, the "
                              "bookkeeping).")
    p.add_argument("--era", "--kernel", dest="era", action="append", metavar="VERSION",
                   help="only the era of this kernel version (e.g. 5.4, 6.1); repeatable")
    p.add_argument("--property", dest="props", action="append", metavar="NAME",
                   help="only this property; repeatable")
    p.add_argument("--model", dest="models", action="append", choices=("user", "race"),
                   help="only this model (user-level or race); repeatable")
    p.add_argument("--bound", type=int, metavar="N",
                   help="BMC depth (default: the spec's prove.toml)")
    p.add_argument("--mutants", action="store_true",
                   help="check the mutants of spec/mutants/ instead: each must be refuted")
    p.add_argument("--mutant", dest="only_mutants", action="append", metavar="NAME",
                   help="with --mutants: only this mutant; repeatable")
    p.add_argument("--emit-smt2", metavar="DIR", help="write every query as SMT-LIB2 into DIR "
                   "(with manifest.json giving the expected sat/unsat answer)")
    p.add_argument("--out", metavar="DIR",
                   help="where counterexamples go (.scenario / .trace / .cti; default: a new "
                   "temporary directory, printed at the end)")
    p.add_argument("--spec", metavar="DIR", help="the spec directory (default: spec/)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print only failures; no progress")
    p.set_defaults(func=run)
    return p


def _eras(values):
    if not values:
        return None
    out = []
    for v in values:
        try:
            era = Era.of(KernelVersion.parse(v))
        except InvalidArgument as e:
            raise InputError(str(e), None, "a kernel version such as 5.4") from None
        if era not in out:
            out.append(era)
    return out


def run(args) -> int:
    from ksmdiff.kspec import load_spec, prove
    try:
        spec = load_spec(args.spec)
        eras = _eras(args.era)
        props = args.props
        if props:
            known = set()
            for m in list(spec.models.values()) + list(spec.mutants.values()):
                known.update(m.property_names())
            known.update(("bounds", "vacuity"))
            bad = [p for p in props if p not in known]
            if bad:
                raise InputError(f"unknown property {bad[0]!r}", None,
                                 "one of " + ", ".join(sorted(known)))
        if args.only_mutants:
            bad = [m for m in args.only_mutants if m not in spec.mutants]
            if bad:
                raise InputError(f"unknown mutant {bad[0]!r}", None,
                                 "one of " + ", ".join(sorted(spec.mutants)))
    except InputError as e:
        print(e.render(), file=sys.stderr)
        return 2
    from ksmdiff.kspec import Status
    t0 = time.time()
    out = args.out
    temp_out = out is None
    if temp_out:
        out = tempfile.mkdtemp(prefix="ksmdiff-prove-")
    from ksmdiff.internal.progress import Progress
    progress = Progress(quiet=args.quiet)

    def show(r):
        if args.quiet and r.status not in (Status.FAILED, Status.VACUOUS) and \
                not (args.mutants and r.status != Status.FAILED):
            return
        who = f"mutant {r.mutant}" if r.mutant else f"{r.model:5s} {r.era.value:9s}"
        verdict = r.describe()
        if args.mutants:
            verdict = ("killed: " + verdict) if r.status == Status.FAILED else \
                ("SURVIVED: " + (r.note or verdict))
        progress.line(f"{who}  {r.prop:16s} {verdict}  [{r.seconds:.2f}s]")

    from ksmdiff.internal.audit import pure
    try:
        with progress, pure():   # the prover writes its outputs only: never /sys, /proc, /dev
            results = prove(spec, eras=eras, props=props, bound=args.bound,
                            mutants=args.mutants, emit_smt2=args.emit_smt2, out=out,
                            models=args.models, progress=show, only_mutants=args.only_mutants,
                            stage=progress.stage)
    except InputError as e:
        print(e.render(), file=sys.stderr)
        return 2
    total = time.time() - t0
    if args.mutants:
        bad = [r for r in results if r.status != Status.FAILED]
        print(f"{len(results) - len(bad)}/{len(results)} mutants killed in {total:.1f}s")
    else:
        bad = [r for r in results if r.status in (Status.FAILED, Status.VACUOUS)]
        n = {s: sum(1 for r in results if r.status == s) for s in Status}
        print(f"{n[Status.PROVED]} proved, {n[Status.BOUNDED]} bounded only (not proved), "
              f"{n[Status.FAILED]} failed, {n[Status.VACUOUS]} vacuous, of {len(results)} "
              f"in {total:.1f}s")
    if temp_out:
        if os.listdir(out):
            print(f"counterexamples and induction states are in {out}")
        else:
            os.rmdir(out)
    if args.json:
        write_text_atomically(args.json, json.dumps(prove_record(args, results, total, t0),
                                                    indent=1) + "\n")
    return 1 if bad else 0


PROVE_FORMAT = 1


def prove_record(args, results, total: float, t0: float) -> dict:
    """The machine-readable result of one ``prove`` (``--json``; ``ksmdiff report`` reads
    it beside run records): per model, era and property the status, and for a failed one
    its counterexample as data (``trace``) and as the text written to ``--out``."""
    from ksmdiff import __version__
    rows = []
    for r in results:
        row = r.to_json()
        row["counterexample_text"] = None
        if r.file:
            with open(r.file) as fh:
                row["counterexample_text"] = fh.read()
        rows.append(row)
    return {"tool": "ksmdiff", "kind": "prove", "format": PROVE_FORMAT,
            "tool_version": __version__, "argv": sys.argv[1:],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
            "mutants": bool(args.mutants), "seconds": round(total, 3), "results": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ksmdiff")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
