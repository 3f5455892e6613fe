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


def _where(p, r, s) -> str:
    return f"{p.name}/{r.name}[{s.index}]"


def _check_page(v, p, r, s):
    """The invariants of one mapped page on its own: isolation, no freed page, no writable
    zero page or KSM page.  Returns the frame its present pte maps (None: not present, or
    the zero page), for the checks across the pages sharing a frame."""
    pte = s.pte
    present = pte.present
    f = pte.frame if present else pte.swap
    if f is None:
        return None
    if f.content is not s.logical and f.content != s.logical:   # (copies share one Content)
        v("isolation", f"{_where(p, r, s)} holds {f.content} but {p.name} wrote {s.logical}")
    if f.freed:
        v("refcount", f"{_where(p, r, s)} maps a freed page {f!r}")
    if not present:
        return None
    if f.zero:
        if pte.writable:
            v("ksm-writable", f"{_where(p, r, s)} maps the zero page writable")
        return None
    if pte.writable and f.ksm:
        v("ksm-writable", f"{_where(p, r, s)} maps KSM page {f!r} writable")
    return f


def _check_frame(v, f, pins: int, nptes: int) -> None:
    """The counts of one live frame against the ptes and pins that hold it."""
    if f.refcount < 0 or f.mapcount < 0 or f.swap_refs < 0:
        v("refcount", f"negative count on {f!r}")
    if f.refcount < f.mapcount + pins + int(f.swapcache):
        v("refcount", f"{f!r}: refcount < mapcount {f.mapcount} + pins {pins} + "
                      f"swapcache {int(f.swapcache)}")
    if f.mapcount != nptes:
        v("refcount", f"{f!r}: mapcount {f.mapcount} but {nptes} ptes map it")


def check(m: Machine, stmt: int, line: int, *, pages=None, frames=None,
          sharers=None) -> list[Violation]:
    """Every invariant over every page and live frame; or, after a statement that changed
    only some pages (model/run.py LOCAL_STATEMENTS), over ``pages`` ((process, region,
    slot): the statement's pages and every page mapping a frame they mapped before or
    after it) and ``frames`` (those frames), with ``sharers``: (the pages that map a frame,
    their names).  What the statement did not touch was checked when it last changed
    (a statement of any other kind checks everything)."""
    if pages is not None:
        return _check_pages(m, stmt, line, pages, frames, sharers)
    out: list[Violation] = []

    def v(prop: str, detail: str) -> None:
        out.append(Violation(stmt, line, prop, detail))

    # frame -> the number of ptes mapping it (the zero page aside); frames hash by identity
    nptes: dict = {}
    writable = []                              # the pages of writable ptes
    # a page that passes every check of _check_page (present, neither freed nor the zero
    # page, no writable KSM page, the content it should hold) is only counted here; one
    # content pair found equal is remembered (the sharers of a KSM page hold their own
    # writers' equal contents, page after page).  Read-only pages in a row mapping one
    # frame with one logical content (a KSM page's sharers) are counted as a run: the
    # first one's checks hold for the others
    same_c = same_l = None
    run_f = run_l = None
    run_n = 0
    for p in m.live_procs():
        for r in p.regions.values():
            for s in r.pages:
                if not s.mapped:
                    continue
                pte = s.pte
                f = pte.frame
                if f is run_f and pte.present and not pte.writable and s.logical is run_l:
                    run_n += 1
                    continue
                if pte.present and f is not None and not f.freed and not f.zero \
                        and not (pte.writable and f.ksm):
                    c, lg = f.content, s.logical
                    if c is lg or (c is same_c and lg is same_l) or c == lg:
                        if c is not lg:
                            same_c, same_l = c, lg
                        if not pte.writable:
                            if run_f is not None:
                                nptes[run_f] = nptes.get(run_f, 0) + run_n
                            run_f, run_l, run_n = f, lg, 1
                            continue
                    else:
                        f = _check_page(v, p, r, s)
                elif not pte.present and pte.swap is None:
                    continue                   # (no page: nothing to check)
                else:
                    f = _check_page(v, p, r, s)
                    if f is None:
                        continue
                if f in nptes:                 # (faster than get-and-set for new keys)
                    nptes[f] += 1
                else:
                    nptes[f] = 1
                if pte.writable:
                    writable.append(s)
    if run_f is not None:
        nptes[run_f] = nptes.get(run_f, 0) + run_n
    for s in writable:
        f = s.pte.frame
        if nptes[f] > 1:
            mapping = _mapping(m, f)
            (me,) = [x for x in mapping if x[2] is s]
            others = [_where(*x) for x in mapping if x[2] is not s]
            v("writable-exclusive",
              f"{_where(*me)} is writable but {f!r} is also "
              f"mapped by {', '.join(others)}")
    pin_counts = m.pin_counts()
    for f in m.live_frames():
        n = nptes.get(f, 0)
        pins = pin_counts.get(id(f), 0) if pin_counts else 0
        # (_check_frame's tests, for a frame that passes them all: n >= 0, so neither
        # count can be negative)
        if f.mapcount == n and f.refcount >= n + pins + f.swapcache and f.swap_refs >= 0:
            continue
        _check_frame(v, f, pins, n)
    return out


def _mapping(m: Machine, f) -> list:
    """The (process, region, slot) of every mapped page whose pte maps ``f``, in page
    order."""
    return [(p, r, s) for p in m.live_procs() for r in p.regions.values() for s in r.pages
            if s.mapped and s.pte.present and s.pte.frame is f]


def _check_pages(m: Machine, stmt: int, line: int, pages, frames, sharers) -> list[Violation]:
    sharers, sharer_names = sharers
    out: list[Violation] = []

    def v(prop: str, detail: str) -> None:
        out.append(Violation(stmt, line, prop, detail))

    for p, r, s in pages:
        if not (s.mapped and p.alive):
            continue
        f = _check_page(v, p, r, s)
        if f is not None and s.pte.writable and len(sharers(f)) > 1:
            me = _where(p, r, s)
            v("writable-exclusive",
              f"{me} is writable but {f!r} is also mapped by "
              f"{', '.join(x for x in sharer_names(f) if x != me)}")
    pin_counts = m.pin_counts()
    done: set = set()
    for f in frames:
        if f.zero or f.freed or id(f) in done:
            continue
        done.add(id(f))
        _check_frame(v, f, pin_counts.get(id(f), 0) if pin_counts else 0, len(sharers(f)))
    return out
