"""The probe's records are changes (docs/probe-wire.md): a page is printed only where its
entry changed, pages that went as runs.  Decoding such a stream must give every record the
same whole state as decoding whole states did: fields from every page's entry, frame labels
named by each frame's first page (observe.label_frames)."""

from __future__ import annotations

import random

from ksmdiff.observe import label_frames, page_key, page_name
from ksmdiff.probe import wire as W
from ksmdiff.probe.compiler import compile_scenario
from ksmdiff.probe.decode import ScenarioState
from ksmdiff.scenario import parse
from ksmdiff.versions import KernelVersion

SCN = parse('scenario "s"\nprocess A\nA: mmap a 6\nA: mmap b 4\nA: fork B\n'
            + "A: read a\n" * 60)
PROCS, REGIONS = ("A", "B"), ("a", "b")
SIZES = (6, 4)


def whole_fields(entries: dict, faults: dict) -> dict:
    """What a whole-state record shows (the decoder before records of changes)."""
    order = sorted(entries)
    labels = label_frames(((k, ("Z" if entries[k][W.ZERO_PAGE] else entries[k][W.PFN])
                            if entries[k][W.PRESENT] else None) for k in order),
                          name=lambda k: page_name(PROCS[k[0]], REGIONS[k[1]], k[2]))
    out = {}
    for k in order:
        e = entries[k]
        p, r, i = PROCS[k[0]], REGIONS[k[1]], k[2]
        out[page_key(p, r, i, "present")] = bool(e[W.PRESENT])
        out[page_key(p, r, i, "swapped")] = bool(e[W.SWAPPED])
        out[page_key(p, r, i, "frame")] = labels[k]
        if e[W.PRESENT]:
            out[page_key(p, r, i, "ksm")] = bool(e[W.KSM])
            out[page_key(p, r, i, "mapcount")] = e[W.MAPCOUNT]
            out[page_key(p, r, i, "exclusive")] = bool(e[W.EXCLUSIVE])
            if e[W.CONTENT] is not None:
                out[page_key(p, r, i, "content")] = e[W.CONTENT]
        if k in faults:
            out[page_key(p, r, i, "fault")] = faults[k]
    return out


def random_entry(rng: random.Random, key) -> list:
    if rng.random() < 0.2:
        return [*key, 0, int(rng.random() < 0.5), None, None, None, None, None, None]
    zero = rng.random() < 0.1
    return [*key, 1, 0, 7 if zero else rng.randrange(100, 106), int(rng.random() < 0.3),
            int(zero), rng.randrange(0, 3), int(rng.random() < 0.5),
            rng.choice(["0x11", "zero", None])]


def test_records_of_changes_reproduce_the_whole_states():
    rng = random.Random(7)
    st = ScenarioState(0, SCN, compile_scenario(SCN), KernelVersion.parse("6.8"), ())
    state: dict = {}          # the kernel's pages: what a whole-state probe would print
    for step in range(60):
        # the world moves: pages appear, change (some only in a far page's frame, which
        # relabels others), and go (munmap, exit)
        new = dict(state)
        for p in range(2):
            for r in range(2):
                for i in range(SIZES[r]):
                    key = (p, r, i)
                    x = rng.random()
                    if key not in new:
                        if x < 0.3:
                            new[key] = random_entry(rng, key)
                    elif x < 0.05:
                        del new[key]
                    elif x < 0.3:
                        new[key] = random_entry(rng, key)
        touched = {k for k in new if new[k][W.PRESENT] and rng.random() < 0.2}
        faults = {k: rng.choice(W.FAULTS) for k in touched}
        # the probe's rule: an entry that differs, or a fault; the pages that went, as runs
        printed = [new[k] + ([faults[k]] if k in faults else [])
                   for k in sorted(new) if state.get(k) != new[k] or k in faults]
        gone = sorted(k for k in state if k not in new)
        runs: list = []
        for p, r, i in gone:
            if runs and runs[-1][:2] == [p, r] and runs[-1][3] + 1 == i:
                runs[-1][3] = i
            else:
                runs.append([p, r, i, i])
        msg = {"s": 3 + step, "c": {}, "p": printed, **({"g": runs} if runs else {})}
        st._record(msg)
        state = new
        got = {k: next(iter(v)) for k, v in st.records[-1].fields.items()}
        assert got == whole_fields(state, faults), step
        # and the record's delta is exactly what changed since the previous record
        if len(st.records) > 1:
            before = st.records[-2].fields
            changed = {k for k in set(before) | set(got)
                       if before.get(k) != st.records[-1].fields.get(k)}
            assert changed == set(st.records[-1].delta), step
