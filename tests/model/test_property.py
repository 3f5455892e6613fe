"""Hypothesis: on random valid scenarios the unmutated model never reports a violation and
never crashes, in every era; records are well formed."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksmdiff.model import run_model
from ksmdiff.observe import ANY, PAGE_FIELDS, split_page_key
from ksmdiff.scenario import parse
from ksmdiff.versions import KernelVersion

# one version per era, plus 6.11 (cmp_and_merge_page reorder) and 6.2 (unshare break_ksm)
VERSIONS = ["4.19", "5.4", "5.10", "5.18", "6.1", "6.2", "6.6", "6.11", "6.18"]
BYTES = [0x5a, 0x5b, None]   # few contents, so that pages merge often


@st.composite
def scenarios(draw, max_steps: int = 18):
    procs = {"A": {}}                     # name -> region -> [mapped, prot, pins]
    alive = {"A"}
    names = ["B", "C", "D"]
    lines: list[str] = []
    seq = 0
    if draw(st.booleans()):
        # a common start: equal pages made mergeable (so that ksmd has work to do)
        n = draw(st.integers(2, 4))
        procs["A"]["r0"] = {i: [True, "rw", 0] for i in range(n)}
        b = draw(st.sampled_from(BYTES))
        lines += [f"A: mmap r0 {n}", f"A: fill r0 {'zero' if b is None else f'0x{b:02x}'}",
                  "A: madvise r0 mergeable"]
        if draw(st.booleans()):
            lines.append("ksm settle")
    if draw(st.integers(0, 4)) == 0:
        lines.append("A: prctl merge on")
    for _ in range(draw(st.integers(1, max_steps))):
        choices = ["mmap", "ksm"]
        live = sorted(alive)
        have_pages = any(any(m for m, _p, _n in r.values()) for p in live
                         for r in procs[p].values())
        if have_pages:
            choices += ["fill", "write", "read", "madvise", "mprotect", "munmap", "pin",
                        "fork", "exit", "write", "fill", "ksm", "ksm", "madvise", "fork"]
        if any(n for p in live for r in procs[p].values() for _m, _p, n in r.values()):
            choices.append("unpin")
        kind = draw(st.sampled_from(choices))
        if kind == "ksm":
            what = draw(st.sampled_from(["settle", "scan", "scan", "set"]))
            if what == "settle":
                lines.append("ksm settle")
            elif what == "scan":
                lines.append(f"ksm scan {draw(st.integers(1, 3))}")
            else:
                knob, val = draw(st.sampled_from([("use_zero_pages", 1), ("use_zero_pages", 0),
                                                  ("max_page_sharing", 2),
                                                  ("max_page_sharing", 256)]))
                lines.append(f"ksm set {knob} {val}")
            continue
        p = draw(st.sampled_from(live))
        regions = procs[p]
        if kind == "mmap":
            seq += 1
            free = [n for n in ("r0", "r1", "r2")
                    if n not in regions or not any(m for m, _q, _n in regions[n].values())]
            if not free:
                continue
            name = draw(st.sampled_from(free))
            n = draw(st.integers(1, 4))
            regions[name] = {i: [True, "rw", 0] for i in range(n)}
            lines.append(f"{p}: mmap {name} {n}")
            continue
        if kind == "fork":
            if not names or len(alive) >= 4:
                continue
            child = names.pop(0)
            procs[child] = {rn: {i: [m, pr, 0] for i, (m, pr, _n) in r.items()}
                            for rn, r in regions.items()}
            alive.add(child)
            lines.append(f"{p}: fork {child}")
            continue
        if kind == "exit":
            if len(alive) == 1:
                continue
            alive.discard(p)
            lines.append(f"{p}: exit")
            continue
        mapped = [(rn, i) for rn, r in regions.items() for i, (m, _q, _n) in r.items() if m]
        if not mapped:
            continue
        rn, i = draw(st.sampled_from(mapped))
        region = regions[rn]
        # the whole region (often: merges need several equal pages) when every page of it
        # is mapped, else one page
        whole = all(m for m, _q, _n in region.values()) and draw(st.booleans())
        idx = list(region) if whole else [i]
        tgt = rn if whole else f"{rn}[{i}]"
        if kind in ("fill", "write"):
            if any(region[j][1] != "rw" for j in idx):
                continue
            b = draw(st.sampled_from(BYTES))
            if kind == "write" and b is None:
                b = 0x01
            lines.append(f"{p}: {kind} {tgt} {'zero' if b is None else f'0x{b:02x}'}")
        elif kind == "read":
            lines.append(f"{p}: read {tgt}")
        elif kind == "madvise":
            adv = draw(st.sampled_from(["mergeable", "mergeable", "mergeable", "unmergeable",
                                        "dontneed", "pageout"]))
            lines.append(f"{p}: madvise {tgt} {adv}")
        elif kind == "mprotect":
            prot = draw(st.sampled_from(["ro", "rw"]))
            for j in idx:
                region[j][1] = prot
            lines.append(f"{p}: mprotect {tgt} {prot}")
        elif kind == "munmap":
            for j in idx:
                region[j][0] = False
                region[j][2] = 0      # a pin outlives the mapping; keep it simple: no unpin
            lines.append(f"{p}: munmap {tgt}")
        elif kind == "pin":
            if any(region[j][2] >= 2 for j in idx):
                continue
            for j in idx:
                region[j][2] += 1
            lines.append(f"{p}: pin {tgt}")
        elif kind == "unpin":
            pinned = [(rn2, j) for rn2, r in regions.items() for j, (_m, _q, n) in r.items()
                      if n]
            if not pinned:
                continue
            rn2, j = draw(st.sampled_from(pinned))
            regions[rn2][j][2] -= 1
            lines.append(f"{p}: unpin {rn2}[{j}]")
    text = 'scenario "random"\nprocess A\n' + "\n".join(lines) + "\n"
    return parse(text)


def _well_formed(run, scn):
    actions = [i for i, s in enumerate(scn.statements)
               if type(s).__name__ not in ("ExpectPage", "ExpectCounter")]
    assert [r.stmt for r in run.records] == actions
    for rec in run.records:
        for key, allowed in rec.fields.items():
            assert allowed is ANY or (isinstance(allowed, frozenset) and allowed), key
            if key.startswith("counter."):
                continue
            _p, _r, _i, name = split_page_key(key)
            assert name in PAGE_FIELDS
            if name == "content":
                assert True in rec.fields[key.rsplit(".", 1)[0] + ".present"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from(VERSIONS))
def test_unmutated_model_never_violates(scn, version):
    run = run_model(scn, KernelVersion.parse(version))
    if run.status == "unsupported":
        v = KernelVersion.parse(version).mm
        assert (v < (6, 4) and "prctl-merge" in run.reason) or \
            (v < (5, 4) and "MADV_PAGEOUT" in run.reason)
        return
    assert run.status == "ok"
    assert run.violations == (), "\n".join(f"{v.prop}: {v.detail}" for v in run.violations)
    _well_formed(run, scn)


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_every_era_on_the_same_scenario(scn):
    for version in VERSIONS:
        run = run_model(scn, KernelVersion.parse(version))
        assert run.status == "ok" or run.records == ()
        assert run.violations == (), (version, [v.detail for v in run.violations])


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_content_is_the_same_in_every_era(scn):
    """Eras differ in frames and counters, never in what a process reads."""
    contents = None
    for version in VERSIONS:
        run = run_model(scn, KernelVersion.parse(version))
        if run.status != "ok":
            continue
        got = [{k: v for k, v in r.fields.items() if k.endswith(".content")}
               for r in run.records]
        if contents is None:
            contents = got
        assert got == contents, version


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_settle_is_a_fixpoint(scn):
    """After ``ksm settle`` one more full scan changes nothing observable (fault-time
    counters aside: a pinned twin churns)."""
    from ksmdiff.scenario import print_scenario
    text = print_scenario(scn) + "ksm settle\nksm scan 1\n"
    scn2 = parse(text)
    run = run_model(scn2, KernelVersion.parse("6.18"))
    if run.status != "ok":
        return
    a, b = run.records[-2].fields, run.records[-1].fields
    skip = ("counter.cow_ksm", "counter.pgreuse", "counter.ksm_swpin_copy")
    assert {k: v for k, v in a.items() if k not in skip} == \
        {k: v for k, v in b.items() if k not in skip}


def test_random_scenarios_expose_reuse_mapcount_2():
    """The generator is strong enough to find the isolation bug of the mutant by itself."""
    from hypothesis import find

    v = KernelVersion.parse("5.4")

    def broken(scn) -> bool:
        run = run_model(scn, v, mutant="reuse-mapcount-2")
        return any(x.prop == "isolation" for x in run.violations)

    scn = find(scenarios(), broken, settings=settings(max_examples=3000, deadline=None,
                                                      database=None))
    assert run_model(scn, v).violations == ()
