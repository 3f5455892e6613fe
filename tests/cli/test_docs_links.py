"""Every pointer into the repository's own docs resolves: links in README.md and docs/*.md,
and the docs/<file>.md#<section> references in code, spec and corpus comments."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
DOC_REF = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.(?:md|json))(?:#([a-z0-9-]+))?")


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'."""
    out = set()
    for line in md.read_text().splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            text = re.sub(r"[`*]", "", m.group(1)).strip().lower()
            out.add(re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-"))
    return out


def _check(target: Path, anchor: str | None, where: str, bad: list[str]) -> None:
    if not target.exists():
        bad.append(f"{where}: {target.relative_to(ROOT)} does not exist")
    elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
        bad.append(f"{where}: no section #{anchor} in {target.relative_to(ROOT)}")


def test_markdown_links_resolve():
    bad: list[str] = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, line in enumerate(md.read_text().splitlines(), 1):
            for link in MD_LINK.findall(line):
                if re.match(r"[a-z]+:", link):
                    continue
                path, _, anchor = link.partition("#")
                target = (md.parent / path).resolve() if path else md
                _check(target, anchor or None, f"{md.relative_to(ROOT)}:{n}", bad)
    assert not bad, "\n".join(bad)


def test_doc_references_in_comments_resolve():
    bad: list[str] = []
    for area in ("ksmdiff", "spec", "grammars", "corpora", "tests", "bench"):
        for p in sorted((ROOT / area).rglob("*")):
            if not p.is_file() or p.suffix not in {".py", ".c", ".lark", ".kspec", ".scenario",
                                                   ".md"}:
                continue
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
                for name, anchor in DOC_REF.findall(line):
                    _check(ROOT / "docs" / name, anchor or None,
                           f"{p.relative_to(ROOT)}:{n}", bad)
    assert not bad, "\n".join(bad)


def test_the_anchor_rule_matches_headings():
    assert {"pinned-twin", "swap-in-same-frame", "lazy-cleanup", "eras"} <= _anchors(
        ROOT / "docs" / "kernel-notes.md")
