"""Semantic checks of a scenario: a symbolic walk over processes, regions and pages.

Everything a kernel run would trip over (unknown process, page out of range, a write to an
unmapped or read-only page, fork to an existing name, ...) is found here, before anything
runs, and reported with file:line:column.
"""

from __future__ import annotations

from ksmdiff.errors import InputError, Location
from ksmdiff.scenario import ast as A
from ksmdiff.scenario.layout import Layout, Proc as _Proc, Region as _Region
from ksmdiff.versions import COUNTERS, FEATURES, PROC_COUNTERS

# Limits that keep a scenario small enough for the probe and the prover.  The page limits
# hold LTP's ksm01 at its size: three processes of 128 MB (3 x 32,768 pages of 4 KiB).
MAX_REGION_PAGES = 1 << 17
MAX_TOTAL_PAGES = 1 << 17
MAX_PROCESSES = 16
MAX_STATEMENTS = 10_000
MAX_SCANS = 100
MAX_PINS_PER_PAGE = 8
MAX_MAPCOUNT = 1 << 16
# ``mmap R N node K``: K is a bit of the probe's one-word nodemask for mbind(2)
MAX_NODE = 63
# ``P: cgroup G memory-max PAGES``: groups per scenario, and the room a limit must leave
# above every page the scenario maps (the processes' page tables and the probe's own
# pages are charged too): the model has no memory pressure, so the limit must not bite
MAX_CGROUPS = 8
CGROUP_HEADROOM_PAGES = 1024
# What the sysfs stores accept (mm/ksm.c): use_zero_pages_store() kstrtobool;
# max_page_sharing_store() (>= 4.13) kstrtoint and -EINVAL below 2, so 2..INT_MAX
# (LTP's ksm01 sets it to the number of pages it maps).
INT_MAX = (1 << 31) - 1
KNOB_RANGES = {"use_zero_pages": (0, 1), "merge_across_nodes": (0, 1), "smart_scan": (0, 1),
               "max_page_sharing": (2, INT_MAX)}


def implied_features(scn: A.Scenario) -> tuple[str, ...]:
    """``requires`` plus what the statements need (pageout needs swap, ...), in FEATURES order.

    An expect on a counter implies nothing: on a kernel without the counter (or, for
    stable_nodes_removed, without the ksm tracepoints) that expect is skipped, not the
    whole scenario."""
    need = set(scn.requires)
    for s in scn.statements:
        if isinstance(s, (A.Prctl, A.ExpectPrctl)):
            need.add("prctl-merge")
        elif isinstance(s, A.Madvise) and s.advice == "pageout":
            need.add("swap")
        elif isinstance(s, A.KsmSet) and s.knob == "use_zero_pages" and s.value:
            need.add("zero-pages")
        elif isinstance(s, A.UffdWp):
            need.add("uffd-wp")
        elif isinstance(s, A.KsmSet) and s.knob == "smart_scan":
            need.add("smart-scan")      # (the knob file itself is 6.7+)
    return tuple(f for f in FEATURES if f in need)


def placement_nodes(scn: A.Scenario) -> frozenset[int]:
    """The NUMA nodes ``scn`` places pages on (``mmap R N node K``, ``mempolicy bind K``,
    ``cgroup G mems K``): a machine that has no memory on one of them cannot run it
    (*unsupported*, a property of the machine, not of the kernel version, so no FEATURES
    entry)."""
    out = set()
    for s in scn.statements:
        if isinstance(s, (A.Mmap, A.Mempolicy)) and s.node is not None:
            out.add(s.node)
        elif isinstance(s, A.Cgroup) and s.mems is not None:
            out.add(s.mems)
    return frozenset(out)


def cgroup_controllers(scn: A.Scenario) -> frozenset[str]:
    """The cgroup v2 controllers ``scn`` needs enabled below the hierarchy's root (cgroup
    statements: memory for memory-max).  A machine without them cannot run it
    (*unsupported*, a property of the machine like NUMA nodes)."""
    out = set()
    for s in scn.statements:
        if isinstance(s, A.Cgroup) and s.memory_max is not None:
            out.add("memory")
        if isinstance(s, A.Cgroup) and s.mems is not None:
            out.add("cpuset")
    return frozenset(out)


def uses_cgroups(scn: A.Scenario) -> bool:
    return any(isinstance(s, A.Cgroup) for s in scn.statements)


def validate(scn: A.Scenario) -> A.Scenario:
    """Raise :class:`InputError` at the first semantic error; return ``scn`` unchanged."""
    _Checker(scn).run()
    return scn


class _Checker:
    def __init__(self, scn: A.Scenario):
        self.scn = scn
        self.layout = Layout()
        self.procs = self.layout.procs        # the layout before the statement being checked
        self.locked: set[tuple[str, str, int]] = set()   # VM_LOCKED pages (not inherited)
        self.uffd: set[tuple[str, str, int]] = set()     # pages under uffd-wp
        self.cgroups: dict[str, A.Cgroup] = {}            # group -> the statement creating it
        # per process: its group's cpuset node and its task policy's node (None: none);
        # a fork's child inherits both
        self.cpuset: dict[str, int | None] = {}
        self.policy: dict[str, int | None] = {}

    def err(self, pos: A.Pos, msg: str, expected: str | None = None) -> InputError:
        return InputError(msg, Location(self.scn.source, pos.line or 1, pos.column or 1),
                          expected)

    def run(self) -> None:
        scn = self.scn
        if "\n" in scn.title or not scn.title.strip():
            raise self.err(scn.title_pos, "the title must be a non-empty single line")
        for name in scn.requires:
            if name not in FEATURES:
                raise self.err(scn.title_pos, f"unknown feature {name!r}", " or ".join(FEATURES))
        if len(scn.statements) > MAX_STATEMENTS:
            raise self.err(scn.statements[MAX_STATEMENTS].pos,
                           f"more than {MAX_STATEMENTS} statements")
        self.procs[scn.initial] = _Proc()
        for s in scn.statements:
            if self.uffd:
                self.check_uffd(s)
            getattr(self, "do_" + type(s).__name__)(s)
            if isinstance(s, A.Fork):
                self.cpuset[s.child] = self.cpuset.get(s.proc)
                self.policy[s.child] = self.policy.get(s.proc)
            self.layout.apply(s)
        for g, s in self.cgroups.items():
            need = self.layout.total_pages + CGROUP_HEADROOM_PAGES
            if s.memory_max is not None and s.memory_max < need:
                raise self.err(s.pos, f"memory-max {s.memory_max} of cgroup {g} could be "
                                      "reached: the model has no memory pressure",
                               f"at least {need} pages (the {self.layout.total_pages} the "
                               f"scenario maps + {CGROUP_HEADROOM_PAGES})")

    # -- helpers
    def proc(self, name: str, pos: A.Pos, *, alive: bool = True) -> _Proc:
        p = self.procs.get(name)
        if p is None:
            known = ", ".join(sorted(self.procs)) or "none"
            raise self.err(pos, f"unknown process {name!r}", f"one of: {known}")
        if alive and not p.alive:
            raise self.err(pos, f"process {name} has exited")
        return p

    def region(self, p: _Proc, pname: str, target: A.Target, pos: A.Pos) -> tuple[_Region, range]:
        r = p.regions.get(target.region)
        if r is None:
            known = ", ".join(sorted(p.regions)) or "none"
            raise self.err(pos, f"process {pname} has no region {target.region!r}",
                           f"a region mapped with 'mmap' (known: {known})")
        if target.hi is not None and target.hi >= r.npages:
            raise self.err(pos, f"page {target.hi} is out of range for {target.region}, "
                                f"which has {r.npages} pages",
                           f"an index 0..{r.npages - 1}")
        return r, target.indices(r.npages)

    def mapped_pages(self, s, verb: str, *, writable: bool = False) -> tuple[_Region, range]:
        p = self.proc(s.proc, s.pos)
        r, idx = self.region(p, s.proc, s.target, s.pos)
        for i in idx:
            if not r.mapped[i]:
                raise self.err(s.pos, f"{verb} of an unmapped page {s.target.region}[{i}]",
                               "a page that is still mapped")
            if writable and r.prot[i] != "rw":
                raise self.err(s.pos, f"{verb} of a read-only page {s.target.region}[{i}] "
                                      "would fault (SIGSEGV)", "mprotect ... rw first")
        return r, idx

    def check_uffd(self, s: A.Statement) -> None:
        """What may follow ``uffd-wp``: no handler ever resolves a uffd-wp fault, so no
        write may reach those pages; ksmd, fork, pageout, dontneed and mprotect there are
        not modelled."""
        if isinstance(s, (A.KsmSettle, A.KsmScan, A.KsmUnmergeAll)):
            raise self.err(s.pos, "ksmd running over uffd-wp pages is not modelled",
                           "munmap the uffd-wp pages (or exit) first")
        if isinstance(s, A.Fork) and any(k[0] == s.proc for k in self.uffd):
            raise self.err(s.pos, f"fork of {s.proc}, which has uffd-wp pages, is not modelled",
                           "munmap the uffd-wp pages first")
        target = getattr(s, "target", None)
        if target is None or not hasattr(s, "proc"):
            return
        r = self.procs.get(s.proc, _Proc()).regions.get(target.region)
        if r is None or (target.hi is not None and target.hi >= r.npages):
            return                        # the statement's own check reports it
        hit = [i for i in target.indices(r.npages) if (s.proc, target.region, i) in self.uffd]
        if not hit:
            return
        page = f"{target.region}[{hit[0]}]"
        if isinstance(s, (A.Fill, A.Write, A.ForceWrite, A.Mlock)):
            raise self.err(s.pos, f"a write to the uffd-wp page {page} would wait for a "
                                  "userfaultfd handler, and none runs",
                           "no write to a uffd-wp page (munmap it first)")
        if isinstance(s, A.Mprotect) or (isinstance(s, A.Madvise)
                                         and s.advice in ("pageout", "dontneed")):
            raise self.err(s.pos, f"{type(s).__name__.lower()} of the uffd-wp page {page} "
                                  "is not modelled", "munmap it first")

    # -- actions
    def do_UffdWp(self, s: A.UffdWp) -> None:
        _r, idx = self.mapped_pages(s, "uffd-wp", writable=True)
        for i in idx:
            if (s.proc, s.target.region, i) in self.locked:
                raise self.err(s.pos, "uffd-wp of an mlocked page is not modelled",
                               "munlock it first")
            self.uffd.add((s.proc, s.target.region, i))

    def do_Mmap(self, s: A.Mmap) -> None:
        p = self.proc(s.proc, s.pos)
        old = p.regions.get(s.region)
        if old is not None and any(old.mapped):
            raise self.err(s.pos, f"region {s.region!r} of {s.proc} is already mapped",
                           "a new region name, or munmap the old one first")
        if not 1 <= s.npages <= MAX_REGION_PAGES:
            raise self.err(s.pos, f"mmap of {s.npages} pages",
                           f"1..{MAX_REGION_PAGES} pages")
        if self.layout.total_pages + s.npages > MAX_TOTAL_PAGES:
            raise self.err(s.pos, f"the scenario maps more than {MAX_TOTAL_PAGES} pages in all")
        if s.node is not None and not 0 <= s.node <= MAX_NODE:
            raise self.err(s.pos, f"node {s.node} is out of range", f"a node 0..{MAX_NODE}")
        mems = self.cpuset.get(s.proc)
        if s.node is not None and mems is not None and s.node != mems:
            # mbind(): the nodes must meet cpuset_current_mems_allowed, else -EINVAL
            raise self.err(s.pos, f"node {s.node} is outside {s.proc}'s cpuset (mems {mems}): "
                                  "mbind would fail (EINVAL)", f"node {mems}")

    def do_Fill(self, s: A.Fill) -> None:
        self.mapped_pages(s, "fill", writable=True)

    def do_Write(self, s: A.Write) -> None:
        self.mapped_pages(s, "write", writable=True)

    def do_Read(self, s: A.Read) -> None:
        r, idx = self.mapped_pages(s, "read")
        for i in idx:
            if r.prot[i] == "none":
                raise self.err(s.pos, f"read of a PROT_NONE page {s.target.region}[{i}] "
                                      "would fault (SIGSEGV)", "mprotect ... ro or rw first")

    def do_ForceWrite(self, s: A.ForceWrite) -> None:
        # FOLL_FORCE: any protection of a private mapping
        self.mapped_pages(s, "force-write")

    def do_Madvise(self, s: A.Madvise) -> None:
        _r, idx = self.mapped_pages(s, f"madvise {s.advice}")
        if s.advice in ("pageout", "dontneed") and any(
                (s.proc, s.target.region, i) in self.locked for i in idx):
            # madvise_pageout/madvise_dontneed: !can_madv_lru_vma(VM_LOCKED) -> -EINVAL
            raise self.err(s.pos, f"madvise {s.advice} of an mlocked page fails (EINVAL)",
                           "munlock it first")

    def do_Mprotect(self, s: A.Mprotect) -> None:
        _r, idx = self.mapped_pages(s, "mprotect")
        if s.prot == "none" and any((s.proc, s.target.region, i) in self.locked for i in idx):
            raise self.err(s.pos, "mprotect none of an mlocked page is not modelled",
                           "munlock it first")

    def do_Mlock(self, s: A.Mlock) -> None:
        r, idx = self.mapped_pages(s, "mlock")
        for i in idx:
            if r.prot[i] == "none":
                raise self.err(s.pos, f"mlock of a PROT_NONE page {s.target.region}[{i}] "
                                      "is not modelled", "mprotect ... ro or rw first")
            self.locked.add((s.proc, s.target.region, i))

    def do_Munlock(self, s: A.Munlock) -> None:
        _r, idx = self.mapped_pages(s, "munlock")
        for i in idx:
            self.locked.discard((s.proc, s.target.region, i))

    def do_Munmap(self, s: A.Munmap) -> None:
        # The one munmap rule (model and probe follow it too): munmap unmaps the pages of
        # the range that are still mapped and leaves pages already unmapped alone, so
        # "munmap buf" after "munmap buf[1]" is valid and means the rest of buf.  A hole
        # belongs to its region for good: no other region's mmap ever lands in it (the probe
        # keeps it reserved), so the statement can never reach another region's page.
        p = self.proc(s.proc, s.pos)
        _r, idx = self.region(p, s.proc, s.target, s.pos)
        for i in idx:
            self.locked.discard((s.proc, s.target.region, i))
            self.uffd.discard((s.proc, s.target.region, i))

    def do_Fork(self, s: A.Fork) -> None:
        p = self.proc(s.proc, s.pos)
        if s.child in self.layout.names:
            raise self.err(s.pos, f"fork to an existing process name {s.child!r}",
                           "a new process name")
        if len(self.procs) >= MAX_PROCESSES:
            raise self.err(s.pos, f"more than {MAX_PROCESSES} processes")
        if self.layout.total_pages + sum(r.npages for r in p.regions.values()) > MAX_TOTAL_PAGES:
            raise self.err(s.pos, f"the scenario maps more than {MAX_TOTAL_PAGES} pages in all")

    def do_Exit(self, s: A.Exit) -> None:
        self.proc(s.proc, s.pos)
        self.uffd = {k for k in self.uffd if k[0] != s.proc}

    def do_Exec(self, s: A.Exec) -> None:
        p = self.proc(s.proc, s.pos)
        held = sorted(k for k, n in p.pins.items() if n)
        if held:
            # a pin is a pipe holding the page (vmsplice): the pipe would outlive the mm
            region, i = held[0]
            raise self.err(s.pos, f"exec while {s.proc} still pins {region}[{i}]",
                           "unpin every page before exec")
        for key in [k for k in self.locked if k[0] == s.proc]:
            self.locked.discard(key)      # VM_LOCKED goes with the old mm
        self.uffd = {k for k in self.uffd if k[0] != s.proc}

    def do_Pin(self, s: A.Pin) -> None:
        p = self.proc(s.proc, s.pos)
        _r, idx = self.mapped_pages(s, "pin")
        for i in idx:
            key = (s.target.region, i)
            if p.pins.get(key, 0) >= MAX_PINS_PER_PAGE:
                raise self.err(s.pos, f"more than {MAX_PINS_PER_PAGE} pins on one page")

    def do_Unpin(self, s: A.Unpin) -> None:
        p = self.proc(s.proc, s.pos)
        _r, idx = self.region(p, s.proc, s.target, s.pos)
        for i in idx:
            key = (s.target.region, i)
            if not p.pins.get(key):
                raise self.err(s.pos, f"unpin of {s.target.region}[{i}], which {s.proc} has "
                                      "not pinned", "a page pinned with 'pin'")

    def do_Prctl(self, s: A.Prctl) -> None:
        self.proc(s.proc, s.pos)

    def do_Cgroup(self, s: A.Cgroup) -> None:
        p = self.proc(s.proc, s.pos)
        if s.group not in self.cgroups:
            if len(self.cgroups) >= MAX_CGROUPS:
                raise self.err(s.pos, f"more than {MAX_CGROUPS} cgroups")
            if s.memory_max is not None and s.memory_max < 1:
                raise self.err(s.pos, "memory-max 0", "at least 1 page")
            if s.mems is not None and not 0 <= s.mems <= MAX_NODE:
                raise self.err(s.pos, f"node {s.mems} is out of range", f"a node 0..{MAX_NODE}")
            self.cgroups[s.group] = s
        elif s.memory_max is not None or s.mems is not None:
            first = self.cgroups[s.group].pos.line
            raise self.err(s.pos, f"cgroup {s.group} was created on line {first}: its "
                                  "memory-max and mems are set there only",
                           f"'{s.proc}: cgroup {s.group}' (a move only)")
        mems = self.cgroups[s.group].mems
        if mems is not None:
            mapped = sorted(n for n, r in p.regions.items() if any(r.mapped))
            if mapped:
                # cgroup v2 cpusets migrate the pages of a task that enters them
                # (cpuset_attach(), memory_migrate): not modelled
                raise self.err(s.pos, f"{s.proc} enters a cpuset while it maps {mapped[0]} "
                                      "(the kernel would migrate its pages: not modelled)",
                               "a move before the process maps a region")
            pol = self.policy.get(s.proc)
            if pol is not None and pol != mems:
                # (mpol_rebind_task() would remap the policy to the cpuset's nodes)
                raise self.err(s.pos, f"{s.proc}'s mempolicy binds node {pol}, outside the "
                                      f"cpuset's mems {mems}", f"mempolicy bind {mems}")
        self.cpuset[s.proc] = mems

    def do_Mempolicy(self, s: A.Mempolicy) -> None:
        self.proc(s.proc, s.pos)
        if s.node is not None:
            if not 0 <= s.node <= MAX_NODE:
                raise self.err(s.pos, f"node {s.node} is out of range", f"a node 0..{MAX_NODE}")
            mems = self.cpuset.get(s.proc)
            if mems is not None and s.node != mems:
                # set_mempolicy(): the nodes must meet the cpuset's mems, else -EINVAL
                raise self.err(s.pos, f"node {s.node} is outside {s.proc}'s cpuset (mems "
                                      f"{mems}): set_mempolicy would fail (EINVAL)",
                               f"mempolicy bind {mems}")
        self.policy[s.proc] = s.node

    def do_KsmSettle(self, s: A.KsmSettle) -> None:
        pass

    def do_KsmScan(self, s: A.KsmScan) -> None:
        if not 1 <= s.scans <= MAX_SCANS:
            raise self.err(s.pos, f"ksm scan {s.scans}", f"1..{MAX_SCANS} scans")

    def do_KsmUnmergeAll(self, s: A.KsmUnmergeAll) -> None:
        # every kernel has run=2; on the host the runner refuses it without --allow-global
        # (it unmerges every KSM page of the machine)
        pass

    def do_KsmSet(self, s: A.KsmSet) -> None:
        lo, hi = KNOB_RANGES[s.knob]
        if not lo <= s.value <= hi:
            raise self.err(s.pos, f"{s.knob} {s.value} is out of range", f"{lo}..{hi}")

    # -- expectations
    def do_ExpectPage(self, s: A.ExpectPage) -> None:
        p = self.proc(s.proc, s.pos)
        r, idx = self.region(p, s.proc, s.target, s.pos)
        pred = s.predicate
        if isinstance(pred, A.Flag) and pred.name in ("reused", "copied"):
            for i in idx:
                if not r.faulted[i]:
                    raise self.err(s.pos, f"'{pred.name}' of {s.target.region}[{i}], which no "
                                          "read, write or fill has touched since it was mapped",
                                   "a page touched by an earlier read, write or fill")
        if isinstance(pred, A.Mapcount) and pred.count > MAX_MAPCOUNT:
            raise self.err(s.pos, f"mapcount {pred.count} is out of range", f"0..{MAX_MAPCOUNT}")
        if isinstance(pred, A.SameFrame):
            p2 = self.proc(pred.proc, s.pos)
            _r2, idx2 = self.region(p2, pred.proc, pred.target, s.pos)
            if len(idx2) != 1 and len(idx2) != len(idx):
                raise self.err(s.pos, f"same-frame compares {len(idx)} pages with {len(idx2)}",
                               "one page, or as many pages as the left side")

    def do_ExpectPrctl(self, s: A.ExpectPrctl) -> None:
        self.proc(s.proc, s.pos)

    def do_ExpectCounter(self, s: A.ExpectCounter) -> None:
        if s.absolute and s.proc is None:
            # a global counter's value is the machine's, not the scenario's
            raise self.err(s.pos, f"'={s.delta}' is a value: only a per-process counter has "
                                  "one a scenario can expect",
                           f"expect counter {s.counter} +N, or expect counter PROCESS NAME =N")
        if s.proc is not None:
            # a per-process counter: /proc/PID/ksm_stat of a live process, the change since
            # that process was created
            self.proc(s.proc, s.pos)
            if s.counter not in PROC_COUNTERS:
                raise self.err(s.pos, f"unknown per-process counter {s.counter!r}",
                               " or ".join(PROC_COUNTERS))
            return
        if s.counter not in COUNTERS:
            hint = (f" (a per-process counter: expect counter PROCESS {s.counter} ...)"
                    if s.counter in PROC_COUNTERS and s.counter not in COUNTERS else "")
            raise self.err(s.pos, f"unknown counter {s.counter!r}{hint}",
                           " or ".join(COUNTERS))
