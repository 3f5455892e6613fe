"""A strict parser of KTAP version 1 (the kernel's Documentation/dev-tools/ktap.rst), for
the tests: it raises on anything the spec does not allow in the output ksmdiff writes
(no unknown lines), and returns the tree of tests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RESULT = re.compile(r"^(ok|not ok) ([0-9]+)(?: ([^#]*?))?\s*(?:# ?(.*))?$")
PLAN = re.compile(r"^1\.\.([0-9]+)$")


class KtapError(ValueError):
    pass


@dataclass
class Test:
    name: str
    ok: bool
    number: int
    directive: str | None = None     # "SKIP" or None
    reason: str = ""
    diagnostics: list[str] = field(default_factory=list)
    subtests: list["Test"] = field(default_factory=list)


def parse(text: str) -> list[Test]:
    lines = text.split("\n")
    if lines[-1] != "":
        raise KtapError("output does not end with a newline")
    lines = lines[:-1]
    tests, pos = _block(lines, 0, 0)
    if pos != len(lines):
        raise KtapError(f"line {pos + 1}: trailing output: {lines[pos]!r}")
    return tests


def _strip(line: str, depth: int, no: int) -> str:
    indent = "  " * depth
    if not line.startswith(indent) or line[len(indent):].startswith(" "):
        raise KtapError(f"line {no + 1}: expected indentation of {len(indent)} spaces: "
                        f"{line!r}")
    return line[len(indent):]


def _block(lines, pos, depth):
    """Version line, plan, then that many results (each maybe with a nested block)."""
    if pos >= len(lines) or _strip(lines[pos], depth, pos) != "KTAP version 1":
        raise KtapError(f"line {pos + 1}: expected 'KTAP version 1'")
    pos += 1
    diags = []
    while pos < len(lines) and _strip(lines[pos], depth, pos).startswith("#"):
        diags.append(_strip(lines[pos], depth, pos))
        pos += 1
    m = PLAN.match(_strip(lines[pos], depth, pos)) if pos < len(lines) else None
    if not m:
        raise KtapError(f"line {pos + 1}: expected a plan '1..N'")
    planned = int(m.group(1))
    pos += 1
    tests: list[Test] = []
    while len(tests) < planned:
        if pos >= len(lines):
            raise KtapError(f"plan says {planned} tests, found {len(tests)}")
        before: list[str] = []
        subtests: list[Test] = []
        if lines[pos].startswith("  " * (depth + 1) + "KTAP version"):
            subtests, pos = _block(lines, pos, depth + 1)
        while pos < len(lines) and _strip(lines[pos], depth, pos).startswith("#"):
            before.append(_strip(lines[pos], depth, pos)[1:].strip())
            pos += 1
        if pos < len(lines) and lines[pos].startswith("  " * (depth + 1) + "KTAP version"):
            if subtests:
                raise KtapError(f"line {pos + 1}: two subtest blocks for one result")
            subtests, pos = _block(lines, pos, depth + 1)
        if pos >= len(lines):
            raise KtapError(f"plan says {planned} tests, found {len(tests)}")
        body = _strip(lines[pos], depth, pos)
        m = RESULT.match(body)
        if not m:
            raise KtapError(f"line {pos + 1}: expected a test result line: {body!r}")
        number = int(m.group(2))
        if number != len(tests) + 1:
            raise KtapError(f"line {pos + 1}: test number {number}, expected {len(tests) + 1}")
        directive, reason = None, ""
        if m.group(4) is not None:
            word, _, rest = m.group(4).partition(" ")
            if word == "SKIP":
                directive, reason = "SKIP", rest
            elif word in ("TODO", "XFAIL", "TIMEOUT", "ERROR"):
                raise KtapError(f"line {pos + 1}: directive {word} not written by ksmdiff")
            else:
                raise KtapError(f"line {pos + 1}: text after '#' that is no directive")
        if directive == "SKIP" and m.group(1) != "ok":
            raise KtapError(f"line {pos + 1}: a skipped test must be 'ok'")
        tests.append(Test(name=(m.group(3) or "").strip(), ok=m.group(1) == "ok",
                          number=number, directive=directive, reason=reason,
                          diagnostics=diags + before, subtests=subtests))
        diags = []
        if subtests and any(not t.ok for t in subtests) and tests[-1].ok:
            raise KtapError(f"line {pos + 1}: parent ok but a subtest failed")
        pos += 1
    return tests, pos
