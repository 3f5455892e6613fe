"""Inline SVG for the HTML report, written directly (no plotting library, no script): the
frame graph of one state (:class:`ksmdiff.reports.frames.FrameState`) and the spread of
benchmark series.  Pure functions of their data; every element that a test or a reader
looks for carries a ``data-`` attribute."""

from __future__ import annotations

import html
import math

from ksmdiff.reports.bench_record import Better, summary
from ksmdiff.reports.frames import UNKNOWN, FrameState

KSM_FILL = "#f9b233"
NODE_FILL = "#8fc1e8"
FAULT_FILL = {"copied": "#f8c8c8", "reused": "#ffd27f", "fresh": "#d7f5d7",
              "retry": "#e0d0f0"}


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v) -> str:
    return "?" if v is UNKNOWN else str(v)


# ----------------------------------------------------------------------------- frames

def frame_svg(s: FrameState, title: str, diverge: bool = False) -> str:
    """One state: processes -> ptes -> frames -> stable nodes.  A pte's fill is this
    statement's fault outcome on it; KSM frames are orange, stable nodes blue diamonds;
    ``diverge``: the state of a first divergence (framed red by the page's style)."""
    row, top = 24, 34
    x_proc, x_pte, x_frame, x_node = 4, 64, 196, 306
    frame_w = 96                    # a frame's label is a page's name: "A/buf[0] KSM"
    nodes = s.stable_nodes if isinstance(s.stable_nodes, int) else 0
    n_rows = max(len(s.processes), len(s.ptes), len(s.frames), nodes, 1)
    height = top + row * n_rows + (18 if s.ksm or nodes else 4)
    y_proc = {p: top + i * row for i, p in enumerate(s.processes)}
    y_frame = {f: top + i * row for i, f in enumerate(s.frames)}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="376" height="{height}" '
           f'class="frames{" diverge" if diverge else ""}" data-step="{s.line}" role="img" '
           'font-size="11">'
           f"<title>{_e(title)}</title>",
           f'<text x="4" y="13" font-weight="bold">{_e(title)}</text>',
           '<text x="4" y="27" fill="#555">process</text><text x="64" y="27" fill="#555">'
           'pte</text><text x="196" y="27" fill="#555">frame</text>'
           '<text x="306" y="27" fill="#555">stable node</text>']
    for i, pte in enumerate(s.ptes):
        y = top + i * row
        out.append(f'<line x1="{x_proc + 50}" y1="{y_proc[pte.process] + 9}" x2="{x_pte}" '
                   f'y2="{y + 9}" stroke="#999"/>')
        if pte.frame in y_frame:
            out.append(f'<line x1="{x_pte + 110}" y1="{y + 9}" x2="{x_frame}" '
                       f'y2="{y_frame[pte.frame] + 9}" stroke="#333" stroke-width="1.5"/>')
        label = pte.label
        if pte.mapcount not in (None, UNKNOWN):
            label += f" map {pte.mapcount}"
        if pte.frame is None:
            label += " swap" if pte.swapped is True else " none"
        elif pte.frame is UNKNOWN:
            label += " ?"
        fill = FAULT_FILL.get(pte.fault, "#f4f4ff")
        fault = f' data-fault="{_e(pte.fault)}"' if pte.fault else ""
        out.append(f'<rect x="{x_pte}" y="{y}" width="110" height="18" fill="{fill}" '
                   f'stroke="#669"{fault}/><text x="{x_pte + 3}" y="{y + 13}">{_e(label)}'
                   + (f" {_e(pte.fault)}" if pte.fault and pte.fault != "fresh" else "")
                   + "</text>")
    for p, y in y_proc.items():
        out.append(f'<rect x="{x_proc}" y="{y}" width="50" height="18" fill="#eef" '
                   f'stroke="#446"/><text x="{x_proc + 3}" y="{y + 13}">{_e(p)}</text>')
    for fr, y in y_frame.items():
        ksm = fr in s.ksm
        fill = KSM_FILL if ksm else "#ddd" if fr == "Z" else "#fff"
        out.append(f'<rect x="{x_frame}" y="{y}" width="{frame_w}" height="18" fill="{fill}" '
                   f'stroke="#000" data-ksm="{str(ksm).lower()}"/>'
                   f'<text x="{x_frame + 3}" y="{y + 13}">{_e(fr)}{" KSM" if ksm else ""}'
                   "</text>")
    linked = s.nodes_per_frame
    ksm_frames = [f for f in s.frames if f in s.ksm]
    for i in range(nodes):
        if linked:
            y = y_frame[ksm_frames[i]]
            out.append(f'<line x1="{x_frame + frame_w}" y1="{y + 9}" x2="{x_node}" y2="{y + 9}" '
                       'stroke="#36c" stroke-dasharray="3,2"/>')
        else:
            y = top + i * row
        cx, cy = x_node + 10, y + 9
        out.append(f'<polygon points="{cx},{cy - 9} {cx + 10},{cy} {cx},{cy + 9} '
                   f'{cx - 10},{cy}" fill="{NODE_FILL}" stroke="#036" '
                   f'data-stable-node="{"linked" if linked else "unlinked"}"/>')
    foot = top + row * n_rows + 12
    if s.stable_nodes is UNKNOWN:
        out.append(f'<text x="4" y="{foot}" fill="#555">stable nodes: not one value</text>')
    elif s.ksm and nodes == 0:
        out.append(f'<text x="4" y="{foot}" fill="#a00" data-no-stable-node="true">'
                   "KSM, but no stable node (pages_shared +0)</text>")
    elif s.ksm and not linked:
        out.append(f'<text x="4" y="{foot}" fill="#555">{nodes} node(s), {len(s.ksm)} KSM '
                   "frame(s): which is whose is not recorded</text>")
    out.append("</svg>")
    return "".join(out)


# ----------------------------------------------------------------------------- plots

def _ticks(hi: float) -> list[float]:
    """About four round ticks from 0 to at least ``hi``."""
    if hi <= 0:
        return [0.0, 1.0]
    raw = hi / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(0, int(math.ceil(hi / step)) + 1)]


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def spread_plot(title: str, unit: str, better: Better, rows: list[dict]) -> str:
    """Series on one axis: per series its samples (dots), the range (whisker), the
    quartiles (box) and the median (thick tick, its value printed at the right)."""
    label_w, plot_w, row_h, top = 230, 380, 26, 30
    sums = [(r, summary(r["samples"])) for r in rows]
    hi = max((sm.hi for _, sm in sums if sm), default=1.0)
    ticks = _ticks(hi)
    scale = plot_w / ticks[-1]
    height = top + row_h * len(rows) + 28
    width = label_w + plot_w + 80

    def X(v):
        return label_w + v * scale

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'class="plot" role="img" font-size="11"><title>{_e(title)}</title>',
           f'<text x="4" y="14" font-weight="bold">{_e(title)}</text>'
           f'<text x="{label_w}" y="14" fill="#555">{_e(unit)}, {better.value} is better; '
           "box: quartiles, whisker: range, dots: runs</text>"]
    axis_y = top + row_h * len(rows) + 4
    for t in ticks:
        out.append(f'<line x1="{X(t):.1f}" y1="{top - 4}" x2="{X(t):.1f}" y2="{axis_y}" '
                   f'stroke="#eee"/><text x="{X(t):.1f}" y="{axis_y + 14}" '
                   f'text-anchor="middle" fill="#555">{_num(t)}</text>')
    for i, (r, sm) in enumerate(sums):
        y = top + i * row_h + row_h / 2
        out.append(f'<text x="4" y="{y + 4}">{_e(r["name"])}</text>')
        if sm is None:
            out.append(f'<text x="{label_w}" y="{y + 4}" fill="#a00">not measured</text>')
            continue
        out.append(f'<line x1="{X(sm.lo):.1f}" y1="{y}" x2="{X(sm.hi):.1f}" y2="{y}" '
                   'stroke="#444"/>'
                   f'<rect x="{X(sm.q1):.1f}" y="{y - 7}" width="{max(X(sm.q3) - X(sm.q1), 1):.1f}" '
                   'height="14" fill="#cfe0f5" stroke="#369"/>'
                   f'<line x1="{X(sm.median):.1f}" y1="{y - 9}" x2="{X(sm.median):.1f}" '
                   f'y2="{y + 9}" stroke="#036" stroke-width="3" data-median="{sm.median}"/>')
        for v in r["samples"]:
            if v is not None:
                out.append(f'<circle cx="{X(v):.1f}" cy="{y}" r="2.5" fill="#c00" '
                           'fill-opacity=".7"/>')
        out.append(f'<text x="{label_w + plot_w + 8}" y="{y + 4}">{_num(sm.median)} '
                   f'(n={sm.n})</text>')
    out.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" '
               'stroke="#444"/></svg>')
    return "".join(out)
