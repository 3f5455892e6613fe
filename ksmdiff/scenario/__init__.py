"""The scenario language (docs/scenario-language.md): parse, validate, print.

Public surface::

    parse(text, source="<string>") -> Scenario       # syntax + semantic checks
    parse_file(path) -> Scenario
    print_scenario(scenario) -> str                  # parse(print_scenario(s)) == s
    implied_features(scenario) -> tuple[str, ...]
"""

from __future__ import annotations

import os
from pathlib import Path

from ksmdiff.errors import InputError, Location
from ksmdiff.scenario import ast
from ksmdiff.scenario.ast import Scenario
from ksmdiff.scenario.printer import format_statement, print_scenario
from ksmdiff.scenario.validate import implied_features, validate

__all__ = ["Scenario", "ast", "parse", "parse_file", "print_scenario", "format_statement",
           "implied_features", "validate", "find_scenarios"]


# The parser (lark) is imported on first use: code that only handles parsed scenarios
# (a lab guest unpickling them) does without its import, seconds under an emulated CPU.

def parse(text: str | bytes, source: str = "<string>") -> Scenario:
    from ksmdiff.scenario.parser import parse_raw
    return validate(parse_raw(text, source))


def parse_file(path: str | os.PathLike) -> Scenario:
    from ksmdiff.scenario.parser import MAX_FILE_BYTES
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"file is {size} bytes, more than the limit of {MAX_FILE_BYTES}",
                             Location(str(path), 1, 1), "a scenario of at most 1 MiB")
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", Location(str(path), 1, 1)) from None
    return parse(data, str(path))


def find_scenarios(paths) -> list[Path]:
    """Expand files and directories (every ``*.scenario`` below, sorted) in the given order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.rglob("*.scenario")))
        elif p.exists():
            out.append(p)
        else:
            raise InputError("no such file or directory", Location(str(p), 1, 1))
    return out
