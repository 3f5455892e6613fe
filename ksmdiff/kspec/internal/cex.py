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
    return bool(trace.steps) and all(s.instance.kind == "action" and s.instance.prints
                                     for s in trace.steps)


def _eval_obs(ts, expr, state) -> object:
    pairs = []
    for k in ts.keys:
        v = state[k]
        if ts.sort[k] == "bool":
            pairs.append((ts.cur[k], z3.BoolVal(bool(v))))
        else:
            pairs.append((ts.cur[k], IV(int(v), ts.width)))
    r = z3.simplify(z3.substitute(expr, *pairs))
    if z3.is_true(r):
        return True
    if z3.is_false(r):
        return False
    return r.as_signed_long()


def to_scenario(ts, trace, smap, title=None) -> str:
    """The trace as a scenario (``smap``: prove.toml's [model.NAME.scenario]): the model's
    prelude and every step's ``prints`` line, parsed into scenario statements, then an
    ``expect P REGION[v] content ...`` for every page the ``live`` observable says exists,
    holding what the content observables say it must; printed by the scenario printer."""
    from dataclasses import replace

    from ksmdiff.scenario import ast as S
    from ksmdiff.scenario.parser import parse_raw
    from ksmdiff.scenario.printer import print_scenario

    m = ts.model
    what = f"counterexample to {trace.prop} on {trace.era.value}"
    if trace.mutant:
        what += f" with mutant {trace.mutant}"
    lines = [f'scenario "x"'] + list(m.prelude)
    lines += [format_prints(m, st.instance) for st in trace.steps]
    scn = parse_raw("\n".join(lines) + "\n", "<counterexample>")
    final = trace.steps[-1].state if trace.steps else trace.initial
    live = ts.observable(smap.live)
    fill = dict(ts.observable(smap.content[0]))
    write = dict(ts.observable(smap.content[1]))
    expects = []
    for key, e in live:
        if _eval_obs(ts, e, final) is not True:
            continue
        args = key[key.index("(") + 1:-1].split(", ")
        fb = _eval_obs(ts, fill[key.replace(smap.live, smap.content[0], 1)], final)
        wb = _eval_obs(ts, write[key.replace(smap.live, smap.content[1], 1)], final)
        page = int(args[1])
        expects.append(S.ExpectPage(args[0], S.Target(smap.region, page, page), False,
                                    S.HasContent(S.Content(fb or None, wb or None))))
    scn = replace(scn, title=title or what, tags=("kspec", "counterexample"),
                  statements=tuple(scn.statements) + tuple(expects))
    return print_scenario(scn)


def to_steps(ts, trace) -> list[dict]:
    """The trace as data, one entry per atomic step: the action or THREAD.LABEL with its
    arguments, the nondeterministic choices, the state cells it changed (program counters
    left out) and, for a user-level action, the scenario line it prints."""
    out = []
    prev = trace.initial
    for st in trace.steps:
        name = st.instance.name
        if st.instance.args:
            name += "(" + ", ".join(_show(ts.model, d, c) for _, d, c in st.instance.args) + ")"
        out.append({"step": name,
                    "choices": {k: _fmt(v) for k, v in st.choices.items()},
                    "changed": {key_name(k): _fmt(v) for k, v in st.state.items()
                                if prev.get(k) != v and not k[0].startswith("pc.")},
                    "prints": format_prints(ts.model, st.instance)
                    if st.instance.prints else None})
        prev = st.state
    return out


def initial_cells(trace) -> dict:
    """The trace's initial state, program counters left out."""
    return {key_name(k): _fmt(v) for k, v in trace.initial.items() if not k[0].startswith("pc.")}


def to_listing(ts, trace) -> str:
    """An interleaving: one line per atomic step, with the state cells it changed."""
    out = [f"# counterexample to {trace.prop} on {trace.era.value}"
           + (f" with mutant {trace.mutant}" if trace.mutant else ""),
           "# initial state: " + ", ".join(f"{k}={v}" for k, v in initial_cells(trace).items())]
    for i, st in enumerate(to_steps(ts, trace), 1):
        ch = "".join(f" [{k}={v}]" for k, v in st["choices"].items())
        changed = ", ".join(f"{k}={v}" for k, v in st["changed"].items())
        out.append(f"{i:3d}. {st['step']}{ch}" + (f"   -> {changed}" if changed else ""))
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
