"""The probe's records are changes in runs of pages (docs/probe-wire.md): pages are printed
only where what a record shows of them changed, as runs whose frame label may follow the
page index, and pages that went as runs.  Decoding such a stream must give every record
the same whole state as decoding whole states did: fields from every page's state, frame
labels named by each frame's first page (observe.label_frames)."""

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
# a page of the simulated kernel: (present, swapped, pfn, ksm, zero page, mapcount,
# exclusive, content), None for the five after swapped when not present
PRESENT, SWAPPED, PFN, KSM, ZERO, MAPCOUNT, EXCL, CONTENT = range(8)


def labels_of(pages: dict) -> dict:
    order = sorted(pages)
    return label_frames(((k, ("Z" if pages[k][ZERO] else pages[k][PFN])
                          if pages[k][PRESENT] else None) for k in order),
                        name=lambda k: k)


def whole_fields(pages: dict, faults: dict) -> dict:
    """What a whole-state record shows (the decoder before records of changes)."""
    labels = labels_of(pages)
    out = {}
    for k in sorted(pages):
        e = pages[k]
        p, r, i = PROCS[k[0]], REGIONS[k[1]], k[2]
        lab = labels[k]
        out[page_key(p, r, i, "present")] = bool(e[PRESENT])
        out[page_key(p, r, i, "swapped")] = bool(e[SWAPPED])
        out[page_key(p, r, i, "frame")] = (lab if lab in (None, "Z") else
                                           page_name(PROCS[lab[0]], REGIONS[lab[1]], lab[2]))
        if e[PRESENT]:
            out[page_key(p, r, i, "ksm")] = bool(e[KSM])
            out[page_key(p, r, i, "mapcount")] = e[MAPCOUNT]
            out[page_key(p, r, i, "exclusive")] = bool(e[EXCL])
            if e[CONTENT] is not None:
                out[page_key(p, r, i, "content")] = e[CONTENT]
        if k in faults:
            out[page_key(p, r, i, "fault")] = faults[k]
    return out


def shown_states(pages: dict) -> dict:
    """What the probe prints of each page: its fields with the frame's first page in
    place of the PFN."""
    labels = labels_of(pages)
    out = {}
    for k, e in pages.items():
        lab = labels[k]
        out[k] = (e[PRESENT], e[SWAPPED], None if lab in (None, "Z") else lab, *e[KSM:])
    return out


def entries(shown: dict, keys: list, faults: dict, rng: random.Random) -> list:
    """The probe's runs for ``keys`` (sorted): consecutive pages of a region with one state
    but the label, which is one page or follows the index (as probe.c's run_add joins
    them), cut at random places too (a reader must take any cut)."""
    out: list = []
    for k in keys:
        st, fault = shown[k], faults.get(k)
        p, r, i = k
        if out and rng.random() < 0.8:
            e, (lp, lr, lo, hi), lst, lfault, follows = out[-1]
            if ((lp, lr, hi + 1) == (p, r, i) and lfault == fault
                    and lst[:2] + lst[3:] == st[:2] + st[3:]):
                a, b = lst[2], st[2]
                if a is None and b is None:
                    out[-1][1] = (lp, lr, lo, i)
                    continue
                if a is not None and b is not None and a[:2] == b[:2]:
                    if not follows and b == a:
                        out[-1][1] = (lp, lr, lo, i)
                        continue
                    if (follows or lo == hi) and b[2] == a[2] + (i - lo):
                        out[-1][1] = (lp, lr, lo, i)
                        out[-1][4] = True
                        continue
        out.append([None, (p, r, i, i), st, fault, False])
    msgs = []
    for _e, (p, r, lo, hi), st, fault, follows in out:
        present, swapped, lab, ksm, zero, mapcount, excl, content = st
        if present:
            frame = [None] * 4 if lab is None else [lab[0], lab[1], lab[2], int(follows)]
            e = [p, r, lo, hi, present, swapped, *frame, ksm, zero, mapcount, excl, content]
        else:
            e = [p, r, lo, hi, 0, swapped, *[None] * 9]
        msgs.append(e + ([fault] if fault else []))
    return msgs


def random_entry(rng: random.Random) -> tuple:
    if rng.random() < 0.2:
        return (0, int(rng.random() < 0.5), None, None, None, None, None, None)
    zero = rng.random() < 0.1
    return (1, 0, 7 if zero else rng.randrange(100, 106), int(rng.random() < 0.3),
            int(zero), rng.randrange(0, 3), int(rng.random() < 0.5),
            rng.choice(["0x11", "zero", None]))


def test_records_of_changes_reproduce_the_whole_states():
    rng = random.Random(7)
    st = ScenarioState(0, SCN, compile_scenario(SCN), KernelVersion.parse("6.8"), ())
    state: dict = {}          # the kernel's pages
    shown_before: dict = {}   # what the probe printed of each page
    for step in range(200):
        # the world moves: pages appear, change (some only in a far page's frame, which
        # relabels others), and go (munmap, exit); some steps move whole regions
        new = dict(state)
        bulk = rng.random() < 0.3
        common = random_entry(rng)
        for p in range(2):
            for r in range(2):
                for i in range(SIZES[r]):
                    key = (p, r, i)
                    x = rng.random()
                    if bulk and x < 0.9:
                        new[key] = common if common[PRESENT] and rng.random() < 0.5 else \
                            (*common[:2], 200 + 10 * p + i, *common[3:]) if common[PRESENT] \
                            else common
                    elif key not in new:
                        if x < 0.3:
                            new[key] = random_entry(rng)
                    elif x < 0.05:
                        del new[key]
                    elif x < 0.3:
                        new[key] = random_entry(rng)
        touched = {k for k in new if new[k][PRESENT] and rng.random() < 0.2}
        faults = {k: rng.choice(W.FAULTS) for k in touched}
        # the probe's rule: a page whose shown state differs, or a fault; the pages that
        # went, as runs
        shown = shown_states(new)
        keys = [k for k in sorted(new) if shown_before.get(k) != shown[k] or k in faults]
        printed = entries(shown, keys, faults, rng)
        gone = sorted(k for k in state if k not in new)
        runs: list = []
        for p, r, i in gone:
            if runs and runs[-1][:2] == [p, r] and runs[-1][3] + 1 == i:
                runs[-1][3] = i
            else:
                runs.append([p, r, i, i])
        msg = {"s": 3 + (step % 60), "c": {}, "p": printed, **({"g": runs} if runs else {})}
        st._record(msg)
        state, shown_before = new, shown
        got = {k: next(iter(v)) for k, v in st.records[-1].fields.items()}
        assert got == whole_fields(state, faults), step
        # and the record's delta is exactly what changed since the previous record
        if len(st.records) > 1:
            before = st.records[-2].fields
            changed = {k for k in set(before) | set(got)
                       if before.get(k) != st.records[-1].fields.get(k)}
            assert changed == set(st.records[-1].delta), step
