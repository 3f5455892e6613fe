"""``ksmdiff lab``: the subcommands that manage the lab's kernels."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add ``lab`` and its subcommands to the top-level subparsers."""
    lab = subparsers.add_parser("lab", help="kernels for the lab: build from source")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND",
                                 parser_class=type(lab))
    lab_sub.required = True
    from ksmdiff.lab import build
    build.add_parser(lab_sub)
