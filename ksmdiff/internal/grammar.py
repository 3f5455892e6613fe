"""Loading the lark grammars and turning lark's errors into :class:`InputError`."""

from __future__ import annotations

import functools
from pathlib import Path

import lark
from lark.lexer import PatternStr

from ksmdiff.errors import InputError, Location
from ksmdiff.internal.resources import data_dir


def grammar_dir(name: str) -> Path:
    """The folder holding grammar ``name``: grammars/ of the checkout, else the installed
    package data ksmdiff.grammars."""
    return data_dir("grammars", "ksmdiff.grammars", f"{name}.lark")


# How a regexp terminal is described to a user who wrote something else.
TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "a number",
    "SIGNED": "a signed number such as +1",
    "HEX": "a byte such as 0x5a",
    "STRING": 'a quoted string such as "title"',
    "VERSION": "a kernel version such as 5.4",
    "CMP": "a comparison (<, <=, >, >=)",
    "_NL": "end of line",
    "$END": "end of file",
    "PREDICATE": "a predicate (ksm, reused, copied, zero-page, swapped, present, unmapped, "
                 "exclusive, mapcount N, content C, same-frame P PAGE)",
}


def grammar_text(name: str) -> str:
    """The text of ``grammars/NAME.lark`` (from the checkout, else the installed package)."""
    return (grammar_dir(name) / f"{name}.lark").read_text()


@functools.lru_cache(maxsize=None)
def lalr_parser(name: str) -> lark.Lark:
    return lark.Lark(grammar_text(name), parser="lalr", lexer="contextual",
                     propagate_positions=True, maybe_placeholders=False)


def describe_terminals(parser: lark.Lark, names) -> str:
    words = []
    by_name = {t.name: t for t in parser.terminals}
    for n in sorted(set(names)):
        if n in TERMINAL_WORDS:
            words.append(TERMINAL_WORDS[n])
            continue
        term = by_name.get(n)
        if term is not None and isinstance(term.pattern, PatternStr):
            words.append(repr(term.pattern.value))
        else:
            words.append(n.lower())
    words = sorted(set(words))
    if len(words) > 12:
        words = words[:12] + ["..."]
    return " or ".join(words) if len(words) < 3 else "one of " + ", ".join(words)


def decode_source(data: bytes | str, source: str, max_bytes: int) -> str:
    """Check size and encoding of an input file before any parsing."""
    if isinstance(data, str):
        raw_len = len(data.encode("utf-8", "surrogatepass"))
        text = data
    else:
        raw_len = len(data)
        text = None
    if raw_len > max_bytes:
        raise InputError(f"file is {raw_len} bytes, more than the limit of {max_bytes}",
                         Location(source, 1, 1), "a scenario of at most 1 MiB")
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            before = data[: e.start]
            line = before.count(b"\n") + 1
            col = e.start - (before.rfind(b"\n") + 1) + 1
            raise InputError(f"byte 0x{data[e.start]:02x} is not UTF-8 text",
                             Location(source, line, col), "a text file") from None
    for i, ch in enumerate(text):
        if ch == "\x00" or (ord(ch) < 32 and ch not in "\t\n\r\f"):
            line = text.count("\n", 0, i) + 1
            col = i - (text.rfind("\n", 0, i) + 1) + 1
            raise InputError(f"control character {ch!r} in the text",
                             Location(source, line, col), "printable text")
    return text


def lark_error(parser: lark.Lark, err: lark.exceptions.LarkError, source: str) -> InputError:
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        loc = Location(source, err.line, err.column)
        return InputError(f"unexpected character {err.char!r}", loc,
                          describe_terminals(parser, err.allowed or ()))
    if isinstance(err, lark.exceptions.UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            what = "unexpected end of file"
        elif tok.type == "_NL":
            what = "unexpected end of line"
        else:
            what = f"unexpected {str(tok)!r}"
        line = getattr(tok, "line", None) or err.line or 1
        col = getattr(tok, "column", None) or err.column or 1
        if line == -1 or col == -1:
            line, col = 1, 1
        return InputError(what, Location(source, line, col),
                          describe_terminals(parser, err.expected or ()))
    if isinstance(err, lark.exceptions.UnexpectedEOF):
        return InputError("unexpected end of file", Location(source, 1, 1),
                          describe_terminals(parser, err.expected or ()))
    if isinstance(err, lark.exceptions.VisitError) and isinstance(err.orig_exc, InputError):
        return err.orig_exc
    return InputError(str(err), Location(source, 1, 1))
