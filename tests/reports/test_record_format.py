"""A run record of an older format is refused with its format and why (reports.record):
format 1 labelled frames by first use ("F0"), which a reader of today's labels (a frame's
first page) would misread; format 2 wrote a key per run of pages reading one value, where
format 3 also writes a run of labels following the page index as one ("A/buf[i]")."""

from __future__ import annotations

import json

import pytest

from ksmdiff.errors import InputError
from ksmdiff.reports.record import FORMAT, load


def _record(fmt) -> dict:
    return {"tool": "ksmdiff", "tool_version": "0", "format": fmt, "argv": [], "notes": [],
            "started": "2026-01-01T00:00:00Z", "elapsed_s": 0.0,
            "host": {"uname": "x", "machine": "x"}, "versions": [], "scenarios": [],
            "results": []}


@pytest.mark.parametrize("fmt,why", [(1, '"F0"'), (2, '"A/buf[i]"')])
def test_an_older_format_is_refused_naming_its_format_and_why(tmp_path, fmt, why):
    p = tmp_path / "old.json"
    p.write_text(json.dumps(_record(fmt)))
    with pytest.raises(InputError) as e:
        load(str(p))
    msg = str(e.value)
    assert f"format {fmt} is not supported" in msg and why in msg
    assert f'"format": {FORMAT}' in msg


def test_a_record_of_this_format_loads(tmp_path):
    p = tmp_path / "new.json"
    p.write_text(json.dumps(_record(FORMAT)))
    assert load(str(p))["format"] == FORMAT == 3
