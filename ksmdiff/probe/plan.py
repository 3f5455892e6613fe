"""Which scenarios can replay together: batches of scenarios whose ksm statements agree
(``compiler.merge_signatures``), at most one per batch whose real zero pages meet ksmd with
use_zero_pages=0, and which groups set a stable-node knob (they run last).  Pure: no
system access; the runner's ``_Plan`` orders the groups and starts their probes."""

from __future__ import annotations

from ksmdiff.probe.compiler import merge_signatures
from ksmdiff.scenario import ast as A

MAX_BATCH = 64


def _sets_stable_knobs(progs: dict, members) -> bool:
    """Does a scenario of ``members`` set max_page_sharing or merge_across_nodes (knobs
    the kernel refuses to change while stable nodes exist)?"""
    return any(isinstance(b, A.KsmSet) and b.knob != "use_zero_pages"
               for i in members for b in progs[i].barriers.values())


def _pack(progs: dict, items: list[int]) -> list[list[int]]:
    """Batches for ``items``: scenarios share a batch when their signatures merge
    (merge_signatures: the same ksm statement at every index both reach, and no two values
    of a knob needed while ksmd runs), at most MAX_BATCH each, and at most one scenario per
    batch whose real zero pages meet ksmd with use_zero_pages=0.

    Greedy, in an order that keeps the number of batches small: the longest signatures
    first (they decide which batches must differ), then the scenarios of which a batch
    takes one (one per batch while there are batches left), then those that need a knob
    value, then the rest, which fit anywhere; each goes to the first batch it fits without
    changing that batch's signature, else to the first it fits at all, else to a new one."""
    def rank(i: int) -> tuple:
        p = progs[i]
        if len(p.signature) > 1:
            return (0, -len(p.signature), i)
        return (1 if p.zero_merges else 2 if p.scan_knobs else 3, 0, i)
    batches: list[list[int]] = []
    sigs: list[tuple] = []
    zeros: list[bool] = []
    for i in sorted(items, key=rank):
        prog = progs[i]
        fits = []
        for b, sig in enumerate(sigs):
            if len(batches[b]) >= MAX_BATCH or (prog.zero_merges and zeros[b]):
                continue   # (two scenarios' real zero pages would merge with each other)
            merged = merge_signatures(sig, prog.signature)
            if merged is not None:
                fits.append((merged != sig, b, merged))
        if fits:
            _changed, b, merged = min(fits)
            batches[b].append(i)
            sigs[b] = merged
            zeros[b] = zeros[b] or prog.zero_merges
        else:
            batches.append([i])
            sigs.append(prog.signature)
            zeros.append(prog.zero_merges)
    return batches


def _zero_pages_set(lv) -> bool:
    b = lv.prog.barriers[lv.at_barrier]
    return isinstance(b, A.KsmSet) and b.knob == "use_zero_pages"
