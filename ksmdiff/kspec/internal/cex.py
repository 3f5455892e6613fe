"""Counterexamples: a user-level trace becomes a ``.scenario``; a race-model
trace becomes an interleaving listing."""

from __future__ import annotations

import re

import z3

from ksmdiff.kspec.internal.compile import IV, key_name


def _show(model, domain, code) -> str:
    return model.domains[domain].show(code)


def format_prints(model, inst) -> str:
    vals = {name: (dom, code) for name, dom, code in inst.args}

    def sub(mo):
        name, spec = mo.group(1), mo.group(2)
        dom, code = vals[name]
        if spec == "hex":
            return f"0x{code:02x}"
        return _show(model, dom, code)
    return re.sub(r"\{(\w+)(?::(\w+))?\}", sub, inst.prints)


def is_user_trace(trace) -> bool:
    return all(s.instance.kind == "action" and s.instance.prints for s in trace.steps)


def _eval_obs(ts, expr, state) -> object:
    pairs = []
    for k in ts.keys:
        v = state[k]
        if ts.sort[k] == "bool":
            pairs.append((ts.cur[k], z3.BoolVal(bool(v))))
        else:
            pairs.append((ts.cur[k], IV(int(v))))
    r = z3.simplify(z3.substitute(expr, *pairs))
    if z3.is_true(r):
        return True
    if z3.is_false(r):
        return False
    return r.as_signed_long()


def _content(fill: int, write: int) -> str:
    base = "zero" if fill == 0 else f"0x{fill:02x}"
    return base if write == 0 else f"{base}+0x{write:02x}"


def to_scenario(ts, trace, title=None) -> str:
    m = ts.model
    era = trace.era.value
    what = f"counterexample to {trace.prop} on {era}"
    if trace.mutant:
        what += f" with mutant {trace.mutant}"
    lines = [f'scenario "{title or what}"', "tags kspec, counterexample"]
    lines += list(m.prelude)
    for st in trace.steps:
        lines.append(format_prints(m, st.instance))
    # what every live page must hold (the isolation property, as expectations)
    final = trace.steps[-1].state if trace.steps else trace.initial
    if {"live", "view_fill", "view_write"} <= set(m.observes):
        live = dict(ts.observable("live"))
        vf = dict(ts.observable("view_fill"))
        vw = dict(ts.observable("view_write"))
        for key, e in live.items():
            if _eval_obs(ts, e, final) is True:
                args = key[key.index("(") + 1:-1].split(", ")
                fill = _eval_obs(ts, vf[key.replace("live", "view_fill", 1)], final)
                write = _eval_obs(ts, vw[key.replace("live", "view_write", 1)], final)
                lines.append(f"expect {args[0]} buf[{args[1]}] content {_content(fill, write)}")
    return "\n".join(lines) + "\n"


def to_listing(ts, trace) -> str:
    """An interleaving: one line per atomic step, with the state cells it changed."""
    out = [f"# counterexample to {trace.prop} on {trace.era.value}"
           + (f" with mutant {trace.mutant}" if trace.mutant else ""),
           "# initial state: " + ", ".join(f"{key_name(k)}={_fmt(v)}"
                                           for k, v in trace.initial.items()
                                           if not k[0].startswith("pc."))]
    prev = trace.initial
    for i, st in enumerate(trace.steps, 1):
        changed = [f"{key_name(k)}={_fmt(v)}" for k, v in st.state.items()
                   if prev.get(k) != v and not k[0].startswith("pc.")]
        name = st.instance.name
        if st.instance.args:
            name += "(" + ", ".join(_show(ts.model, d, c) for _, d, c in st.instance.args) + ")"
        ch = "".join(f" [{k}={v}]" for k, v in st.choices.items())
        out.append(f"{i:3d}. {name}{ch}" + (f"   -> {', '.join(changed)}" if changed else ""))
        prev = st.state
    if trace.final.get("differences"):
        out.append("# observables that differ from " + trace.final.get("other_era", "") + ":")
        out += [f"#   {d}" for d in trace.final["differences"]]
    return "\n".join(out) + "\n"


def _fmt(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)
