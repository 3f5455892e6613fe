"""Benchmark results: the statistics, the file's check, and the plot of the page."""

from __future__ import annotations

import json
import math
import re

import pytest

from ksmdiff.cli import main
from ksmdiff.errors import InputError
from ksmdiff.reports import bench_record as B
from ksmdiff.reports.html import to_html
from ksmdiff.reports.inputs import Kind, load_one


def test_summary_is_median_quartiles_and_range_of_what_was_measured():
    s = B.summary([4.0, None, 1.0, 3.0, 2.0, 5.0])
    assert (s.n, s.median, s.q1, s.q3, s.lo, s.hi) == (5, 3.0, 2.0, 4.0, 1.0, 5.0)
    one = B.summary([7.5])
    assert (one.median, one.q1, one.q3) == (7.5, 7.5, 7.5)
    assert B.summary([None, float("nan")]) is None


def test_nan_is_stored_as_not_measured():
    s = B.series("x", "s", [1.0, float("nan"), None])
    assert s["samples"] == [1.0, None, None] and s["better"] == "lower"


def test_the_written_file_reads_back(bench_json):
    kind, rec = load_one(str(bench_json))
    assert kind is Kind.BENCH and rec["bench"] == "demo"
    assert len(rec["host"]["load_end"]) == 3 and rec["host"]["cpus"] >= 1
    assert [s["samples"] for s in rec["series"]][1] == [21.0, 20.4, None]


def test_the_plot_draws_every_series_at_its_median(bench_json):
    rec = json.loads(bench_json.read_text())
    page = to_html(None, (), [(str(bench_json), rec)])
    assert page.count('class="plot"') == 2             # two groups, two plots
    medians = sorted(float(m) for m in re.findall(r'data-median="([0-9.]+)"', page))
    assert medians == sorted([49.2, 20.7, 310.0])
    assert page.count("<circle") == 8                  # every measured run a dot
    assert "higher is better" in page and "lower is better" in page
    # the median tick sits where its value is on the axis: x = 230 + value * scale
    ticks = [float(x) for x in re.findall(r'<text x="([0-9.]+)" y="[0-9.]+" '
                                          r'text-anchor="middle" fill="#555">0</text>', page)]
    assert ticks and all(math.isclose(t, 230.0) for t in ticks)


@pytest.mark.parametrize("edit, message", [
    (lambda r: r["series"][0].update(better="sideways"), "better is 'sideways'"),
    (lambda r: r["series"][0].update(samples=["fast"]), "samples must be numbers"),
    (lambda r: r.pop("series"), "lacks series"),
])
def test_a_bad_benchmark_result_is_an_error(bench_json, tmp_path, capsys, edit, message):
    rec = json.loads(bench_json.read_text())
    edit(rec)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rec))
    assert main(["report", str(bad), "-o", str(tmp_path / "r.html")]) == 2
    assert message in capsys.readouterr().err
    with pytest.raises(InputError):
        B.check(rec)
