"""Scenario → text, in the canonical form (the generator and the prover print scenarios).

Comments attached by the parser are printed back: the lines above a statement above it, a
trailing comment two spaces after it.  Blank lines between statements are kept (one for a
run of them); the header lines come first, then one blank line, then ``process``.
"""

from __future__ import annotations

from ksmdiff.scenario import ast as A


def _byte(b: int | None) -> str:
    return "zero" if b is None else f"0x{b:02x}"


def format_statement(s: A.Statement) -> str:
    on = ""
    if isinstance(s, (A.ExpectPage, A.ExpectCounter, A.ExpectPrctl)) and s.versions is not None:
        on = f" on {s.versions}"
    if isinstance(s, A.Mmap):
        node = "" if s.node is None else f" node {s.node}"
        return f"{s.proc}: mmap {s.region} {s.npages}{node}"
    if isinstance(s, A.Fill):
        return f"{s.proc}: fill {s.target} {_byte(s.byte)}"
    if isinstance(s, A.Write):
        return f"{s.proc}: write {s.target} {_byte(s.byte)}"
    if isinstance(s, A.ForceWrite):
        return f"{s.proc}: force-write {s.target} {_byte(s.byte)}"
    if isinstance(s, A.Read):
        return f"{s.proc}: read {s.target}"
    if isinstance(s, A.Madvise):
        return f"{s.proc}: madvise {s.target} {s.advice}"
    if isinstance(s, A.Mprotect):
        return f"{s.proc}: mprotect {s.target} {s.prot}"
    if isinstance(s, A.Munmap):
        return f"{s.proc}: munmap {s.target}"
    if isinstance(s, A.Fork):
        return f"{s.proc}: fork {s.child}"
    if isinstance(s, A.Exit):
        return f"{s.proc}: exit"
    if isinstance(s, A.Exec):
        return f"{s.proc}: exec"
    if isinstance(s, A.Pin):
        return f"{s.proc}: pin {s.target}"
    if isinstance(s, A.Unpin):
        return f"{s.proc}: unpin {s.target}"
    if isinstance(s, A.Mlock):
        return f"{s.proc}: mlock {s.target}"
    if isinstance(s, A.Munlock):
        return f"{s.proc}: munlock {s.target}"
    if isinstance(s, A.UffdWp):
        return f"{s.proc}: uffd-wp {s.target}"
    if isinstance(s, A.Prctl):
        return f"{s.proc}: prctl merge {'on' if s.on else 'off'}"
    if isinstance(s, A.Cgroup):
        limit = "" if s.memory_max is None else f" memory-max {s.memory_max}"
        mems = "" if s.mems is None else f" mems {s.mems}"
        return f"{s.proc}: cgroup {s.group}{limit}{mems}"
    if isinstance(s, A.Mempolicy):
        return f"{s.proc}: mempolicy " + ("default" if s.node is None else f"bind {s.node}")
    if isinstance(s, A.KsmSettle):
        return "ksm settle"
    if isinstance(s, A.KsmScan):
        return f"ksm scan {s.scans}"
    if isinstance(s, A.KsmSet):
        return f"ksm set {s.knob} {s.value}"
    if isinstance(s, A.ExpectPage):
        neg = "not " if s.negated else ""
        return f"expect {s.proc} {s.target} {neg}{s.predicate}{on}"
    if isinstance(s, A.ExpectPrctl):
        return f"expect {s.proc} prctl merge {'on' if s.on else 'off'}{on}"
    if isinstance(s, A.KsmUnmergeAll):
        return "ksm unmerge-all"
    if isinstance(s, A.ExpectCounter):
        who = "" if s.proc is None else f"{s.proc} "
        value = f"={s.delta}" if s.absolute else f"{s.delta:+d}"
        return f"expect counter {who}{s.counter} {value}{on}"
    raise TypeError(f"not a scenario statement: {s!r}")


def _quote(title: str) -> str:
    return '"' + title.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment_lines(before) -> list[str]:
    return ["" if c is None else f"#{c}" for c in before]


def _with_comments(text: str, comments: A.Comments) -> list[str]:
    lines = _comment_lines(comments.before)
    if comments.trailing is not None:
        text = f"{text}  #{comments.trailing}"
    lines.append(text)
    return lines


def print_scenario(scn: A.Scenario) -> str:
    """The canonical text of ``scn``, comments included; ``parse(print_scenario(s)) == s``."""
    lines = _with_comments(f"scenario {_quote(scn.title)}", scn.header_comment("scenario"))
    if scn.tags:
        lines += _with_comments("tags " + ", ".join(scn.tags), scn.header_comment("tags"))
    if scn.requires:
        lines += _with_comments("requires " + ", ".join(scn.requires),
                                scn.header_comment("requires"))
    lines.append("")
    lines += _with_comments(f"process {scn.initial}", scn.header_comment("process"))
    for s in scn.statements:
        lines += _with_comments(format_statement(s), getattr(s, "comments", A.NO_COMMENTS))
    if scn.end_comments:
        lines += _comment_lines(scn.end_comments)
    return "\n".join(lines) + "\n"
