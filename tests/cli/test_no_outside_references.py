"""The repository stands alone: nothing it ships (code, comments, docstrings, spec, corpus,
docs, tests, bench) points at a document that does not ship with it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AREAS = ("ksmdiff", "spec", "grammars", "corpora", "docs", "tests", "bench", ".ci")
TOP = ("README.md", "pyproject.toml", "setup.py")
SUFFIXES = {".py", ".c", ".h", ".lark", ".kspec", ".scenario", ".md", ".json", ".toml",
            ".txt", ".cfg", ""}

# Each pattern is a kind of pointer out of the repository.  This file, which must spell
# them, is the one file not scanned.
OUTSIDE = {
    "a design document": re.compile(r"\bdesign[ ]*([\xa7]|section[ ]*\d|\.md)", re.I),
    "the kernel-eras notes": re.compile(r"kernel[-]eras", re.I),
    "a section sign (a section of some outside document)": re.compile("[\xa7]"),
    "a path on the build machine": re.compile(r"/work[/]|\.\./shared[/]|shared[/](design|reference)"),
    "the seed thread file": re.compile(r"seed[-]thread"),
    "an issue number": re.compile(r"\bissues?[ ]+#?\d", re.I),
    "an issue's text or closing note": re.compile(r"\bissue[ ]+text\b|\bclosing[ ]+note\b", re.I),
}


def _shipped_files():
    for area in AREAS:
        base = ROOT / area
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts \
                    and p.resolve() != Path(__file__).resolve() \
                    and not any(part.endswith(".egg-info") for part in p.parts):
                yield p
    for name in TOP:
        if (ROOT / name).is_file():
            yield ROOT / name


def test_nothing_points_outside_the_repository():
    found = []
    for path in _shipped_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for what, pattern in OUTSIDE.items():
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()[:100]}")
    assert not found, "pointers to documents that do not ship:\n" + "\n".join(found)


def test_the_check_sees_what_it_looks_for(tmp_path):
    bad = ["see design \xa73", "(kernel-eras \xa7f.4)", "per issue 4", "/work/shared/x",
           "the closing note"]
    for line in bad:
        assert any(p.search(line) for p in OUTSIDE.values()), line
    for line in ["pages_shared/pages_sharing", "no issue here", "designed for 5.4"]:
        assert not any(p.search(line) for p in OUTSIDE.values()), line
    assert sum(1 for _ in _shipped_files()) > 100
