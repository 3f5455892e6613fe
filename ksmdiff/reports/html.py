"""Results as one self-contained HTML page (no scripts, no external files):

* the version × scenario grid: held, mismatch with its class, failed, unsupported or not
  run with the reason;
* per scenario, the statement table: at each statement the values the model allows beside
  what each kernel showed, the first divergence highlighted;
* the frame graph of a scenario after every statement, as small multiples (processes ->
  ptes -> frames -> stable nodes, KSM frames and the statement's faults marked; targets
  that show the same graphs share one drawing);
* label coverage by kernel, when the record carries the ``coverage`` of a three-way run;
* the results of ``prove --json``: the status per property and era, every counterexample
  step by step;
* the results of ``bench/*.py --json``: every series' samples, quartiles and median.

The data comes from :mod:`record`, :mod:`frames`, :mod:`prove_record` and
:mod:`bench_record`; the drawings from :mod:`svg`; this module only lays them out.
"""

from __future__ import annotations

import html

from ksmdiff.reports import prove_record
from ksmdiff.reports.bench_record import Better
from ksmdiff.reports.frames import frame_steps
from ksmdiff.reports.record import (Outcome, by_target, first_problem, outcome, scenario_name,
                                    states)
from ksmdiff.reports.svg import frame_svg, spread_plot

CSS = """
body{font:14px/1.4 sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #bbb;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eee}
td.held{background:#d7f5d7} td.failed,td.mismatch{background:#f8c8c8;font-weight:bold}
td.unsupported{background:#eee;color:#555} td.not-run,td.environment{background:#fff3c4}
tr.diverge td{background:#f8c8c8;font-weight:bold}
code{font-size:13px}
.steps{display:flex;flex-wrap:wrap;gap:6px;margin:.3em 0 1em}
.steps svg{border:1px solid #ccc;background:#fff}
.steps svg.diverge{border:2px solid #c00}
td.proved{background:#d7f5d7} td.bounded{background:#fff3c4}
td.vacuous{background:#f8c8c8;font-weight:bold}
td.failed.killed{background:#d7f5d7;font-weight:normal}
pre{background:#f6f6f6;padding:.5em;border:1px solid #ddd;overflow-x:auto}
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
    for rec in records:
        for key, v in sorted(rec["fields"].items()):
            if prev.get(key, object()) != v:
                rows.append((rec["line"], key))
        prev = rec["fields"]
    return rows


def statement_table(results: list[dict]) -> str:
    """Model's allowed values (model columns; a kernel's model_observations) beside what
    each kernel showed, at every statement where a value changed."""
    ran = [r for r in results if r["status"] == "ok" and states(r)]
    if not ran:
        return "<p>no observations: it ran on no target.</p>"
    by_line = {}
    for r in ran:
        for rec in states(r):
            by_line.setdefault((r["target"], rec["line"]), rec["fields"])
        for rec in states(r, "model_observations"):
            by_line.setdefault((r["target"] + " model", rec["line"]), rec["fields"])
    cols = []
    for r in ran:
        if states(r, "model_observations"):
            cols += [(r["target"] + " model", "allowed"), (r["target"], "showed")]
        else:
            cols.append((r["target"], "allowed"))
    rows = sorted(set(_changed(states(ran[0], "model_observations") or states(ran[0])))
                  | {x for r in ran for x in _changed(states(r))})
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


def frame_graphs(results: list[dict]) -> str:
    """The frame graph after every statement, per target that ran; targets whose graphs
    are the same share one row of drawings (the first shown, the others folded)."""
    groups: list[tuple[list[str], list, set]] = []
    for r in results:
        if r["status"] != "ok":
            continue
        steps = frame_steps(r)
        if not steps:
            continue
        diverge = {r["mismatch"]["first"]["line"]} if r.get("mismatch") else set()
        for targets, seen, lines in groups:
            if seen == steps:
                targets.append(r["target"])
                lines |= diverge
                break
        else:
            groups.append(([r["target"]], steps, set(diverge)))
    out = []
    for i, (targets, steps, lines) in enumerate(groups):
        svgs = [frame_svg(st, f"after line {st.line}", diverge=st.line in lines)
                for st in steps]
        body = (f'<div class="steps" data-targets="{_e(" ".join(targets))}">'
                + "".join(svgs) + "</div>")
        head = f"frames after each statement on {_e(', '.join(targets))}"
        if i == 0:
            out.append(f"<p>{head}:</p>{body}")
        else:     # folded, unless it holds a first divergence
            out.append(f"<details{' open' if lines else ''}><summary>{head}</summary>"
                       f"{body}</details>")
    return "\n".join(out)


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


def proof_table(rec: dict, anchor: str) -> str:
    """Property (or mutant) x era, each cell the prover's status and method; for mutants
    a failed property is the mutant killed."""
    eras = prove_record.eras(rec)
    rows: dict[str, dict[str, dict]] = {}
    for r in rec["results"]:
        what = f"mutant {r['mutant']}" if r["mutant"] else f"{r['model']} {r['property']}"
        rows.setdefault(what, {})[r["era"]] = r
    out = ['<table class="proofs"><tr><th>property</th>'
           + "".join(f"<th>{_e(e)}</th>" for e in eras) + "</tr>"]
    for what, by_era in rows.items():
        tds = []
        for e in eras:
            r = by_era.get(e)
            if r is None:
                tds.append('<td class="not-run">-</td>')
                continue
            st = prove_record.status(r)
            text = st.value
            cls = st.value
            if r["mutant"]:
                killed = st is prove_record.ProofStatus.FAILED
                text = f"killed by {r['property']}" if killed else "SURVIVED"
                cls = "failed killed" if killed else "vacuous"
            elif st is not prove_record.ProofStatus.FAILED:
                text += f" ({r['method']}, {r['bound']})"
            ref = (f'<a href="#{anchor}-{rec["results"].index(r)}">'
                   if r["trace"] is not None else "")
            tds.append(f'<td class="{cls}" data-proof="{st.value}" title="{_e(r["note"])}">'
                       f"{ref}{_e(text)}{'</a>' if ref else ''}</td>")
        out.append(f"<tr><td><code>{_e(what)}</code></td>{''.join(tds)}</tr>")
    out.append("</table>")
    return "\n".join(out)


def counterexample(r: dict, anchor: str) -> str:
    """One counterexample, step by step: the action or thread step, its choices and the
    state cells it changed; a user-level one also as the scenario ``prove`` wrote."""
    t = r["trace"]
    who = f"mutant {r['mutant']}: " if r["mutant"] else ""
    out = [f'<h3 id="{anchor}" class="cex">{_e(who)}{_e(r["property"])} fails on '
           f"{_e(r['era'])} ({_e(r['model'])} model, {t['depth']} steps)</h3>"]
    if r["counterexample"]:
        out.append(f"<p>written to <code>{_e(r['counterexample'])}</code></p>")
    out.append("<p>initial state: <code>" + _e(", ".join(f"{k}={v}" for k, v in
                                                        t["initial"].items())) + "</code></p>")
    steps = t["steps"]
    # A race model's steps are THREAD.LABEL: one column per thread shows the interleaving.
    threads = list(dict.fromkeys(st["step"].split(".", 1)[0] for st in steps))
    by_thread = all("." in st["step"] and "(" not in st["step"] for st in steps)
    cols = threads if by_thread else ["step"]
    has_choices = any(st["choices"] for st in steps)
    has_prints = any(st["prints"] for st in steps)
    out.append('<table class="cex-steps"><tr><th>#</th>'
               + "".join(f"<th>{_e(c)}</th>" for c in cols)
               + ("<th>choices</th>" if has_choices else "") + "<th>changes</th>"
               + ("<th>scenario line</th>" if has_prints else "") + "</tr>")
    for i, st in enumerate(steps, 1):
        if by_thread:
            th, label = st["step"].split(".", 1)
            cells = "".join(f"<td><code>{_e(label)}</code></td>" if c == th else "<td></td>"
                            for c in cols)
        else:
            cells = f"<td><code>{_e(st['step'])}</code></td>"
        ch = ", ".join(f"{k}={v}" for k, v in st["choices"].items())
        changed = ", ".join(f"{k}={v}" for k, v in st["changed"].items())
        out.append(f'<tr data-cex-step="{i}"><td>{i}</td>{cells}'
                   + (f"<td>{_e(ch)}</td>" if has_choices else "")
                   + f"<td><code>{_e(changed)}</code></td>"
                   + (f"<td><code>{_e(st['prints'] or '')}</code></td>" if has_prints else "")
                   + "</tr>")
    out.append("</table>")
    text = r["counterexample_text"]
    if text and r["counterexample"] and r["counterexample"].endswith(".scenario"):
        out.append("<p>as a scenario (replay it with <code>ksmdiff run</code>):</p>"
                   f"<pre>{_e(text)}</pre>")
    return "\n".join(out)


def proofs_section(n: int, path: str, rec: dict) -> list[str]:
    what = "mutants" if rec["mutants"] else "properties"
    parts = [f'<h2 class="prove">Proofs: {what}, {_e(rec["started"])}</h2>',
             f"<p><code>{_e(path)}</code>: ksmdiff prove {_e(' '.join(rec.get('argv', [])[1:]))}"
             f", {rec['seconds']:.1f} s</p>", proof_table(rec, f"cex{n}")]
    parts += [counterexample(r, f"cex{n}-{rec['results'].index(r)}")
              for r in prove_record.counterexamples(rec)]
    return parts


def bench_section(path: str, rec: dict) -> list[str]:
    h = rec["host"]
    parts = [f'<h2 class="bench">Benchmark {_e(rec["bench"])}, {_e(rec["started"])}</h2>',
             f"<p><code>{_e(path)}</code>: {h.get('cpus')} CPUs, {_e(h.get('release', ''))}; "
             f"load average {_e(h.get('load_start'))} at the start, "
             f"{_e(h.get('load_end'))} at the end</p>"]
    groups: dict[str, list[dict]] = {}
    for srs in rec["series"]:
        groups.setdefault(srs["group"], []).append(srs)
    for group, rows in groups.items():
        units = {r["unit"] for r in rows}
        better = {r["better"] for r in rows}
        unit = units.pop() if len(units) == 1 else "mixed units"
        parts.append(spread_plot(group, unit, Better(better.pop()) if len(better) == 1
                                 else Better.LOWER, rows))
    return parts


def run_summary(record: dict) -> list[str]:
    groups = by_target(record)
    counts = {o: 0 for o in Outcome}
    for r in record["results"]:
        counts[outcome(r)] += 1
    parts = [f"<h1>ksmdiff run, {_e(record['started'])}</h1>",
             f"<p>ksmdiff {_e(record['tool_version'])} on {_e(record['host']['uname'])} "
             f"{_e(record['host']['machine'])}; {len(record['scenarios'])} scenarios on "
             f"{len(groups)} targets: "
             + ", ".join(f"{n} {o.value}" for o, n in counts.items() if n) + "</p>"]
    parts += [f"<p>{_e(n)}</p>" for n in record["notes"]]
    parts += ["<h2>Grid</h2>", grid(record)]
    cov = record.get("coverage")
    if cov:
        parts += ["<h2>Label coverage by kernel</h2>", coverage_table(cov)]
    return parts


def scenario_sections(record: dict) -> list[str]:
    """Per scenario: what went wrong where, the frame graph after every statement, the
    statement table."""
    groups = by_target(record)
    parts = []
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
        parts.append(frame_graphs(results))
        parts.append(statement_table(results))
    return parts


def to_html(record: dict | None, proofs=(), benches=()) -> str:
    """The page: a run record (or None), then ``(path, result)`` of prove and benchmark
    results."""
    title = f"ksmdiff run {record['started']}" if record else "ksmdiff results"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"]
    # The overviews first (grid, coverage, proofs, plots), then each scenario's details.
    if record is not None:
        parts += run_summary(record)
    else:
        parts.append("<h1>ksmdiff results</h1>")
    for n, (path, rec) in enumerate(proofs):
        parts += proofs_section(n, path, rec)
    for path, rec in benches:
        parts += bench_section(path, rec)
    if record is not None:
        parts += scenario_sections(record)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
