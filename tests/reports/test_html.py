from __future__ import annotations

import copy
import json
import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ksmdiff.cli import main
from ksmdiff.reports.html import to_html
from ksmdiff.reports.record import load, with_fields


class Page(HTMLParser):
    """The grid's cells, the highlighted rows, the SVG rectangles, the coverage rows."""

    def __init__(self):
        super().__init__()
        self.grid: dict[tuple[str, str], str] = {}
        self.diverge = 0
        self.ksm_frames = 0
        self.svgs = 0
        self.coverage = False
        self.external = []
        self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-scenario" in a:
            self._row = a["data-scenario"]
        if tag == "td" and "data-outcome" in a and self._row:
            self.grid[(self._row, a.get("data-target"))] = a["data-outcome"]
        if tag == "tr" and a.get("class") == "diverge":
            self.diverge += 1
        if tag == "svg":
            self.svgs += 1
        if tag == "rect" and a.get("data-ksm") == "true":
            self.ksm_frames += 1
        if tag == "table" and a.get("id") == "coverage":
            self.coverage = True
        for k in ("src", "href"):
            if k in a and not a[k].startswith("#"):
                self.external.append(a[k])


def _parse(text: str) -> Page:
    p = Page()
    p.feed(text)
    return p


def _with_host(record: dict) -> dict:
    """A host column whose first scenario shows a value the model does not allow."""
    rec = copy.deepcopy(record)
    src = next(s for s in rec["scenarios"] if s.endswith("child-writes.scenario"))
    base = next(r for r in rec["results"] if r["source"] == src and r["target"] == "6.12")
    host = dict(copy.deepcopy(base), target="host", version="6.12.48",
                model_observations=copy.deepcopy(base["observations"]))
    # the host's records as whole states (a kernel record may come either way)
    host["observations"] = [{k: v for k, v in o.items() if k != "changes"}
                            for o in with_fields(host["observations"])]
    rec_at = next(o for o in host["observations"] if "B/buf[0].fault" in o["fields"])
    rec_at["fields"]["B/buf[0].fault"] = ["reused"]
    host["mismatch"] = {
        "source": src, "title": base["title"], "version": "6.12.48",
        "statement": "B: write buf[0] 0x02",
        "first": {"stmt": rec_at["stmt"], "line": rec_at["line"], "key": "B/buf[0].fault",
                  "allowed": ["copied"], "observed": ["reused"]},
        "classification": "reproducible", "reruns": 2, "reproduced": 2}
    rec["versions"].append("host")
    rec["results"].append(host)
    rec["coverage"] = {"host": {"5.9+": {"labels": ["wp_page_copy", "reuse_ksm_page"],
                                         "corpus": ["wp_page_copy"], "model": ["wp_page_copy"],
                                         "kernel": []}}}
    return rec


def test_grid_cells(run_json, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(run_json), "-o", str(out)]) == 0
    page = _parse(out.read_text())
    record = load(str(run_json))
    assert len(page.grid) == len(record["results"])
    by_name = {(Path(s).stem, t): o for (s, t), o in page.grid.items()}
    assert by_name[("prctl-merge", "5.4")] == "unsupported"
    assert by_name[("prctl-merge", "6.12")] == "held"
    assert by_name[("fails", "6.12")] == "failed"
    assert by_name[("child-writes", "5.4")] == "held"
    assert page.svgs >= 3 and page.ksm_frames >= 1
    assert page.external == [] and "<script" not in out.read_text()


def test_mismatch_coverage_and_divergence(run_json):
    text = to_html(_with_host(load(str(run_json))))
    page = _parse(text)
    assert {o for (s, t), o in page.grid.items() if t == "host"} == {"mismatch"}
    assert page.diverge == 1 and page.coverage
    # the host's graphs differ from the model's: their own row, unfolded, the state after
    # the diverging statement framed
    assert text.count('class="frames diverge"') == 1 and "<details open>" in text


def test_merged_records(run_json, tmp_path):
    rec = load(str(run_json))
    a = dict(rec, versions=["5.4"], results=[r for r in rec["results"] if r["target"] == "5.4"])
    b = dict(rec, versions=["6.12"], results=[r for r in rec["results"]
                                              if r["target"] == "6.12"])
    paths = []
    for name, r in (("a", a), ("b", b)):
        p = tmp_path / f"{name}.json"
        p.write_text(__import__("json").dumps(r))
        paths.append(str(p))
    out = tmp_path / "m.html"
    assert main(["report", *paths, "-o", str(out)]) == 0
    assert _parse(out.read_text()).grid == _parse(to_html(rec)).grid


def _png_pixels(path: Path) -> tuple[int, int, set]:
    """Width, height and the set of distinct pixels of an 8-bit RGB(A) PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev, pixels = bytearray(stride), set()
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 8 == 0:
            pixels.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 4))
        prev = line
    return width, height, pixels


def _chromium() -> str | None:
    """Debian's chromium; installed with apt when missing and apt can (root, a mirror)."""
    if shutil.which("chromium") is None and shutil.which("apt-get") and os.geteuid() == 0 \
            and not os.environ.get("KSMDIFF_NO_APT"):
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        "chromium"], capture_output=True, timeout=900,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return shutil.which("chromium")


def _has(pixels, rgb, tol=6) -> bool:
    return any(all(abs(p[i] - rgb[i]) <= tol for i in range(3)) for p in pixels)


class Rendered(HTMLParser):
    """What the browser's DOM holds: grid cells, frame-graph steps, counterexample steps,
    plots."""

    def __init__(self):
        super().__init__()
        self.cells = self.steps = self.cex_steps = self.plots = self.medians = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.cells += tag == "td" and "data-outcome" in a
        self.steps += tag == "svg" and "frames" in a.get("class", "").split()
        self.cex_steps += tag == "tr" and "data-cex-step" in a
        self.plots += tag == "svg" and a.get("class") == "plot"
        self.medians += "data-median" in a


def test_headless_chromium_renders_it(run_json, prove_json, bench_json, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed and apt-get could not install it "
                    "(apt-get install chromium)")
    out = tmp_path / "report.html"
    assert main(["report", str(run_json), str(prove_json), str(bench_json),
                 "-o", str(out)]) == 0
    shot = tmp_path / "shot.png"
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run(base + ["--window-size=1000,2600", f"--screenshot={shot}", out.as_uri()],
                   check=True, capture_output=True, timeout=300)
    width, height, pixels = _png_pixels(shot)
    assert (width, height) == (1000, 2600)
    green = {p for p in pixels if p[1] > p[0] + 20 and p[1] > p[2] + 20}
    assert len(pixels) > 5 and green, "the screenshot is blank or shows no held cell"
    assert _has(pixels, (0xf9, 0xb2, 0x33)), "no KSM frame drawn in the first 2600 px"
    assert _has(pixels, (0xcf, 0xe0, 0xf5)), "no plot box drawn in the first 2600 px"
    dom = subprocess.run(base + ["--dump-dom", out.as_uri()], check=True,
                         capture_output=True, text=True, timeout=300).stdout
    r = Rendered()
    r.feed(dom)
    record = load(str(run_json))
    assert r.cells == len(record["results"])
    ran = [x for x in record["results"] if x["status"] == "ok"]
    # every statement of every scenario drawn (targets with the same graphs share one row)
    per_scenario = {x["source"]: len(x["observations"]) for x in ran}
    assert r.steps >= sum(per_scenario.values())
    prove = json.loads(prove_json.read_text())
    assert r.cex_steps == prove["results"][0]["trace"]["depth"]
    assert r.plots == 2 and r.medians == 3
