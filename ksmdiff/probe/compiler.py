"""Compile a Scenario into the probe's line-oriented program (format: top of probe.c).

Pure: no system access.  Besides the text, the compiled :class:`Program` says which
statements are ksm barriers (run by the runner, not the probe), the process and region
names behind the probe's indices, and why a scenario must run in a batch of its own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from ksmdiff.scenario import ast as A
from ksmdiff.scenario.layout import Layout, Proc as LayoutProc
from ksmdiff.scenario.validate import cgroup_controllers, placement_nodes, uses_cgroups

# sysfs values that move only while ksmd runs, for the whole machine (the runner reads
# them around a barrier: a scenario can own them only when it runs alone)
KSMD_GAUGES = ("pages_unshared", "pages_volatile", "full_scans", "pages_skipped")



@dataclass(frozen=True)
class Program:
    text: str
    procs: tuple[str, ...]                 # probe index -> process name (creation order)
    regions: tuple[str, ...]               # probe index -> region name (first-mmap order)
    barriers: dict                         # statement index -> KsmSettle | KsmScan | KsmSet
    solo_reasons: tuple[str, ...]          # why this scenario cannot share a batch
    signature: tuple                       # barrier kinds, for grouping batches
                                           # (merge_signatures)
    salt: int
    zero_merges: bool = False              # real (unsalted) zero pages meet ksmd with
                                           # use_zero_pages=0: at most one such per batch
    has_pins: bool = False                 # pins pages: may own settle-time events
    quiet: bool = False                    # needs ksmd's machine-wide gauges as its own
                                           # (expects pages_unshared, ..., or unmerges
                                           # everything): alone, after a reap
    unmerge_all: bool = False              # has ``ksm unmerge-all`` (run=2)
    scan_knobs: dict = field(default_factory=dict)
                                           # barrier index -> {knob: value} this scenario
                                           # needs while ksmd runs there (use_zero_pages,
                                           # once it may hold real zero pages)


def _kind(entry: tuple) -> tuple:
    """A signature entry without the knob values it needs: ("settle",), ("scan", N), or a
    whole ("set", KNOB, VALUE)."""
    if entry[0] == "settle":
        return entry[:1]
    if entry[0] == "scan":
        return entry[:2]
    return entry


def merge_signatures(a: tuple, b: tuple) -> tuple | None:
    """The signature of a batch holding scenarios with signatures ``a`` and ``b``, or None
    when they cannot share one.  At every index both reach they must do the same ksm
    statement (settle, the same scan count, the same set of max_page_sharing /
    merge_across_nodes), and where both need use_zero_pages while ksmd runs, the same value.
    ``ksm set use_zero_pages`` itself is no entry: it only matters to a scenario that may
    hold real zero pages at a later scan, and there that scan's entry says the value (the
    runner writes it before the scan).  A scenario without real zero pages is indifferent
    to it: its pages are salted, never zero, and the knob only changes what ksmd does with
    zero-filled pages."""
    out = []
    for x, y in zip(a, b):
        if _kind(x) != _kind(y):
            return None
        if len(x) > len(_kind(x)) and len(y) > len(_kind(y)) and x != y:
            return None
        out.append(x if len(x) >= len(y) else y)
    longer = a if len(a) > len(b) else b
    return tuple(out) + tuple(longer[len(out):])


def new_salt() -> int:
    while True:
        s = secrets.randbits(64)
        if s not in (0, (1 << 64) - 1):
            return s


# probe.c's MAX_REGION_PAGES and MAX_TOTAL_PAGES (its tables are sized from the program;
# these are the scenario language's own limit)
PROBE_MAX_REGION_PAGES = 1 << 17
PROBE_MAX_TOTAL_PAGES = 1 << 17


def scenario_pages(scn: A.Scenario) -> int:
    """The pages ``scn`` maps in all, a fork's copies included."""
    layout = Layout()
    layout.procs[scn.initial] = LayoutProc()
    for s in scn.statements:
        layout.apply(s)                # counts a fork's copy of its parent's pages too
    return layout.total_pages


def beyond_probe(scn: A.Scenario) -> str | None:
    """Why the probe cannot run ``scn`` (it maps more pages than probe.c's tables hold),
    or None.  probe.c's tables are sized from the program up to the language's own limits,
    so this guards a scenario built past the validator."""
    region = max((s.npages for s in scn.statements if isinstance(s, A.Mmap)), default=0)
    total = scenario_pages(scn)
    if region > PROBE_MAX_REGION_PAGES or total > PROBE_MAX_TOTAL_PAGES:
        return (f"the probe runs at most {PROBE_MAX_REGION_PAGES} pages per region and "
                f"{PROBE_MAX_TOTAL_PAGES} pages in all (a fork's copies included); this scenario maps "
                f"{total} (up to {region} in one region)")
    return None


def beyond_nodes(scn: A.Scenario, nodes: frozenset[int] | None) -> str | None:
    """Why a machine whose nodes with memory are ``nodes`` (None: the kernel has no
    CONFIG_NUMA, /sys/devices/system/node is missing) cannot run ``scn``'s node placements
    (``mmap R N node K``), or None."""
    want = placement_nodes(scn)
    if not want:
        return None
    if nodes is None:
        return ("places pages on NUMA nodes (mmap ... node), but this kernel has no NUMA "
                "(no /sys/devices/system/node: CONFIG_NUMA is off)")
    missing = sorted(want - nodes)
    if missing:
        have = ", ".join(map(str, sorted(nodes))) or "none"
        return (f"places pages on node {', '.join(map(str, missing))}, but this machine has "
                f"memory on node {have} only (/sys/devices/system/node/has_memory)")
    return None


def beyond_cgroups(scn: A.Scenario, controllers: frozenset[str] | None) -> str | None:
    """Why a machine whose cgroup v2 root enables ``controllers`` in its
    cgroup.subtree_control (None: no cgroup2 file system mounted) cannot run ``scn``'s
    cgroup statements, or None."""
    if not uses_cgroups(scn):
        return None
    if controllers is None:
        return "moves a process into a cgroup, but no cgroup v2 file system is mounted"
    missing = sorted(cgroup_controllers(scn) - controllers)
    if missing:
        return (f"needs the cgroup v2 {', '.join(missing)} controller, which the cgroup2 "
                "root does not enable (cgroup.subtree_control: "
                f"{' '.join(sorted(controllers)) or 'empty'}; a cgroup v1 hierarchy may hold it)")
    return None


def parse_node_list(text: str) -> frozenset[int]:
    """A kernel node list (``0``, ``0-1``, ``0,2-3``; empty: none), as in has_memory."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


def compile_scenario(scn: A.Scenario, salt: int | None = None) -> Program:
    salt = new_salt() if salt is None else salt
    procs = [scn.initial]
    regions: list[str] = []
    groups: list[str] = []
    lines: list[str] = []
    barriers: dict = {}
    solo: list[str] = []
    sig: list = []
    # content base per (proc, region, page): "zero" (never written or zeros) or "fill"
    base: dict[tuple[str, str], list[str]] = {}
    npages: dict[tuple[str, str], int] = {}
    real_zeros = False          # some page may hold real zeros (unsalted)
    zero_merges = False
    has_pins = False
    scan_knobs: dict = {}
    scanned = False             # a settle or scan came before
    zero_pages_knob = 0         # use_zero_pages as this scenario left it
    unmerge_all = False
    # ksmd-wide sysfs gauges cannot be told apart between the scenarios of a batch
    quiet = any(isinstance(s, A.ExpectCounter) and s.proc is None and s.counter in KSMD_GAUGES
                for s in scn.statements)
    if quiet:
        solo.append("expects a ksmd-wide counter (" + ", ".join(
            sorted({s.counter for s in scn.statements if isinstance(s, A.ExpectCounter)
                    and s.proc is None and s.counter in KSMD_GAUGES})) + ")")

    def pidx(name: str) -> int:
        return procs.index(name)

    def rng(proc: str, t: A.Target) -> tuple[int, int, range]:
        n = npages[(proc, t.region)]
        idx = t.indices(n)
        return idx.start, idx.stop - 1, idx

    def add_solo(reason: str) -> None:
        if reason not in solo:
            solo.append(reason)

    for k, s in enumerate(scn.statements):
        if not A.is_action(s):
            continue
        p = pidx(s.proc) if hasattr(s, "proc") else None
        if isinstance(s, A.Mmap):
            if s.region not in regions:
                regions.append(s.region)
            npages[(s.proc, s.region)] = s.npages
            base[(s.proc, s.region)] = ["zero"] * s.npages
            node = "" if s.node is None else f" {s.node}"
            lines.append(f"{k} mmap {p} {regions.index(s.region)} {s.npages}{node}")
        elif isinstance(s, A.Fill):
            lo, hi, idx = rng(s.proc, s.target)
            if s.byte is None:
                real_zeros = True
            for i in idx:
                base[(s.proc, s.target.region)][i] = "zero" if s.byte is None else "fill"
            b = "z" if s.byte is None else f"0x{s.byte:02x}"
            lines.append(f"{k} fill {p} {regions.index(s.target.region)} {lo} {hi} {b}")
        elif isinstance(s, (A.Write, A.ForceWrite)):
            pages = base[(s.proc, s.target.region)]
            r = regions.index(s.target.region)
            if s.byte == 0 and any(pages[i] == "zero" for i in rng(s.proc, s.target)[2]):
                real_zeros = True
            # a write to a zero-based page also writes the second salt (content
            # "zero+0xWW"); one probe line per run of pages with the same flag, in page order,
            # all with the same statement index (the probe reports them as one statement)
            lo, hi, idx = rng(s.proc, s.target)
            run_lo, run_flag = None, None
            for i in list(idx) + [None]:
                flag = None if i is None else int(pages[i] == "zero" and s.byte != 0)
                if run_lo is not None and (i is None or flag != run_flag):
                    op = "fwrite" if isinstance(s, A.ForceWrite) else "write"
                    lines.append(f"{k} {op} {p} {r} {run_lo} {prev} 0x{s.byte:02x} {run_flag}")
                    run_lo = None
                if i is not None:
                    if run_lo is None:
                        run_lo, run_flag = i, flag
                    prev = i
        elif isinstance(s, A.Read):
            lo, hi, _ = rng(s.proc, s.target)
            lines.append(f"{k} read {p} {regions.index(s.target.region)} {lo} {hi}")
        elif isinstance(s, A.Madvise):
            lo, hi, idx = rng(s.proc, s.target)
            if s.advice == "dontneed":
                for i in idx:
                    base[(s.proc, s.target.region)][i] = "zero"
            adv = {"mergeable": "m", "unmergeable": "u", "dontneed": "d", "pageout": "p"}[s.advice]
            lines.append(f"{k} madv {p} {regions.index(s.target.region)} {lo} {hi} {adv}")
        elif isinstance(s, A.Mprotect):
            lo, hi, _ = rng(s.proc, s.target)
            pr = {"ro": "r", "rw": "w", "none": "n"}[s.prot]
            lines.append(f"{k} mprot {p} {regions.index(s.target.region)} {lo} {hi} {pr}")
        elif isinstance(s, A.Munmap):
            lo, hi, _ = rng(s.proc, s.target)
            lines.append(f"{k} munmap {p} {regions.index(s.target.region)} {lo} {hi}")
        elif isinstance(s, A.Fork):
            procs.append(s.child)
            for (pr_, rg), pages in list(base.items()):
                if pr_ == s.proc:
                    base[(s.child, rg)] = list(pages)
                    npages[(s.child, rg)] = npages[(pr_, rg)]
            lines.append(f"{k} fork {p} {pidx(s.child)}")
        elif isinstance(s, A.Exit):
            lines.append(f"{k} exit {p}")
        elif isinstance(s, A.Exec):
            # the probe execs itself and goes on in the new image; the new mm may be
            # scanned by ksmd with the probe's own memory mergeable until it takes that
            # out, so the scenario runs alone
            add_solo("replaces a process image (exec)")
            for key in [key for key in base if key[0] == s.proc]:
                del base[key]
            lines.append(f"{k} exec {p}")
        elif isinstance(s, A.Pin):
            # ksmd may break a pinned page's identical twin on every scan (cow_ksm churn:
            # write_protect_page refuses the pinned page, and try_to_merge_two_pages
            # break_cow()s the twin it had just made KSM): settle-time events of a batch
            # belong to its pinning scenarios (one: it owns them; several: they are
            # replayed alone)
            has_pins = True
            lo, hi, _ = rng(s.proc, s.target)
            lines.append(f"{k} pin {p} {regions.index(s.target.region)} {lo} {hi}")
        elif isinstance(s, A.Unpin):
            lo, hi, _ = rng(s.proc, s.target)
            lines.append(f"{k} unpin {p} {regions.index(s.target.region)} {lo} {hi}")
        elif isinstance(s, (A.Mlock, A.Munlock)):
            lo, hi, _ = rng(s.proc, s.target)
            op = "mlock" if isinstance(s, A.Mlock) else "munlock"
            lines.append(f"{k} {op} {p} {regions.index(s.target.region)} {lo} {hi}")
        elif isinstance(s, A.UffdWp):
            lo, hi, _ = rng(s.proc, s.target)
            lines.append(f"{k} uffdwp {p} {regions.index(s.target.region)} {lo} {hi}")
        elif isinstance(s, A.Cgroup):
            # the probe makes the group (its own directory under the cgroup2 root) at the
            # first statement naming it; the process moves itself in
            if s.group not in groups:
                groups.append(s.group)
            limit = "max" if s.memory_max is None else str(s.memory_max)
            mems = "-" if s.mems is None else str(s.mems)
            lines.append(f"{k} cgroup {p} {groups.index(s.group)} {limit} {mems}")
        elif isinstance(s, A.Mempolicy):
            lines.append(f"{k} mpol {p} {'-' if s.node is None else s.node}")
        elif isinstance(s, A.Prctl):
            # the probe marks its own memory unmergeable after prctl, so only the
            # scenario's regions take part: batchable
            lines.append(f"{k} prctl {p} {int(s.on)}")
        elif isinstance(s, A.KsmUnmergeAll):
            # run=2 unmerges every KSM page of the machine, other scenarios' too
            barriers[k] = s
            unmerge_all = True
            add_solo("unmerges every KSM page (ksm unmerge-all)")
            sig.append(("unmerge-all",))
            lines.append(f"{k} sync")
        elif isinstance(s, (A.KsmSettle, A.KsmScan, A.KsmSet)):
            barriers[k] = s
            if isinstance(s, A.KsmSet):
                # every scenario of a batch does the same sets at the same ksm statement
                # (the batch signature), so a batch shares its knob history.  The other two
                # knobs are refused (-EBUSY) while any stable node exists on the machine:
                # batchable only before the first scan, when no scenario has KSM pages
                if s.knob == "use_zero_pages":
                    zero_pages_knob = s.value      # no entry: see merge_signatures
                elif s.knob == "smart_scan":
                    # it changes what ksmd does with every page of a batch
                    add_solo("sets smart_scan")
                    sig.append(("set", s.knob, s.value))
                else:
                    if scanned:
                        add_solo(f"sets the knob {s.knob} after ksmd ran")
                    sig.append(("set", s.knob, s.value))
            else:
                scanned = True
                if real_zeros and not zero_pages_knob:
                    zero_merges = True
                entry = ("scan", s.scans) if isinstance(s, A.KsmScan) else ("settle",)
                if real_zeros:
                    # only a scenario that may hold real zero pages cares about the knob
                    scan_knobs[k] = {"use_zero_pages": zero_pages_knob}
                    entry += ("use_zero_pages", zero_pages_knob)
                sig.append(entry)
            lines.append(f"{k} sync")
        else:  # pragma: no cover - the parser has no other actions
            raise AssertionError(type(s).__name__)

    header = [
        "ksmdiff-probe 1",
        f"salt {salt:016x}",
        f"procs {len(procs)}",
        f"regions {max(1, len(regions))}",
        f"stmts {len(lines)}",
    ]
    text = "\n".join(header + lines + ["end"]) + "\n"
    return Program(text, tuple(procs), tuple(regions), barriers, tuple(solo), tuple(sig), salt,
                   zero_merges, has_pins, quiet or unmerge_all, unmerge_all, scan_knobs)
