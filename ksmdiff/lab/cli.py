"""``ksmdiff lab ...``: the kernel lab's subcommands.

``register(subparsers)`` adds the ``lab`` group; each module that brings a subcommand adds
it to the group's subparsers through :func:`lab_subparsers` (``fetch`` and ``list`` here;
``build`` in ``ksmdiff.lab.build`` when present).
"""

from __future__ import annotations

import sys

from ksmdiff.errors import EnvironmentProblem, UsageError

EXIT_OK, EXIT_ENV = 0, 3


def cmd_fetch(args) -> int:
    from ksmdiff.lab.fetch import DISTROS, fetch, fetch_busybox
    names = args.names or list(DISTROS)
    bad = [n for n in names if n not in DISTROS]
    if bad:
        raise UsageError(f"lab fetch {' '.join(bad)}: the Debian kernels are "
                         + ", ".join(DISTROS) + " (other kernels: ksmdiff lab build)")
    status = EXIT_OK
    for n in names:
        try:
            fetch(n, log=lambda m: print(m, flush=True))
        except EnvironmentProblem as e:
            print(f"ksmdiff lab fetch {n}: {e}", file=sys.stderr)
            status = EXIT_ENV
    try:
        fetch_busybox(log=lambda m: print(m, flush=True))
    except EnvironmentProblem as e:
        print(f"ksmdiff lab fetch busybox-static: {e}", file=sys.stderr)
        status = EXIT_ENV
    return status


def cmd_list(args) -> int:
    from ksmdiff.lab import store
    problems: list = []
    kernels = store.list_kernels(problems)
    if not kernels and not problems:
        print(f"no kernels in {store.lab_dir()} (ksmdiff lab fetch; ksmdiff lab build)")
        return EXIT_OK
    rows = [("name", "version", "era", "origin", "release", "patches")]
    for k in kernels:
        rows.append((k.name, str(k.version), k.era.value, k.origin.value, k.release,
                     ",".join(k.patches) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for p in problems:
        print(f"damaged: {p}", file=sys.stderr)
    return EXIT_ENV if problems else EXIT_OK


_GROUP = {}


def lab_subparsers():
    """The ``lab`` group's subparsers (for modules adding a ``lab`` subcommand)."""
    return _GROUP["sub"]


def register(sub) -> None:
    lab = sub.add_parser("lab", help="real kernels under qemu: fetch, build, list",
                         description="The kernel lab: kernels of every era in a store "
                                     "($KSMDIFF_LAB_DIR or ~/.cache/ksmdiff/lab/kernels), "
                                     "booted under qemu by 'ksmdiff run --kernel lab:NAME'.")
    lsub = lab.add_subparsers(dest="lab_command", metavar="LABCOMMAND",
                              parser_class=sub._parser_class)
    lsub.required = True
    _GROUP["sub"] = lsub

    f = lsub.add_parser("fetch", help="fetch Debian kernels (5.10, 6.1, 6.12) into the store",
                        description="Download Debian's linux-image-*-amd64 for each NAME "
                                    "(5.10: bullseye, 6.1: bookworm, 6.12: trixie) with apt "
                                    "under a private sources list, state and cache (the "
                                    "system's apt configuration is not touched), and "
                                    "busybox-static for the guest. Default: all three.")
    f.add_argument("names", nargs="*", metavar="NAME")
    f.set_defaults(func=cmd_fetch)

    ls = lsub.add_parser("list", help="the stored kernels with real version and model era",
                         description="Each stored kernel: name, full version (patch level "
                                     "included), the model era it is judged by, origin, "
                                     "uname -r, patches.")
    ls.set_defaults(func=cmd_list)

    import importlib
    import importlib.util
    if importlib.util.find_spec("ksmdiff.lab.build") is not None:   # ``lab build``
        _build = importlib.import_module("ksmdiff.lab.build")
        if hasattr(_build, "register"):
            _build.register(lsub)
    from ksmdiff.lab import race as _race                          # ``lab race``
    _race.register(lsub)
