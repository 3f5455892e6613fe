"""Finding user-level traces that reach every branch label of the spec.

The explicit engine enumerates the user model's states exactly, but every step multiplies
them by 5-8 (depth 6 of the 5.1-5.8 era is half a million states, ten minutes): a full
breadth-first search cannot reach the depth-6 reuse.  This search is a *beam* over the
same steps: each level keeps at most ``beam`` states, chosen first for novelty (a state
whose coarse shape -- per frame: KSM, stable node, swap cache, refcount, mapcount; which
processes live -- no earlier state had), then in an order drawn from the seed.  States
are identified up to a renaming of the frames (``symmetric`` domains), which is exact:
frames are interchangeable, only which pages share one matters.

Every transition that fires a label gives a witness trace (the path to its source state
plus that step).  Up to ``per_label`` distinct witnesses are kept per label, preferring
different shapes (steps, processes, pages touched).  What the search did not reach is
checked exhaustively to ``exhaustive_depth`` steps (every state, no beam), so "not
reached" comes with the depth to which it is proved unreachable.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ksmdiff.gen.specmap import SpecWorld, choices_of, labels_of

DEFAULT_BEAM = 200
DEFAULT_BOUND = 10
EXHAUSTIVE_DEPTH = 4
RARE = 40          # a label fired at most this often so far: keep the state it leads to


@dataclass(frozen=True)
class Witness:
    label: str
    steps: tuple                # instance numbers, in order
    picks: tuple                # per step: the choice picks (for the Z3 confirmation)
    source: str = "the search"  # who found it (the search, the spec's witness list, Z3)

    @property
    def length(self) -> int:
        return len(self.steps)


@dataclass
class Coverage:
    era: object
    labels: list                                    # every label of the era
    witnesses: dict = field(default_factory=dict)   # label -> [Witness]
    unreached: dict = field(default_factory=dict)   # label -> why
    hopeless: set = field(default_factory=set)      # labels no trace reaches (hopeless())
    states: int = 0
    seconds: float = 0.0


class _Symmetry:
    """Canonical renaming of the values of symmetric domains (frames) in a packed state."""

    def __init__(self, world: SpecWorld, domains):
        mc = world.mc
        m = world.model
        self.codes = {}
        self.index_cells = []     # (position, var, index tuple, which index positions are symmetric)
        self.value_cells = []     # positions whose value is a symmetric domain's code
        sym = set(domains)
        by_var = {}
        for pos, (var, idx) in enumerate(mc.keys):
            if var.startswith("pc."):
                continue
            v = m.vars[var]
            keys = list(v.keys)
            which = tuple(i for i, d in enumerate(keys) if d in sym)
            by_var.setdefault(var, []).append((pos, idx, which))
            tname = getattr(v.type, "name", None)
            if tname in sym:
                self.value_cells.append(pos)
        self.by_var = by_var
        self.dom = next(iter(sym)) if sym else None
        self.values = list(m.domains[self.dom].encodings()) if self.dom else []
        self.frame_vars = [var for var, cells in by_var.items() if any(c[2] for c in cells)]
        self.pos = {(var, idx): pos for var, cells in by_var.items() for pos, idx, _ in cells}

    def canon(self, state: tuple) -> tuple:
        if not self.values:
            return state
        # order frames by their first use in the value cells (page order), then the rest
        order = []
        for pos in self.value_cells:
            c = state[pos]
            if c not in order:
                order.append(c)
        # unused frames: by their own cells (so two unused frames with different ghosts stay apart)
        rest = [c for c in self.values if c not in order]
        rest.sort(key=lambda c: tuple(state[self.pos[(var, (c,))]]
                                      for var in self.frame_vars if (var, (c,)) in self.pos))
        order += rest
        ren = {old: new for new, old in enumerate(self.values and order)}
        ren = {old: self.values[i] for old, i in ren.items()}
        out = list(state)
        for pos in self.value_cells:
            out[pos] = ren[state[pos]]
        for var in self.frame_vars:
            for c in self.values:
                src = self.pos.get((var, (c,)))
                dst = self.pos.get((var, (ren[c],)))
                if src is not None and dst is not None:
                    out[dst] = state[src]
        return tuple(out)


def _shape(world: SpecWorld, st: dict, frame_vars) -> tuple:
    """The coarse shape of a state used for novelty: per frame the frame-indexed cells
    (as a sorted multiset), and the boolean process/page cells."""
    per_frame = {}
    other = []
    for (var, idx), val in st.items():
        if var in frame_vars and len(idx) == 1:
            per_frame.setdefault(idx[0], []).append((var, val))
        elif isinstance(val, bool):
            other.append(val)
    frames = sorted(tuple(sorted(v)) for v in per_frame.values())
    return (tuple(frames), tuple(other))


def search(world: SpecWorld, *, per_label: int = 3, bound: int = DEFAULT_BOUND,
           seed: int = 0, beam: int = DEFAULT_BEAM, symmetric=("Frame",),
           exhaustive_depth: int = EXHAUSTIVE_DEPTH, deadline: Optional[float] = None,
           labels: Optional[list] = None, allowed: Optional[set] = None,
           hopeless: Optional[Callable[[str], bool]] = None,
           known: Optional[dict] = None) -> Coverage:
    """``allowed``: the instance numbers a trace may use (default: all).  ``known``: label
    -> a Witness that fires it (the spec's own, :func:`known_witnesses`), taken for a
    label the beam does not reach, before any exhaustive search.  ``hopeless(label)``
    (asked once per label, only after a level that found no new witness): True when no
    trace of any length reaches it (Z3 over the invariants); when every label still
    missing is hopeless, the search ends there instead of running to ``bound``, and those
    labels need no exhaustive search either."""
    t0 = time.monotonic()
    rng = random.Random(seed)
    mc = world.mc
    all_labels = labels if labels is not None else _era_labels(world)
    cov = Coverage(world.era, all_labels)
    sym = _Symmetry(world, [d for d in symmetric if d in world.model.domains])
    wit: dict = {lab: [] for lab in all_labels}
    seen_shape_keys: dict = {lab: set() for lab in all_labels}
    init = sym.canon(world.initial())
    parent = {init: None}
    frontier = [init]
    shapes = set()
    order = [n for n in range(len(mc.instances)) if allowed is None or n in allowed]
    fired: dict = {}

    def path(s):
        steps, picks = [], []
        while parent[s] is not None:
            prev, n, pk = parent[s]
            steps.append(n)
            picks.append(pk)
            s = prev
        return steps[::-1], picks[::-1]

    verdicts: dict = {}

    def is_hopeless(lab):
        if hopeless is None:
            return False
        if lab not in verdicts:
            verdicts[lab] = hopeless(lab)
        return verdicts[lab]

    def enough():
        return all(len(wit[lab]) >= per_label for lab in all_labels)

    def only_hopeless_left():
        return all(is_hopeless(lab) for lab in all_labels if not wit[lab])

    for depth in range(bound):
        if not frontier or enough():
            break
        found_before = sum(len(ws) for ws in wit.values())
        scored = []
        for s in frontier:
            if deadline is not None and time.monotonic() > deadline:
                break
            rng.shuffle(order)
            for n, picks, t in world.steps(s, order):
                    labs = labels_of(picks)
                    for lab in labs:
                        fired[lab] = fired.get(lab, 0) + 1
                    if labs:
                        steps, pks = None, None
                        for lab in dict.fromkeys(labs):
                            if lab not in wit or len(wit[lab]) >= per_label:
                                continue
                            if steps is None:
                                steps, pks = path(s)
                            w = Witness(lab, tuple(steps) + (n,),
                                        tuple(pks) + (tuple(choices_of(picks).items()),))
                            key = _diversity_key(world, w)
                            if key in seen_shape_keys[lab] and len(wit[lab]) > 0:
                                continue
                            seen_shape_keys[lab].add(key)
                            wit[lab].append(w)
                    if not world.mc._in_range(mc.unpack(t)):
                        continue
                    t = sym.canon(t)
                    if t in parent:
                        continue
                    parent[t] = (s, n, tuple(choices_of(picks).items()))
                    sh = _shape(world, mc.unpack(t), sym.frame_vars)
                    novel = sh not in shapes
                    shapes.add(sh)
                    rare = any(fired[lab] <= RARE for lab in labs)
                    scored.append((0 if rare else 1, 0 if novel else 1, rng.random(), t))
        scored.sort(key=lambda x: x[:3])
        frontier = [x[3] for x in scored[:beam]]
        if (hopeless is not None and sum(len(ws) for ws in wit.values()) == found_before
                and only_hopeless_left()):
            break
    cov.witnesses = {lab: ws for lab, ws in wit.items() if ws}
    cov.hopeless = {lab for lab, v in verdicts.items() if v}
    missing = [lab for lab in all_labels if not wit[lab] and not is_hopeless(lab)]
    for lab in [lab for lab in missing if known and lab in known]:
        cov.witnesses[lab] = [known[lab]]
        missing.remove(lab)
    if missing:
        proved = _exhaustive(world, missing, exhaustive_depth, sym, deadline, order)
        for lab in missing:
            if lab in proved:
                cov.witnesses[lab] = [proved[lab]]
            else:
                cov.unreached[lab] = (f"not reached within the bound: no trace of at most "
                                      f"{exhaustive_depth} steps reaches it (every state "
                                      f"visited), none of at most {bound} steps in the "
                                      f"beam search (width {beam}, seed {seed})")
    cov.states = len(parent)
    cov.seconds = time.monotonic() - t0
    return cov


def _exhaustive(world, labels, depth, sym, deadline, order) -> dict:
    """Breadth-first over every state (up to frame renaming) to ``depth`` steps: the first
    witness of each of ``labels``."""
    mc = world.mc
    want = set(labels)
    found = {}
    init = sym.canon(world.initial())
    parent = {init: None}
    frontier = [init]
    for _ in range(depth):
        nxt = []
        for s in frontier:
            if deadline is not None and time.monotonic() > deadline:
                return found
            if True:
                for n, picks, t in world.steps(s, sorted(order)):
                    for lab in labels_of(picks):
                        if lab in want and lab not in found:
                            steps, pks = [], []
                            c = s
                            while parent[c] is not None:
                                prev, m, pk = parent[c]
                                steps.append(m)
                                pks.append(pk)
                                c = prev
                            found[lab] = Witness(lab, tuple(steps[::-1]) + (n,),
                                                 tuple(pks[::-1]) +
                                                 (tuple(choices_of(picks).items()),))
                    t = sym.canon(t)
                    if t not in parent:
                        parent[t] = (s, n, tuple(choices_of(picks).items()))
                        nxt.append(t)
        if want <= set(found):
            break
        frontier = nxt
    return found


def _diversity_key(world: SpecWorld, w: Witness) -> tuple:
    """What makes two witnesses of a label different enough to keep both: length, the
    processes and pages involved, the sequence of action names."""
    insts = [world.mc.instances[n] for n in w.steps]
    procs = set()
    pages = set()
    for inst in insts:
        for _name, dom, code in inst.args:
            if dom == world.cfg.proc_domain:
                procs.add(code)
            if dom == world.cfg.page_domain:
                pages.add(code)
    return (len(w.steps), len(procs), len(pages), tuple(i.name for i in insts))


def _era_labels(world: SpecWorld) -> list:
    from ksmdiff.gen.specmap import era_slug
    slug = era_slug(world.era)
    out = []
    for era, _owner, lab in world.model.branch_labels():
        if era == slug and lab not in out:
            out.append(lab)
    return out


def known_witnesses(world: SpecWorld, witness: dict, allowed: Optional[set] = None) -> dict:
    """label -> Witness for the action sequences ``witness`` lists (label -> [(action,
    (codes...))], prove.toml's ``[model.NAME.witness]``) that fire their label at their
    last step in ``world``, replayed by the explicit engine (each step's first outcome,
    as scenarios replay) using only ``allowed`` instances.  A sequence that does not fire
    here (another era, a mutant) is left out."""
    by_call = {(inst.name, tuple(c for _n, _d, c in inst.args)): n
               for n, inst in enumerate(world.mc.instances) if inst.kind == "action"}
    out = {}
    for label, calls in witness.items():
        steps = [by_call.get((name, tuple(codes))) for name, codes in calls]
        if not steps or None in steps or (allowed is not None and not set(steps) <= allowed):
            continue
        state, picks, ok = world.initial(), [], True
        for k, n in enumerate(steps):
            outs = world.step(state, n)
            if not outs:
                ok = False
                break
            pk, state = outs[0]
            picks.append(tuple(choices_of(pk).items()))
            if k == len(steps) - 1 and label not in labels_of(pk):
                ok = False
        if ok:
            out[label] = Witness(label, tuple(steps), tuple(picks), "the spec's witness list")
    return out
