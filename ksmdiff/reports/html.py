"""A run record as one self-contained HTML page (no scripts, no external files):

* the version × scenario grid: held, mismatch with its class, failed, unsupported or not
  run with the reason;
* per scenario, the statement table: at each statement the values the model allows beside
  what each kernel showed, the first divergence highlighted;
* the frame graph of a scenario (processes -> ptes -> frames, KSM frames marked) at its
  last state with a KSM page, drawn as inline SVG;
* label coverage by kernel, when the record carries the ``coverage`` of a three-way run.
"""

from __future__ import annotations

import html
import re

from ksmdiff.reports.record import (Outcome, by_target, first_problem, outcome, scenario_name,
                                    with_fields)

_PAGE_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)/([A-Za-z_][A-Za-z0-9_-]*)\[([0-9]+)\]"
                       r"\.([a-z]+)$")
CSS = """
body{font:14px/1.4 sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eee}
td.held{background:#d7f5d7} td.failed,td.mismatch{background:#f8c8c8;font-weight:bold}
td.unsupported{background:#eee;color:#555} td.not-run,td.environment{background:#fff3c4}
tr.diverge td{background:#f8c8c8;font-weight:bold}
code{font-size:13px}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _values(v) -> str:
    if v is None:
        return "-"
    if v == "*":
        return "any"
    return ", ".join("null" if x is None else str(x).lower() if isinstance(x, bool) else str(x)
                     for x in v)


def cell_text(result: dict) -> str:
    o = outcome(result)
    if o is Outcome.HELD:
        held = sum(e["status"] == "held" for e in result["expects"])
        return f"held {held}" + (" reuse" if result["ksm_reuse"] else "")
    if o is Outcome.MISMATCH:
        return f"mismatch ({result['mismatch']['classification']})"
    if o is Outcome.FAILED:
        failed = sum(e["status"] == "failed" for e in result["expects"])
        return f"failed {failed}" if failed else f"violation x{len(result['violations'])}"
    return {Outcome.NOT_RUN: "not run"}.get(o, o.value) + f": {result['reason']}"


def grid(record: dict) -> str:
    groups = by_target(record)
    cells = {(r["source"], r["target"]): r for r in record["results"]}
    out = ['<table id="grid"><tr><th>scenario</th>'
           + "".join(f"<th>{_e(t)}</th>" for t in groups) + "</tr>"]
    for i, src in enumerate(record["scenarios"]):
        row = [f'<td><a href="#s{i}">{_e(scenario_name(src))}</a></td>']
        for t in groups:
            r = cells.get((src, t))
            if r is None:
                row.append('<td class="not-run" data-outcome="not-run">not run</td>')
                continue
            o = outcome(r)
            row.append(f'<td class="{o.value}" data-outcome="{o.value}" '
                       f'data-target="{_e(t)}" title="{_e(first_problem(r) or r["reason"])}">'
                       f"{_e(cell_text(r))}</td>")
        out.append(f'<tr data-scenario="{_e(src)}">' + "".join(row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _changed(records: list[dict]) -> list[tuple[int, str]]:
    """(line, key) of each field whose value changed from the record before."""
    rows, prev = [], {}
    for rec in with_fields(records):
        for key, v in sorted(rec["fields"].items()):
            if prev.get(key, object()) != v:
                rows.append((rec["line"], key))
        prev = rec["fields"]
    return rows


def statement_table(results: list[dict]) -> str:
    """Model's allowed values (model columns; a kernel's model_observations) beside what
    each kernel showed, at every statement where a value changed."""
    ran = [r for r in results if r["status"] == "ok" and r["observations"]]
    if not ran:
        return "<p>no observations: it ran on no target.</p>"
    by_line = {}
    for r in ran:
        for rec in with_fields(r["observations"]):
            by_line.setdefault((r["target"], rec["line"]), rec["fields"])
        for rec in with_fields(r.get("model_observations", [])):
            by_line.setdefault((r["target"] + " model", rec["line"]), rec["fields"])
    cols = []
    for r in ran:
        if r.get("model_observations"):
            cols += [(r["target"] + " model", "allowed"), (r["target"], "showed")]
        else:
            cols.append((r["target"], "allowed"))
    rows = sorted(set(_changed(ran[0].get("model_observations") or ran[0]["observations"]))
                  | {x for r in ran for x in _changed(r["observations"])})
    first = {(r["mismatch"]["first"]["line"], r["mismatch"]["first"]["key"])
             for r in ran if r["mismatch"]}
    out = ["<table class=\"stmts\"><tr><th>line</th><th>field</th>"
           + "".join(f"<th>{_e(c)} ({w})</th>" for c, w in cols) + "</tr>"]
    for line, key in rows:
        cls = ' class="diverge"' if (line, key) in first else ""
        tds = "".join(f"<td>{_e(_values(by_line.get((c, line), {}).get(key)))}</td>"
                      for c, _ in cols)
        out.append(f"<tr{cls}><td>{line}</td><td><code>{_e(key)}</code></td>{tds}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _one(v):
    return v[0] if isinstance(v, list) and len(v) == 1 else None


def frame_graph(fields: dict) -> str:
    """Processes -> ptes -> frames of one observation record, as inline SVG: one value per
    field (the kernel's, or the model's when it allows only one); KSM frames filled."""
    ptes: dict[tuple[str, str, int], dict] = {}
    for key, v in fields.items():
        m = _PAGE_KEY.match(key)
        if m:
            ptes.setdefault((m.group(1), m.group(2), int(m.group(3))), {})[m.group(4)] = v
    if not ptes:
        return ""
    procs = list(dict.fromkeys(p for p, _, _ in sorted(ptes)))
    frames: dict[str, bool] = {}
    for f in sorted(ptes.values(), key=lambda f: str(f.get("frame"))):
        fr = _one(f.get("frame"))
        if fr is not None:
            frames[fr] = frames.get(fr, False) or _one(f.get("ksm")) is True
    row_h, x = 34, (20, 200, 420)
    height = row_h * max(len(procs), len(ptes), len(frames)) + 40
    y_proc = {p: 30 + i * row_h for i, p in enumerate(procs)}
    y_pte = {k: 30 + i * row_h for i, k in enumerate(sorted(ptes))}
    y_frame = {f: 30 + i * row_h for i, f in enumerate(frames)}
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="560" height="{height}" '
           f'class="frames" role="img"><title>processes, ptes and frames</title>',
           '<text x="20" y="16" font-weight="bold">process</text>'
           '<text x="200" y="16" font-weight="bold">pte</text>'
           '<text x="420" y="16" font-weight="bold">frame</text>']
    for k, y in y_pte.items():
        f = ptes[k]
        svg.append(f'<line x1="{x[0] + 90}" y1="{y_proc[k[0]] + 10}" x2="{x[1]}" y2="{y + 10}"'
                   ' stroke="#888"/>')
        fr = _one(f.get("frame"))
        if fr is not None:
            svg.append(f'<line x1="{x[1] + 150}" y1="{y + 10}" x2="{x[2]}" '
                       f'y2="{y_frame[fr] + 10}" stroke="#333" stroke-width="2"/>')
        label = f"{k[1]}[{k[2]}]"
        if _one(f.get("mapcount")) is not None:
            label += f" map {_one(f.get('mapcount'))}"
        if fr is None:
            label += " (" + ("swapped" if _one(f.get("swapped")) else "no frame") + ")"
        svg.append(f'<rect x="{x[1]}" y="{y}" width="150" height="22" fill="#f4f4ff" '
                   f'stroke="#669"/><text x="{x[1] + 4}" y="{y + 15}">{_e(label)}</text>')
    for p, y in y_proc.items():
        svg.append(f'<rect x="{x[0]}" y="{y}" width="90" height="22" fill="#eef" '
                   f'stroke="#446"/><text x="{x[0] + 4}" y="{y + 15}">{_e(p)}</text>')
    for fr, y in y_frame.items():
        ksm = frames[fr]
        svg.append(f'<rect x="{x[2]}" y="{y}" width="110" height="22" '
                   f'fill="{"#f9b233" if ksm else "#fff"}" stroke="#000" '
                   f'data-ksm="{str(ksm).lower()}"/>'
                   f'<text x="{x[2] + 4}" y="{y + 15}">{_e(fr)}{" KSM" if ksm else ""}</text>')
    svg.append("</svg>")
    return "".join(svg)


def coverage_table(coverage: dict) -> str:
    """{target: {era: {labels, corpus, model, kernel}}} as a label × target table."""
    cols = [(t, era) for t, eras in coverage.items() for era in eras]
    labels = list(dict.fromkeys(lab for t, era in cols for lab in coverage[t][era]["labels"]))
    out = ['<table id="coverage"><tr><th>label</th>'
           + "".join(f"<th>{_e(t)} ({_e(era)})</th>" for t, era in cols) + "</tr>"]
    for lab in labels:
        tds = []
        for t, era in cols:
            row = coverage[t][era]
            seen = [k for k in ("corpus", "model", "kernel") if lab in row.get(k, ())]
            tds.append(f'<td class="{"held" if seen else "not-run"}">'
                       f'{_e(", ".join(seen) or "-")}</td>')
        out.append(f"<tr><td><code>{_e(lab)}</code></td>{''.join(tds)}</tr>")
    out.append("</table>")
    return "\n".join(out)


def to_html(record: dict) -> str:
    groups = by_target(record)
    counts = {o: 0 for o in Outcome}
    for r in record["results"]:
        counts[outcome(r)] += 1
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>ksmdiff run {_e(record['started'])}</title><style>{CSS}</style>"
             "</head><body>",
             f"<h1>ksmdiff run, {_e(record['started'])}</h1>",
             f"<p>ksmdiff {_e(record['tool_version'])} on {_e(record['host']['uname'])} "
             f"{_e(record['host']['machine'])}; {len(record['scenarios'])} scenarios on "
             f"{len(groups)} targets: "
             + ", ".join(f"{n} {o.value}" for o, n in counts.items() if n) + "</p>"]
    parts += [f"<p>{_e(n)}</p>" for n in record["notes"]]
    parts += ["<h2>Grid</h2>", grid(record)]
    cov = record.get("coverage")
    if cov:
        parts += ["<h2>Label coverage by kernel</h2>", coverage_table(cov)]
    cells = {(r["source"], r["target"]): r for r in record["results"]}
    for i, src in enumerate(record["scenarios"]):
        results = [cells[(src, t)] for t in groups if (src, t) in cells]
        title = results[0]["title"] if results else ""
        parts.append(f'<h2 id="s{i}">{_e(scenario_name(src))}</h2><p>{_e(title)} '
                     f"(<code>{_e(src)}</code>)</p>")
        for r in results:
            problem = first_problem(r)
            if problem:
                parts.append(f"<p><b>{_e(r['target'])}</b>: {_e(problem)}</p>")
        parts.append(statement_table(results))
        shown = next((r for r in results if r["status"] == "ok" and r["observations"]), None)
        if shown:
            # The last state with a KSM page in it, else the last state.
            recs = with_fields(shown["observations"])
            last = next((rec for rec in reversed(recs) if any(
                k.endswith(".ksm") and _one(v) is True for k, v in rec["fields"].items())),
                recs[-1])
            parts.append(f"<p>frames after line {last['line']} on {_e(shown['target'])}:</p>"
                         + frame_graph(last["fields"]))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
