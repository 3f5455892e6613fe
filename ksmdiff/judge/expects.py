"""Evaluating ``expect`` statements against an observation stream
(docs/scenario-language.md, "How an expectation is judged").

On a kernel stream every field holds one value and an expect holds when that value
satisfies it.  On a model stream an expect holds only when *every* allowed value satisfies
it: the model guarantees it.  ``on VERSIONS`` that exclude the version under test, and
counters the version does not have, make an expect *skipped*, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ksmdiff.observe import (ABSENT, ANY, PRCTL_MERGE, FieldsView, IndexLabel, Record,
                             counter_key,
                             page_key, proc_abs_counter_key, proc_counter_key)
from ksmdiff.scenario import ast as A
from ksmdiff.scenario.layout import Layout, layout_at
from ksmdiff.scenario.printer import format_statement
from ksmdiff.status import ExpectStatus
from ksmdiff.versions import KernelVersion, has_counter, has_proc_counter


HELD = ExpectStatus.HELD
FAILED = ExpectStatus.FAILED
SKIPPED = ExpectStatus.SKIPPED


@dataclass(frozen=True)
class ExpectResult:
    stmt: int
    line: int
    text: str                # the expect as printed
    status: ExpectStatus
    reason: str = ""         # why it failed or was skipped; what was observed

    def to_json(self) -> dict:
        return {"stmt": self.stmt, "line": self.line, "expect": self.text,
                "status": self.status, "reason": self.reason}


def _fmt(values: Any) -> str:
    if values is ANY:
        return "any value"
    if values is None:
        return "nothing"
    vals = sorted(values, key=lambda v: (type(v).__name__, str(v)))
    return "{" + ", ".join("none" if v is None else str(v).lower() if isinstance(v, bool)
                           else str(v) for v in vals) + "}"


def _all(values: Any, pred) -> bool:
    """Every allowed value satisfies ``pred`` (ANY never guarantees anything)."""
    if values is ANY or values is None:
        return False
    return bool(values) and all(pred(v) for v in values)


def _none(values: Any, pred) -> bool:
    if values is ANY or values is None:
        return False
    return bool(values) and not any(pred(v) for v in values)


class _PageView:
    """The fields of one page in one record.  ``cols``: a dict the views of one region's
    pages in one record share, field name -> the column's runs (taken once for them)."""

    def __init__(self, rec: Record | None, proc: str, region: str, index: int,
                 cols: dict | None = None):
        self.rec, self.proc, self.region, self.index = rec, proc, region, index
        self._cols = {} if cols is None else cols

    def field(self, name: str) -> Any:
        if self.rec is None:
            return None
        fields = self.rec.fields
        if isinstance(fields, FieldsView):
            # (the column's runs, without making and parsing a key: an expect over a
            # region reads every page of it)
            runs = self._cols.get(name)
            if runs is None:
                runs = self._cols[name] = fields.runs((f"{self.proc}/{self.region}", name))
            v = runs.at(self.index)
            return None if v is ABSENT else v
        return self.rec.get(page_key(self.proc, self.region, self.index, name))

    @property
    def mapped(self) -> bool:
        return self.field("present") is not None

    def name(self) -> str:
        return f"{self.proc} {self.region}[{self.index}]"


def _check_page(pred: A.Predicate, page: _PageView, other: _PageView | None,
                negated: bool) -> tuple[bool, str]:
    """(holds, what was observed) for one page; ``negated`` flips the predicate."""

    def sat(values, test, observed_field: str) -> tuple[bool, str]:
        ok = _none(values, test) if negated else _all(values, test)
        return ok, f"{observed_field} = {_fmt(values)}"

    if isinstance(pred, A.Flag):
        name = pred.name
        if name == "unmapped":
            holds = (page.mapped if negated else not page.mapped)
            return holds, "mapped" if page.mapped else "unmapped"
        if not page.mapped:
            return negated and name != "present", "unmapped"
        if name in ("ksm", "swapped", "present", "exclusive"):
            return sat(page.field(name), lambda v: v is True, name)
        if name == "zero-page":
            return sat(page.field("frame"), lambda v: v == "Z", "frame")
        if name in ("reused", "copied"):
            return sat(page.field("fault"), lambda v: v == name, "fault")
        raise AssertionError(name)
    if not page.mapped:
        return negated, "unmapped"
    if isinstance(pred, A.Mapcount):
        return sat(page.field("mapcount"), lambda v: v == pred.count, "mapcount")
    if isinstance(pred, A.HasContent):
        want = str(pred.content)
        return sat(page.field("content"), lambda v: v == want, "content")
    if isinstance(pred, A.SameFrame):
        assert other is not None
        mine, theirs = page.field("frame"), other.field("frame")
        observed = f"frames {_fmt(mine)} and {_fmt(theirs)}"
        if not other.mapped:
            return negated, f"{other.name()} is unmapped"
        if mine is ANY or theirs is ANY or not mine or not theirs:
            return False, observed
        if None in mine or None in theirs:       # not present: no frame to share
            return negated and None not in (mine & theirs), observed
        if negated:
            return not (set(mine) & set(theirs)), observed
        return len(mine) == 1 and mine == theirs, observed
    raise AssertionError(pred)


def _reads(pred: A.Predicate) -> tuple[tuple[str, ...], bool]:
    """The fields :func:`_check_page` reads of the page for ``pred``, and whether it reads
    the other page's (``present`` and ``frame``, and its name).  It is a function of these
    values alone (and of the predicate and its negation), so pages reading the same values
    share one result (an expect over a region of one KSM page's sharers)."""
    if isinstance(pred, A.Flag):
        name = pred.name
        if name == "unmapped":
            return ("present",), False
        return ("present", "frame" if name == "zero-page" else
                "fault" if name in ("reused", "copied") else name), False
    if isinstance(pred, A.Mapcount):
        return ("present", "mapcount"), False
    if isinstance(pred, A.HasContent):
        return ("present", "content"), False
    if isinstance(pred, A.SameFrame):
        return ("present", "frame"), True
    raise AssertionError(pred)


def _columns(rec: Record | None, proc: str, region: str, names: Sequence[str],
             idx: range) -> list[list]:
    """Per field of ``names``, what :meth:`_PageView.field` gives for each page of ``idx``
    (a range): from a FieldsView by the column's runs, a run's value repeated (an
    IndexLabel made each page's label); else page by page."""
    if rec is None:
        return [[None] * len(idx) for _ in names]
    fields = rec.fields
    if not isinstance(fields, FieldsView) or not idx:
        cols: dict = {}
        return [[_PageView(rec, proc, region, j, cols).field(name) for j in idx]
                for name in names]
    out = []
    for name in names:
        vals: list = []
        runs = fields.runs((f"{proc}/{region}", name))
        for a, b, v in runs.segments(idx[0], idx[-1]):
            if v is ABSENT:
                vals += [None] * (b - a + 1)
            elif type(v) is IndexLabel:
                vals += [v.at(j) for j in range(a, b + 1)]
            else:
                vals += [v] * (b - a + 1)
        out.append(vals)
    return out


def _kernel_may_omit(pred: A.Predicate) -> str | None:
    """The page field ``pred`` reads when a kernel may be unable to report it (KPF_KSM on a
    kernel that sets it for every anonymous page; PM_MMAP_EXCLUSIVE; kpagecount)."""
    if isinstance(pred, A.Flag) and pred.name in ("ksm", "exclusive"):
        return pred.name
    if isinstance(pred, A.Mapcount):
        return "mapcount"
    if isinstance(pred, A.HasContent):
        return "content"         # a PROT_NONE page is never loaded by the probe
    return None


def _page_count(scn: A.Scenario, upto: int, proc: str, region: str) -> int:
    """The size of ``proc``'s region ``region`` as of statement ``upto``."""
    return layout_at(scn, upto).npages(proc, region)


class _Sizes:
    """_page_count() for statements in order: one layout brought forward (layout_at
    replays the scenario from its start for each expect, and a fill's replay costs its
    pages)."""

    def __init__(self, scn: A.Scenario):
        self.scn, self.layout, self.at = scn, Layout.start(scn.initial), 0

    def __call__(self, upto: int, proc: str, region: str) -> int:
        if upto < self.at:
            return _page_count(self.scn, upto, proc, region)
        while self.at < upto:
            self.layout.apply(self.scn.statements[self.at])
            self.at += 1
        return self.layout.npages(proc, region)


def evaluate_expects(scn: A.Scenario, records: Sequence[Record],
                     version: KernelVersion) -> list[ExpectResult]:
    """Judge every expect of ``scn`` on ``records`` (one per action, in order)."""
    by_stmt = {r.stmt: r for r in records}
    results: list[ExpectResult] = []
    last: Record | None = None
    page_count = _Sizes(scn)
    for i, s in enumerate(scn.statements):
        if not isinstance(s, A.EXPECT_TYPES):
            last = by_stmt.get(i, last)
            continue
        text = format_statement(s)
        line = s.pos.line
        if s.versions is not None and not s.versions.contains(version):
            results.append(ExpectResult(i, line, text, SKIPPED, f"not on {version}"))
            continue
        if last is None and any(isinstance(x, A.ACTION_TYPES) for x in scn.statements[:i]):
            results.append(ExpectResult(i, line, text, FAILED, "no observation recorded"))
            continue
        if isinstance(s, A.ExpectPrctl):
            # (before the first action: a new process, MMF_VM_MERGE_ANY clear)
            values = (last.get(proc_counter_key(s.proc, PRCTL_MERGE)) if last
                      else frozenset([False]))
            if values is None:
                results.append(ExpectResult(i, line, text, SKIPPED,
                                            "prctl(PR_GET_MEMORY_MERGE) was not observed"))
                continue
            ok = _all(values, lambda v: bool(v) == s.on)
            results.append(ExpectResult(i, line, text, HELD if ok else FAILED,
                                        f"PR_GET_MEMORY_MERGE gave {_fmt(values)}"))
            continue
        if isinstance(s, A.ExpectCounter):
            if s.proc is not None:
                key_of = proc_abs_counter_key if s.absolute else proc_counter_key
                has, key = has_proc_counter(version, s.counter), key_of(s.proc, s.counter)
            else:
                has, key = has_counter(version, s.counter), counter_key(s.counter)
            if not has:
                results.append(ExpectResult(i, line, text, SKIPPED,
                                            f"{version} has no counter {s.counter}"))
                continue
            values = last.get(key) if last else frozenset([0])
            if values is None:
                # The version has the counter but this stream does not carry it: the
                # kernel run could not attribute it (a global counter moved by others).
                results.append(ExpectResult(i, line, text, SKIPPED,
                                            f"counter {s.counter} was not observed in this run"))
                continue
            ok = _all(values, lambda v: v == s.delta)
            what = "is" if s.absolute else "changed by"
            results.append(ExpectResult(i, line, text, HELD if ok else FAILED,
                                        f"{s.counter} {what} {_fmt(values)}"))
            continue
        n = page_count(i, s.proc, s.target.region)
        idx = s.target.indices(n)
        names, reads_other = _reads(s.predicate)
        need = _kernel_may_omit(s.predicate)
        # the values each page reads, column by column (the expect's own key: _reads)
        got_cols = _columns(last, s.proc, s.target.region,
                            names + ((need,) if need else ()), idx)
        others: list[_PageView | None] = [None] * len(idx)
        if isinstance(s.predicate, A.SameFrame):
            other_proc, other_region = s.predicate.proc, s.predicate.target.region
            m = page_count(i, other_proc, other_region)
            idx2 = s.predicate.target.indices(m)
            cols2: dict = {}
            if len(idx2) == 1:                  # (one page against each: one view of it)
                others = [_PageView(last, other_proc, other_region, idx2[0], cols2)] * len(idx)
                one = (others[0].field("present"), others[0].field("frame"), other_proc,
                       other_region, idx2[0])
                other_reads = [one] * len(idx)
            else:
                others = [_PageView(last, other_proc, other_region, j, cols2) for j in idx2]
                pres2, frame2 = _columns(last, other_proc, other_region,
                                         ("present", "frame"), idx2)
                other_reads = [(a, b, other_proc, other_region, j)
                               for a, b, j in zip(pres2, frame2, idx2)]
        if need and any(pres is not None and v is None
                        for pres, v in zip(got_cols[0], got_cols[-1])):
            # a kernel that cannot report a field leaves it absent (never guessed): an
            # expect on it is not judged there, and the run's notes say why
            results.append(ExpectResult(i, line, text, SKIPPED,
                                        f"'{need}' was not observable on this kernel"))
            continue
        failures = []
        observed = []
        done: dict = {}                         # what a page reads -> (holds, observed)
        keys = list(zip(*got_cols[:len(names)]))
        if reads_other:
            keys = [a + b for a, b in zip(keys, other_reads)]
        cols = {}
        for k, j in enumerate(idx):
            key = keys[k]
            try:
                got = done.get(key)
            except TypeError:                   # (a value that does not hash: not kept)
                key = got = None
            if got is None:
                got = _check_page(s.predicate, _PageView(last, s.proc, s.target.region, j,
                                                         cols), others[k], s.negated)
                if key is not None:
                    done[key] = got
            ok, seen = got
            name = f"{s.proc} {s.target.region}[{j}]"     # (_PageView.name())
            observed.append(f"{name}: {seen}")
            if not ok:
                failures.append(f"{name}: {seen}")
        if failures:
            results.append(ExpectResult(i, line, text, FAILED, "; ".join(failures)))
        else:
            results.append(ExpectResult(i, line, text, HELD, "; ".join(observed)))
    return results
