"""The header every result file of ksmdiff carries besides a run record (a prove result,
a benchmark result): ``tool``, ``kind``, ``format`` and the keys the kind needs."""

from __future__ import annotations

from ksmdiff.errors import InputError, Location


def check_header(rec, where: Location, kind: str, fmt: int, noun: str, made_by: str,
                 required: tuple[str, ...]) -> None:
    """Refuse what is not a ``kind`` result of format ``fmt`` with every ``required`` key
    (``noun``: what the file should be, ``made_by``: the command that writes one)."""
    if not isinstance(rec, dict) or rec.get("tool") != "ksmdiff" or rec.get("kind") != kind:
        raise InputError(f"not a ksmdiff {noun}", where,
                         expected=f'an object with "kind": "{kind}" ({made_by})')
    if rec.get("format") != fmt:
        raise InputError(f"{noun} format {rec.get('format')!r} is not supported",
                         where, expected=f'"format": {fmt}')
    for k in required:
        if k not in rec:
            raise InputError(f"{noun} lacks {k}", where)


def check_rows(rows, what: str, required, where: Location) -> None:
    """Every row of ``what`` (``rows``: a list of objects) has the ``required`` keys."""
    for i, r in enumerate(rows):
        lack = [k for k in required if k not in r]
        if lack:
            raise InputError(f"{what}[{i}] lacks {', '.join(lack)}", where)
