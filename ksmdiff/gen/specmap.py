"""The user-level spec as a scenario engine: which spec action a scenario statement is, what
the spec predicts after it (an observation record, ksmdiff/observe.py), which branch
labels it fires.

Everything the spec and the scenario language share is read from ``spec/generate.toml``
(the model, the region, the record fields as kspec expressions); actions become
statements through their own ``prints`` clause.  States and steps are the explicit
engine's (ksmdiff/kspec/internal/explicit.py), with branch labels recorded.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ksmdiff.errors import InputError, Location
from ksmdiff.kspec import load_spec, spec_dir
from ksmdiff.kspec.internal import ast as KA
from ksmdiff.kspec.internal.cex import format_prints
from ksmdiff.kspec.internal.check import ERA_SLUG, era_has, fact_gaps
from ksmdiff.kspec.internal.explicit import Machine, _World
from ksmdiff.kspec.internal.parse import parse_text
from ksmdiff.observe import Record, label_frames, page_key, page_name
from ksmdiff.scenario import ast as S
from ksmdiff.scenario.printer import format_statement
from ksmdiff.versions import Era, KernelVersion, has_fact

CONFIG_NAME = "generate.toml"
RECORD_FIELDS = ("exists", "present", "swapped", "ksm", "content_fill", "content_write",
                 "frame")
LABEL_PICK = "@branch"          # the pick a branch statement leaves in a world's picks


@dataclass(frozen=True)
class Config:
    model: str
    region: str
    proc_domain: str
    page_domain: str
    touching: tuple
    record: dict                # field -> kspec expression text
    source: str


def load_config(path: Optional[Path] = None) -> Config:
    path = Path(path) if path is not None else spec_dir() / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", Location(str(path), 1, 1)) from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"not TOML: {e}", Location(str(path), 1, 1)) from None
    missing = [k for k in ("model", "proc_domain", "page_domain", "record")
               if k not in data]
    missing += [f"record.{f}" for f in RECORD_FIELDS if f not in data.get("record", {})]
    if missing:
        raise InputError(f"missing keys: {', '.join(missing)}", Location(str(path), 1, 1),
                         "every key of the generator's spec configuration")
    region = data.get("region")
    if region is None:                  # the prover's scenario mapping (prove.toml)
        smap = load_spec(path.parent).config.model(data["model"]).scenario
        if smap is None:
            raise InputError(f"no region: neither here nor in prove.toml's "
                             f"[model.{data['model']}.scenario]", Location(str(path), 1, 1))
        region = smap.region
    return Config(data["model"], region, data["proc_domain"], data["page_domain"],
                  tuple(data.get("touching", ())), dict(data["record"]), str(path))


class LabelMachine(Machine):
    """The explicit engine, recording every ``branch`` a world passes in its picks."""

    def stmt(self, s, w):
        if isinstance(s, KA.BranchLabel):
            w.picks.append((LABEL_PICK, s.name))
            return [w]
        return super().stmt(s, w)


def labels_of(picks) -> tuple:
    return tuple(v for k, v in picks if k == LABEL_PICK)


def choices_of(picks) -> dict:
    return {k: v for k, v in picks if k != LABEL_PICK}


class SpecWorld:
    """One model of the spec (``spec.models[cfg.model]`` or a mutant) in one era."""

    def __init__(self, model, era: Era, cfg: Config, facts: Optional[dict] = None):
        self.model = model
        self.era = era
        self.cfg = cfg
        self.facts = dict(facts or {})    # `kernel has` answers other than the era's own
        self.mc = LabelMachine(model, era, self.facts)
        self.procs = [(model.domains[cfg.proc_domain].show(c), c)
                      for c in model.domains[cfg.proc_domain].encodings()]
        self.pages = list(model.domains[cfg.page_domain].encodings())
        self.exprs = {f: self._expr(f, text) for f, text in cfg.record.items()}
        self.text_of = {}        # instance number -> statement text
        self.by_text = {}        # statement text -> instance number
        for n, inst in enumerate(self.mc.instances):
            if inst.kind != "action" or not inst.prints:
                continue
            text = format_prints(model, inst)
            self.text_of[n] = text
            self.by_text[_norm(text)] = n
        self.prelude = list(model.prelude)
        # Memos over packed states (the spec's world is small and replays share prefixes:
        # a fuzz batch replays the same few hundred states thousands of times).  Exact:
        # a step, a record's page fields and the invariants depend on the state alone.
        self._steps: dict = {}
        self._fields: dict = {}
        self._violated: dict = {}
        self._initial: Optional[tuple] = None

    # ------------------------------------------------------------------ config expressions
    def _expr(self, name, text):
        src = (f"model {self.cfg.model}\nobserve __gen_{name}(p: {self.cfg.proc_domain}, "
               f"v: {self.cfg.page_domain}) = {text}\n")
        try:
            f = parse_text(src, f"{self.cfg.source}:record.{name}")
        except InputError as e:
            raise InputError(f"record.{name}: {e.message}", Location(self.cfg.source, 1, 1),
                             "a kspec expression over p and v") from None
        decl = next(d for d in f.decls if isinstance(d, KA.ObserveDecl))
        return decl.value

    def value(self, field_name, st: dict, p: int, v: int):
        w = _World(st, {"p": p, "v": v})
        return self.mc.ev(self.exprs[field_name], w)

    # ------------------------------------------------------------------ states and steps
    def initial(self) -> tuple:
        if self._initial is None:
            self._initial = self.mc.initial()[0]
        return self._initial

    def step(self, state: tuple, n: int) -> list[tuple[tuple, tuple]]:
        """[(picks, next state)] of instance ``n`` from ``state`` (empty: not enabled)."""
        key = (state, n)
        hit = self._steps.get(key)
        if hit is None:
            inst = self.mc.instances[n]
            base = self.mc.unpack(state)
            w = _World(dict(base), {p: c for p, _d, c in inst.args})
            hit = [(tuple(r.picks), self.mc.pack(r.st)) for r in self.mc.run(inst.decl.body, w)]
            self._steps[_bounded(self._steps, key)] = hit
        return hit

    def violated(self, state: tuple) -> tuple:
        """The invariants ``state`` breaks, sorted."""
        hit = self._violated.get(state)
        if hit is None:
            hit = tuple(sorted(self.mc.violated(state, list(self.mc.invariants))))
            self._violated[_bounded(self._violated, state)] = hit
        return hit

    def steps(self, state: tuple, order):
        """(instance, picks, next state) for every enabled instance in ``order``."""
        base = self.mc.unpack(state)
        insts = self.mc.instances
        for n in order:
            inst = insts[n]
            w = _World(dict(base), {p: c for p, _d, c in inst.args})
            for r in self.mc.run(inst.decl.body, w):
                yield n, tuple(r.picks), self.mc.pack(r.st)

    def statement_instance(self, stmt) -> Optional[int]:
        return self.by_text.get(_norm(format_statement(stmt)))

    # ------------------------------------------------------------------ records
    def page_fields(self, st: dict) -> dict:
        """{(proc name, page): {field: value}} for every page the record lists."""
        out = {}
        for pname, p in self.procs:
            for v in self.pages:
                if self.value("exists", st, p, v):
                    out[(pname, v)] = {f: self.value(f, st, p, v) for f in RECORD_FIELDS[1:]}
        return out

    def fields_of(self, state: tuple) -> dict:
        """page_fields of a packed state (memoized; do not modify the result)."""
        hit = self._fields.get(state)
        if hit is None:
            hit = self.page_fields(self.mc.unpack(state))
            self._fields[_bounded(self._fields, state)] = hit
        return hit

    def record(self, stmt: int, line: int, before: tuple, after: tuple,
               touched: Optional[tuple]) -> Record:
        """The spec's prediction after a statement, in the model's record fields
        (``before``, ``after``: packed states)."""
        pages = self.fields_of(after)
        region = self.cfg.region
        frames = label_frames(((k, f["frame"] if f["present"] else None)
                               for k, f in pages.items()), zero=object(),
                              name=lambda k: page_name(k[0], region, k[1]))
        fields = {}
        for (pname, v), f in pages.items():
            def put(name, value):
                fields[page_key(pname, region, v, name)] = frozenset([value])
            put("present", bool(f["present"]))
            put("swapped", bool(f["swapped"]))
            put("frame", frames[(pname, v)])
            if f["present"]:
                put("ksm", bool(f["ksm"]))
                put("content", str(S.Content(f["content_fill"] or None,
                                             f["content_write"] or None)))
        if touched is not None and touched in pages and pages[touched]["present"]:
            pname, v = touched
            prev = self.fields_of(before).get(touched)
            if prev is None or not (prev["present"] or prev["swapped"]):
                fault = "fresh"
            elif prev["frame"] == pages[touched]["frame"]:
                fault = "reused"
            else:
                fault = "copied"
            fields[page_key(pname, region, v, "fault")] = frozenset([fault])
        return Record(stmt, line, fields)

    def touched_page(self, n: int) -> Optional[tuple]:
        inst = self.mc.instances[n]
        if inst.name not in self.cfg.touching:
            return None
        args = {name: (dom, code) for name, dom, code in inst.args}
        p = next((c for _n, (d, c) in args.items() if d == self.cfg.proc_domain), None)
        v = next((c for _n, (d, c) in args.items() if d == self.cfg.page_domain), None)
        if p is None or v is None:
            return None
        return (self.model.domains[self.cfg.proc_domain].show(p), v)


MEMO_LIMIT = 200_000        # entries per memo; a full memo starts over


def _bounded(memo: dict, key):
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    return key


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip())


# ---------------------------------------------------------------------- replay

class OutOfScope(Exception):
    """A scenario the spec's small world does not describe (the statement says why)."""

    def __init__(self, stmt: int, why: str):
        super().__init__(why)
        self.stmt = stmt
        self.why = why


@dataclass
class SpecRun:
    records: tuple              # one Record per action statement
    labels: tuple               # per action statement: the branch labels it fired
    violations: tuple           # (stmt, property) of step assertions and invariants


def replay(world: SpecWorld, scn: S.Scenario) -> SpecRun:
    """The spec's predictions for ``scn``; :class:`OutOfScope` when a statement is not one
    of the spec's actions (or the prelude) or is not enabled in the spec's state."""
    if f"process {scn.initial}" != world.prelude[0]:
        raise OutOfScope(-1, f"the spec starts with '{world.prelude[0]}'")
    prelude = [_norm(x) for x in world.prelude[1:]]
    state = world.initial()
    records, labels, viol = [], [], []
    k = 0
    for i, s in enumerate(scn.statements):
        if not S.is_action(s):
            continue
        text = _norm(format_statement(s))
        st_before = state
        if k < len(prelude):
            if text != prelude[k]:
                raise OutOfScope(i, f"statement {i} is not the spec's prelude '{prelude[k]}'")
            k += 1
            records.append(world.record(i, s.pos.line, st_before, st_before, None))
            labels.append(())
            continue
        n = world.statement_instance(s)
        if n is None:
            raise OutOfScope(i, f"'{text}' is not an action of the spec")
        outs = world.step(state, n)
        if not outs:
            raise OutOfScope(i, f"'{text}' is not enabled in the spec's state")
        picks, state = outs[0]
        rec = world.record(i, s.pos.line, st_before, state, world.touched_page(n))
        labs = labels_of(picks)
        for p in world.violated(state):
            viol.append((i, p))
        if text == "ksm settle":
            state, rec, labs = _settle_until_quiet(world, n, i, s.pos.line, st_before,
                                                   state, rec, labs, viol)
        records.append(rec)
        labels.append(labs)
    return SpecRun(tuple(records), tuple(labels), tuple(viol))


# a bound on the passes one `ksm settle` repeats (the corpora and the fuzz findings of
# every era quiet after at most one more pass)
SETTLE_PASSES = 8


def _settle_until_quiet(world, n, i, line, st_before, state, rec, labs, viol):
    """``ksm settle`` as the model and the kernel run it: the spec's ``settle`` (one full
    scan; two from 6.11) again until a pass changes no page's observed state (a page the first pass left out,
    such as a fork sibling's pte whose tree page was merged away under it, is merged by
    the next).  A pass that does not fit the small world (no free frame for the copy a
    pinned tree page forces on every pass) ends it: the prediction is the last pass that
    fit.  The labels are those of every pass."""
    for _ in range(SETTLE_PASSES):
        outs = world.step(state, n)
        if not outs:
            break
        picks, nxt = outs[0]
        again = world.record(i, line, st_before, nxt, None)
        labs = labs + tuple(x for x in labels_of(picks) if x not in labs)
        viol.extend((i, p) for p in world.violated(nxt) if (i, p) not in viol)
        state = nxt
        if again.fields == rec.fields:
            break
        rec = again
    return state, rec, labs


_WORLDS: dict = {}
_DEFAULT: dict = {}        # the spec and configuration of the checkout, loaded once


def world_for(era: Era, model=None, cfg: Optional[Config] = None,
              version: Optional[KernelVersion] = None) -> SpecWorld:
    """A cached :class:`SpecWorld` of the spec's configured model (or ``model``): of the
    era's representative version, or of ``version`` where it differs from that in a fact
    the model reads (``kernel has``).  :class:`OutOfScope` when the fact table does not
    know whether ``version`` has such a fact."""
    if cfg is None:
        cfg = _DEFAULT.get("cfg") or _DEFAULT.setdefault("cfg", load_config())
    if model is None:
        if "spec" not in _DEFAULT:
            _DEFAULT["spec"] = load_spec()
        model = _DEFAULT["spec"].models[cfg.model]
    facts: dict = {}
    if version is not None:
        for name in sorted(model.facts):
            got = has_fact(version, name)
            if got is None:
                raise OutOfScope(-1, "; ".join(fact_gaps([name], era, version)))
            if got != era_has(name, era):
                facts[name] = got
    key = (id(model), era, cfg.source, tuple(sorted(facts.items())))
    hit = _WORLDS.get(key)
    if hit is None:
        hit = _WORLDS[key] = SpecWorld(model, era, cfg, facts)
    return hit


def era_slug(era: Era) -> str:
    return ERA_SLUG[era]
