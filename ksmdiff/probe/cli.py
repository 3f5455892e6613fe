"""Subcommands of the real-kernel side: ``restore`` and ``probe-build``.

``ksmdiff.cli`` calls :func:`register` with its subparsers; each subcommand sets
``func=callable(args) -> exit code``.
"""

from __future__ import annotations

import sys

from ksmdiff.errors import EnvironmentProblem

EXIT_OK, EXIT_ENV = 0, 3


def cmd_restore(args) -> int:
    from ksmdiff.probe.runner import restore
    try:
        print(restore(args.journal))
    except EnvironmentProblem as e:
        print(f"ksmdiff restore: {e}", file=sys.stderr)
        return EXIT_ENV
    return EXIT_OK


def cmd_probe_build(args) -> int:
    from ksmdiff.probe.build import probe_path
    try:
        print(probe_path(static=args.static, rebuild=args.rebuild))
    except EnvironmentProblem as e:
        print(f"ksmdiff probe-build: {e}", file=sys.stderr)
        return EXIT_ENV
    return EXIT_OK


def register(sub) -> None:
    r = sub.add_parser(
        "restore", help="undo the KSM knob, swap and tracefs changes a killed run left",
        description="Read the journal a ksmdiff run writes before it changes anything "
                    "(default /var/lib/ksmdiff/journal.json) and put every KSM knob, THP "
                    "'enabled', swap file and tracefs setting back as it was. Idempotent; "
                    "does nothing when there is no journal.")
    r.add_argument("--journal", metavar="PATH", help="journal file (default: %(default)s)",
                   default=None)
    r.set_defaults(func=cmd_restore)

    b = sub.add_parser(
        "probe-build", help="compile the C probe (cached by source hash) and print its path",
        description="Compile ksmdiff/probe/probe.c with the system C compiler ($CC, cc, gcc "
                    "or clang) into ~/.cache/ksmdiff (or $KSMDIFF_CACHE).")
    b.add_argument("--static", action="store_true", help="link statically (for the qemu lab)")
    b.add_argument("--rebuild", action="store_true", help="build even if cached")
    b.set_defaults(func=cmd_probe_build)
