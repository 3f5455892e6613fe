"""The probe's output format: wire.py describes it, probe.c prints the same names (checked
here from the source, and by the runner at every probe start)."""

from __future__ import annotations

import re

import pytest

from ksmdiff.probe import wire
from ksmdiff.probe.build import source_text


def _c_array(name: str) -> tuple[str, ...]:
    src = source_text().decode()
    m = re.search(r"%s\[[A-Z_]*\]\s*=\s*\{(.*?)\};" % name, src, re.S)
    assert m, name
    return tuple(re.findall(r'"([^"]*)"', m.group(1)))


def test_the_c_probe_names_the_fields_wire_describes():
    assert _c_array("page_fields") == wire.PAGE_FIELDS
    assert _c_array("counter_names") == wire.COUNTERS


def test_index_constants_follow_the_field_order():
    for i, name in enumerate(wire.PAGE_FIELDS):
        assert getattr(wire, name.upper()) == i


@pytest.mark.parametrize("msg, kind", [
    ({"start": 1, "pid": 5}, wire.Kind.START),
    ({"sync": 3}, wire.Kind.SYNC),
    ({"end": 1}, wire.Kind.END),
    ({"s": 2, "error": "x"}, wire.Kind.ERROR),
    ({"s": 2, "c": {}, "p": []}, wire.Kind.RECORD),
])
def test_kinds(msg, kind):
    assert wire.kind(msg) is kind


@pytest.mark.parametrize("msg", [{}, {"s": 1}, {"pid": 3}])
def test_anything_else_is_refused(msg):
    with pytest.raises(ValueError):
        wire.kind(msg)


def test_check_start_refuses_another_layout():
    good = {"start": 1, "pid": 42, "fields": list(wire.PAGE_FIELDS),
            "records": wire.RECORDS_OF_RUNS, "counters": list(wire.COUNTERS)}
    assert wire.check_start(good) == 42
    with pytest.raises(ValueError, match="records"):
        # a probe printing whole states (or changes page by page), read as runs: refused
        wire.check_start({k: v for k, v in good.items() if k != "records"})
    with pytest.raises(ValueError, match="page fields"):
        wire.check_start({**good, "fields": list(wire.PAGE_FIELDS[:-1])})
    with pytest.raises(ValueError, match="counters"):
        wire.check_start({**good, "counters": ["cow_ksm"]})
    with pytest.raises(ValueError, match="pid"):
        wire.check_start({**good, "pid": -1})


def test_the_runner_decodes_no_entry_by_a_bare_index():
    """Page entries are read through wire's named indices, never e[3]."""
    from pathlib import Path
    runner = Path(wire.__file__).with_name("runner.py").read_text()
    assert not re.search(r"\be\[\d+", runner)
