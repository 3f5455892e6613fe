"""The invariants the prover also states, checked on the model state after every step.

* ``isolation``: every pte's page holds what that process logically wrote or inherited
  (the logical content is tracked per (process, page) independently of frames);
* ``refcount``: refcount >= mapcount + pins + swapcache, none negative, and mapcount equals
  the number of ptes mapping the page;
* ``ksm-writable``: a KSM page is never mapped writable;
* ``writable-exclusive``: a writable pte's page is mapped by no other pte.
"""

from __future__ import annotations

from dataclasses import dataclass

from ksmdiff.model.machine import Machine


@dataclass(frozen=True)
class Violation:
    stmt: int
    line: int
    prop: str
    detail: str


def check(m: Machine, stmt: int, line: int) -> list[Violation]:
    out: list[Violation] = []

    def v(prop: str, detail: str) -> None:
        out.append(Violation(stmt, line, prop, detail))

    mapped_by: dict[int, list[str]] = {}
    frames = {}
    for p in m.live_procs():
        for r, s in p.slots():
            where = f"{p.name}/{r.name}[{s.index}]"
            pte = s.pte
            f = pte.frame if pte.present else pte.swap
            if f is not None and f.content != s.logical:
                v("isolation", f"{where} holds {f.content} but {p.name} wrote {s.logical}")
            if f is not None and f.freed:
                v("refcount", f"{where} maps a freed page {f!r}")
            if pte.present and not f.zero:
                mapped_by.setdefault(id(f), []).append(where)
                frames[id(f)] = f
                if pte.writable and f.ksm:
                    v("ksm-writable", f"{where} maps KSM page {f!r} writable")
            elif pte.present and pte.writable:
                v("ksm-writable", f"{where} maps the zero page writable")
    for p in m.live_procs():
        for r, s in p.slots():
            pte = s.pte
            if pte.present and pte.writable and not pte.frame.zero:
                others = [w for w in mapped_by[id(pte.frame)]
                          if w != f"{p.name}/{r.name}[{s.index}]"]
                if others:
                    v("writable-exclusive",
                      f"{p.name}/{r.name}[{s.index}] is writable but {pte.frame!r} is also "
                      f"mapped by {', '.join(others)}")
    pin_counts = m.pin_counts()
    for f in m.frames:
        if f.freed:
            continue
        pins = pin_counts.get(id(f), 0)
        nptes = len(mapped_by.get(id(f), []))
        if f.refcount < 0 or f.mapcount < 0 or f.swap_refs < 0:
            v("refcount", f"negative count on {f!r}")
        if f.refcount < f.mapcount + pins + int(f.swapcache):
            v("refcount", f"{f!r}: refcount < mapcount {f.mapcount} + pins {pins} + "
                          f"swapcache {int(f.swapcache)}")
        if f.mapcount != nptes:
            v("refcount", f"{f!r}: mapcount {f.mapcount} but {nptes} ptes map it")
    return out
