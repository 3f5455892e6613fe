"""The ``ksmdiff`` command line (README.md "Commands"; the run record: docs/run-record.md).

Exit codes: 0 everything held; 1 an expect failed, a kernel/model mismatch, or a failed
proof; 2 usage or input error (nothing ran); 3 the environment could not run what was asked
(no root for ``--kernel host``, a bounded wait ran out) while nothing failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from ksmdiff.errors import EnvironmentProblem, InputError, KsmdiffError, UsageError
from ksmdiff.status import RunStatus
from ksmdiff.versions import ERA_VERSIONS, KernelVersion

# One representative version per era: the default columns of ``ksmdiff run``.

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_ENV = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: exit 2, one line, no traceback
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INPUT)


class InputErrors(KsmdiffError):
    """The errors of several input files, all reported (``main`` prints each one)."""

    def __init__(self, errors: Sequence[InputError]):
        self.errors = list(errors)
        super().__init__("\n".join(e.render() for e in self.errors))


def _load_each(paths: Sequence[str]):
    """Parse every file; return (scenarios, errors) so that one pass reports every file."""
    from ksmdiff.scenario import find_scenarios, parse_file
    files: list = []
    errors: list[InputError] = []
    for p in paths:
        try:
            files.extend(find_scenarios([p]))
        except InputError as e:
            errors.append(e)
    if not files and not errors:
        errors.append(InputError("no .scenario files found in " + " ".join(paths), None))
    scenarios = []
    for f in files:
        try:
            scenarios.append(parse_file(f))
        except InputError as e:
            errors.append(e)
    return scenarios, errors


def _load(paths: Sequence[str]):
    """Every scenario, or every error of every file (:class:`InputErrors`): nothing runs."""
    scenarios, errors = _load_each(paths)
    if errors:
        raise InputErrors(errors)
    return scenarios


# ----------------------------------------------------------------------------- check

def cmd_check(args) -> int:
    scenarios, errors = _load_each(args.paths)
    if not args.quiet:
        for s in scenarios:
            print(f"{s.source}: ok ({len(s.statements)} statements)")
    if errors:
        raise InputErrors(errors)
    return EXIT_OK


def cmd_format(args) -> int:
    from ksmdiff.scenario import print_scenario
    status = EXIT_OK
    for scn in _load(args.paths):
        text = print_scenario(scn)     # comments included: formatting never drops one
        if args.check:
            if Path(scn.source).read_text() != text:
                print(f"{scn.source}: not in canonical form")
                status = EXIT_FAIL
        elif args.in_place:
            if Path(scn.source).read_text() != text:
                _write_atomically(Path(scn.source), text)
        else:
            sys.stdout.write(text)
    return status


def _write_atomically(path: Path, text: str) -> None:
    """A temporary file beside ``path``, renamed over it: a killed run leaves either file."""
    from ksmdiff.internal.atomic import write_text_atomically
    write_text_atomically(path, text, keep_mode=True)


# ----------------------------------------------------------------------------- run

def _versions(args) -> list[str]:
    out = []
    for v in args.kernel or ERA_VERSIONS:
        if v == "host":
            out.append(v)
            continue
        if v.startswith("lab:"):
            from ksmdiff.lab.store import check_name
            try:
                check_name(v[4:])
            except ValueError as e:
                raise UsageError(f"--kernel {v}: {e}") from None
            out.append(v)
            continue
        try:
            out.append(str(KernelVersion.parse(v)))
        except ValueError as e:
            raise UsageError(f"--kernel {v}: {e}") from None
    return list(dict.fromkeys(out))


def checked_range() -> tuple[KernelVersion, KernelVersion]:
    """The oldest and newest kernels the fact table was checked against: the lowest
    version of the oldest era and ``NEWEST_CHECKED`` (ksmdiff/kernel_facts.py)."""
    from ksmdiff.versions import ERA_INFO, NEWEST_CHECKED, Era
    return ERA_INFO[list(Era)[0]].lowest, NEWEST_CHECKED


def version_notes(versions: Sequence[str]) -> list[str]:
    """A note for each version outside the range the kernel facts were checked for: it is
    run all the same, judged as the era it falls into."""
    from ksmdiff.versions import Era
    low, high = checked_range()
    notes = []
    for v in versions:
        if v == "host" or v.startswith("lab:"):
            continue
        kv = KernelVersion.parse(v)
        era = Era.of(kv).value
        if kv.mm > high.mm:
            notes.append(f"note: {v} is newer than {high}, the newest version the kernel facts "
                         f"were checked against; it is judged as the {era} era")
        elif kv.mm < low.mm:
            notes.append(f"note: {v} is older than {low}, the oldest version the kernel facts "
                         f"were checked against; it is judged as the {era} era")
    return notes


def check_output_path(path: str) -> None:
    """Refuse a ``--json`` path that cannot be written, before anything runs (exit 2)."""
    import tempfile
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--json {path}: is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--json {path}: no such directory {str(parent)!r}")
    try:                                 # the record is written as a temporary file there
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".ksmdiff-", suffix=".json")
    except OSError as e:
        raise UsageError(f"--json {path}: cannot write in {str(parent)!r}: "
                         f"{e.strerror}") from None
    os.close(fd)
    os.unlink(tmp)
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"--json {path}: not writable")


def cmd_run(args) -> int:
    from ksmdiff import session
    from ksmdiff.report import print_summary, write_json

    if args.three_way:
        from ksmdiff.gen.cli import run_three_way_cli
        return run_three_way_cli(args.paths, _versions(args), quiet=args.quiet,
                                 json_out=args.json, args=args)
    from ksmdiff.reports import cli as reports_cli
    scenarios = reports_cli.select_shard(args, _load(args.paths))
    versions = _versions(args)
    if args.repeat < 1 or args.repeat > 1000:
        raise UsageError("--repeat takes 1..1000")
    if args.json:
        check_output_path(args.json)
    notes = version_notes(versions)
    for note in notes:
        print(note)
    started = time.time()
    cells: dict[tuple[int, str], session.CellResult] = {}
    from ksmdiff.internal.progress import Progress
    prog = Progress(quiet=args.quiet)
    lab_targets = [v for v in versions if v.startswith("lab:")]
    lab = None
    try:
        prog.__enter__()
        if lab_targets:     # booting in the background while the host and models run
            import signal

            from ksmdiff.lab.run import Background

            def _term(signum, _frame):
                raise SystemExit(128 + signum)
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _term)   # finally below kills the VMs
            prog.stage(f"lab: booting {len(lab_targets)} kernel(s) under qemu, "
                       f"{len(scenarios)} scenarios each (in the background)")

            def booted(res):
                took = res.timings.get("result")
                prog.event(f"lab {res.kernel.name}: " + (
                    f"corpus done {took:.0f} s after qemu's start" if took is not None
                    and res.result is not None else f"no result: {res.reason}"))
            # (a lab guest runs one scenario at a time anyway: run.make_session)
            lab = Background(scenarios, lab_targets, on_boot=booted)
        cells.update(reports_cli.run_on_cluster(args, scenarios, versions))
        for v in versions:
            if v.startswith("lab:"):
                continue
            if (0, v) in cells:
                continue                  # run on the cluster
            if v == "host":
                prog.stage("host kernel", total=len(scenarios))

                def tick(done, _total):
                    prog.update(done=done, total=_total)
                for i, cell in enumerate(session.run_host_cells(
                        scenarios, repeat=args.repeat,
                        batch=False if args.one_at_a_time else None, progress=tick,
                        allow_global=args.allow_global)):
                    cells[(i, v)] = cell
                continue
            kv = KernelVersion.parse(v)
            prog.stage(f"model {v}", total=len(scenarios))
            for i, scn in enumerate(scenarios):
                cells[(i, v)] = session.run_model_cell(scn, kv)
                prog.update(done=i + 1)
        if lab is not None:
            prog.stage(f"lab: waiting for {len(lab_targets)} kernel(s)")
            for v, lab_cells in lab.join().items():
                for i, cell in enumerate(lab_cells):
                    cells[(i, v)] = cell
            lab = None
    finally:
        if lab is not None:         # interrupted: no qemu outlives the run
            lab.cancel()
        prog.__exit__(None, None, None)
    elapsed = time.time() - started
    print_summary(scenarios, versions, cells, verbose=args.verbose, out=sys.stdout)
    if args.json:
        write_json(args.json, scenarios, versions, cells, elapsed, sys.argv[1:], notes=notes)
    reports_cli.after_run(args, lambda path: write_json(path, scenarios, versions, cells,
                                                        elapsed, sys.argv[1:], notes=notes))
    if any(c.failed or c.mismatch or c.violations for c in cells.values()):
        return EXIT_FAIL
    if any(c.status in (RunStatus.ENVIRONMENT, RunStatus.NOT_RUN) for c in cells.values()):
        return EXIT_ENV
    return EXIT_OK


# ----------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ksmdiff", description="Formal spec and differential tests for the "
                "Linux KSM write-fault path (do_wp_page, reuse_ksm_page, every era).",
                epilog="exit codes: 0 all held, 1 failed expect / mismatch / failed proof, "
                       "2 usage or input error, 3 environment could not run it")
    from ksmdiff import __version__
    p.add_argument("--version", action="version", version=f"ksmdiff {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    c = sub.add_parser("check", help="parse and validate scenarios; run nothing",
                       description="Parse and validate scenario files (a directory means every "
                                   ".scenario below it). Errors name file:line:column.")
    c.add_argument("paths", nargs="+", metavar="PATH")
    c.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    c.set_defaults(func=cmd_check)

    f = sub.add_parser("format", help="print scenarios in canonical form",
                       description="Print each scenario as the printer writes it "
                                   "(text -> tree -> text).")
    f.add_argument("paths", nargs="+", metavar="PATH")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="exit 1 if a file is not canonical")
    g.add_argument("--in-place", action="store_true", help="rewrite the files")
    f.set_defaults(func=cmd_format)

    r = sub.add_parser("run", help="run scenarios on the model of kernel versions or on the "
                                   "host kernel, judge every expect",
                       description="Run scenarios. --kernel VERSION (repeatable) runs the "
                                   "reference model of that version; --kernel host replays on "
                                   "the running kernel through the C probe (root) and compares "
                                   "with the model of the host's version. Default: one version "
                                   "per era: " + ", ".join(ERA_VERSIONS) + ".")
    r.add_argument("paths", nargs="+", metavar="PATH")
    r.add_argument("--kernel", action="append", metavar="VERSION",
                   help="a kernel version such as 5.4 or 6.12.117 (its model), 'host' (the "
                        "running kernel) or 'lab:NAME' (a lab kernel under qemu, judged by "
                        "the model of its own version; see 'ksmdiff lab list') (repeatable)")
    r.add_argument("--json", metavar="FILE", help="write the JSON run record to FILE")
    r.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run the host kernel N times and count how often each allowed value "
                        "shows up")
    r.add_argument("--one-at-a-time", action="store_true",
                   help="host: run scenarios one at a time instead of in a batch")
    r.add_argument("--allow-global", action="store_true",
                   help="host: let 'ksm unmerge-all' write run=2, which unmerges every KSM "
                        "page of this machine (other programs' too); without it such "
                        "scenarios are not run on the host (a lab VM always allows it)")
    r.add_argument("--three-way", action="store_true",
                   help="judge the spec's predictions against the model too, with label coverage")
    r.add_argument("-v", "--verbose", action="store_true", help="list every expect")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    from ksmdiff.gen import cli as gen_cli
    from ksmdiff.kspec import cli as kspec_cli
    from ksmdiff.lab import cli as lab_cli
    from ksmdiff.probe import cli as probe_cli
    from ksmdiff.reports import cli as reports_cli
    reports_cli.add_run_options(r)
    for module in (probe_cli, kspec_cli, lab_cli, gen_cli, reports_cli):
        module.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # Everything, the imports of the subcommands included, runs inside the try: Ctrl-C at
    # any point prints one line, never a traceback.
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except InputErrors as e:
        for err in e.errors:
            print(err.render(), file=sys.stderr)
        return EXIT_INPUT
    except InputError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_INPUT
    except UsageError as e:
        print(f"ksmdiff: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except EnvironmentProblem as e:
        print(f"ksmdiff: cannot run: {e}", file=sys.stderr)
        return EXIT_ENV
    except KsmdiffError as e:
        print(f"ksmdiff: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("ksmdiff: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
