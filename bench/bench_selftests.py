#!/usr/bin/env python3
"""Benchmark: the kernel's own KSM selftests against their ports, on one lab kernel.

Builds ``tools/testing/selftests/mm/ksm_functional_tests.c`` and ``ksm_tests.c`` of the lab
kernel's own source as static binaries (gcc -static: the guest has no C library; the source
is Debian's ``linux-source-X.Y`` of the kernel's exact version, or ``--source TREE``;
``ksm_tests`` links Debian's static libnuma), then, round after round (medians of
``--rounds``, at least 3), alternating which goes first:

* the binaries in a lab guest (ksmdiff/lab/programs.py: run from the guest's RAM file
  system, every output line stamped with the guest's /proc/uptime, 10 ms resolution):
  ``ksm_functional_tests`` once (its cases timed from one ``# [RUN]`` line to the next)
  and ``ksm_tests`` once per ported mode, as run_vmtests.sh runs them;
* the ports, ``corpora/kselftest/``, in a lab guest of the same kernel through the lab
  runner that ``ksmdiff run --kernel lab:X`` uses (run.run_lab), each scenario's guest
  seconds taken by the driver (CLOCK_MONOTONIC: the reap before it, then the rest);
* ``python -m ksmdiff run corpora/kselftest --kernel lab:X`` itself, timed end to end.

Prints per case the original's and the port's seconds in the guest side by side, the sum
over the ported set, and end to end (qemu's start to the last result, boot included), with
the load average.  The selftests write ``run=2``: they run in the lab guest only.  Not a
timed test: run by hand, ``python3 bench/bench_selftests.py --kernel 6.12``.

Measured (Debian 6.12.118, medians of 3 rounds, load 12-16 on the 2-CPU build machine;
``--rounds 3 --breakdown``), seconds in the guest:

    ksm_functional_tests (9 cases, 2 MiB each)  22.2 original  against 4.5 ported (0.20x)
      e.g. test_unmerge 3.87 / 0.10, test_prctl_unmerge 4.09 / 0.10, test_prctl 0.02 / 0.04
    ksm_tests -M/-U/-Z (-t 1 too; 10 pages)       0.25-0.33 each against 0.33-0.54 (1.1-1.9x)
    every binary run / every port                 25.3 against 6.6 (0.26x)
    end to end (qemu's start to the last result)  44.4 against 25.4; the whole
                                                  'ksmdiff run corpora/kselftest --kernel lab:6.12' 28.3

(at load 6-9: 21.2 against 4.4, 0.21x; ksm_tests 0.09-0.21 against 0.29-0.37.)  The
functional tests' time is ksmd merging 512 pages per case at its default pace; a port has 64.
Where a ksm_tests port's ~0.35 s goes (--breakdown, its ten pages step by step): the probe
started on one page 0.05 s, the fill and madvise 0.10 s, a settle adds nothing measurable,
and ``ksm scan 2`` (the port's, for the test's two full scans) 0.31 s: the 0.2 s is ksmd's
sleep between the exact scans, 200 ms in the lab (the runner's 20 ms times the lab's TCG
scale), so that run=0 lands inside it.  Left as it is: a shorter sleep risks a scan more
than asked for on a loaded machine.  The ports of test_prctl (0.04 s) and the NUMA modes
(which the original skips here: one node) pay the probe's start.

On Debian 6.1.192 (its selftests/vm has ksm_tests only, whose -t is unknown there: the prctl
ports are unsupported, PR_SET_MEMORY_MERGE is 6.4), load 9-16: ksm_tests -M 0.30 / 0.31,
-U 0.07 / 0.44, -Z 0.08-0.09 / 0.39-0.43.

LTP's ksm01-ksm07 are not run: building them needs LTP's autotools build (configure makes
include/config.h and the make fragments; this machine has no autoconf/automake) of its
library, statically linked, with libltpnuma for ksm06; ksm02-ksm04 need cpuset and memory
cgroups in the guest and ksm06 two NUMA nodes; ksm01 at its real size (3 x 128 MB, every
byte checked after each of its merges) alone would take minutes per round under TCG.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ksmdiff.lab import guest, run, store  # noqa: E402
from ksmdiff.lab.programs import GuestProgram, ProgramRun, boot_programs  # noqa: E402
from ksmdiff.observe import OK  # noqa: E402
from ksmdiff.probe.build import cache_dir  # noqa: E402
from ksmdiff.scenario import find_scenarios, parse_file  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
CORPUS = HERE / "corpora" / "kselftest"
FUNCTIONAL = "ksm_functional_tests"

# (original case, port file): a functional case by its function, a ksm_tests run by its
# arguments (run_vmtests.sh's, and the -t 1 prctl variants)
FUNCTIONAL_CASES = [
    ("test_unmerge", "functional-unmerge"),
    ("test_unmerge_zero_pages", "functional-unmerge-zero-pages"),
    ("test_unmerge_discarded", "functional-unmerge-discarded"),
    ("test_unmerge_uffd_wp", "functional-unmerge-uffd-wp"),
    ("test_prot_none", "functional-prot-none"),
    ("test_prctl", "functional-prctl"),
    ("test_prctl_fork", "functional-prctl-fork"),
    ("test_prctl_fork_exec", "functional-prctl-fork-exec"),
    ("test_prctl_unmerge", "functional-prctl-unmerge"),
    ("test_fork_ksm_merging_page_count", "functional-fork-merging-page-count"),
]
KSM_TESTS_CASES = [
    (("-M", "-p", "10"), "ksm-tests-merge"),
    (("-M", "-p", "10", "-t", "1"), "ksm-tests-merge-prctl"),
    (("-U",), "ksm-tests-unmerge"),
    (("-U", "-t", "1"), "ksm-tests-unmerge-prctl"),
    (("-Z", "-p", "10", "-z", "0"), "ksm-tests-zero-pages-0"),
    (("-Z", "-p", "10", "-z", "1"), "ksm-tests-zero-pages-1"),
    (("-N", "-m", "0"), "ksm-tests-numa-merge-0"),
    (("-N", "-m", "1"), "ksm-tests-numa-merge-1"),
]

# what the build needs of a kernel tree (the selftests dir is mm/ from 6.3, vm/ before)
TREE_PARTS = ("tools/testing/selftests/mm/", "tools/testing/selftests/vm/",
              "tools/testing/selftests/kselftest", "tools/include/", "include/uapi/",
              "include/vdso/", "arch/x86/include/uapi/")


def selftests_home() -> Path:
    return cache_dir() / "selftests"


def apt_download(suite: str, spec: str, dest: Path) -> Path:
    """A package into ``dest`` with the lab's private apt root (the system's apt state is
    never touched)."""
    from ksmdiff.lab.fetch import apt_dir, apt_options, prepare_apt_root
    root = apt_dir(suite)
    if not (root / "state" / "lists").exists() or not any((root / "state" / "lists").iterdir()):
        prepare_apt_root(suite)
        subprocess.run(["apt-get", *apt_options(root), "update"], check=True,
                       capture_output=True)
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["apt-get", *apt_options(root), "download", spec], cwd=dest,
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"apt-get download {spec} ({suite}) failed:\n{r.stderr[-800:]}")
    name = spec.split("=")[0]
    debs = sorted(dest.glob(f"{name}_*.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1]


def debian_source_spec(k: store.KernelImage) -> tuple[str, str]:
    """(suite, package=version) of the kernel's own linux-source package."""
    from ksmdiff.lab.fetch import DISTROS, apt_dir, apt_options
    if k.name not in DISTROS:
        raise SystemExit(f"kernel {k.name} is no Debian kernel: give --source TREE")
    suite = DISTROS[k.name].suite
    pkg = f"linux-source-{k.version.major}.{k.version.minor}"
    r = subprocess.run(["apt-cache", *apt_options(apt_dir(suite)), "madison", pkg],
                       capture_output=True, text=True)
    for line in r.stdout.splitlines():
        ver = line.split("|")[1].strip() if line.count("|") >= 2 else ""
        if ver.startswith(f"{k.version}-"):
            return suite, f"{pkg}={ver}"
    raise SystemExit(f"no {pkg} of version {k.version} in {suite}: give --source TREE")


def kernel_tree(k: store.KernelImage, source: str | None) -> Path:
    """A tree with the parts the build needs: ``source``, or the kernel's Debian source
    package, unpacked (those parts only) into the cache once."""
    if source:
        return Path(source).expanduser()
    tree = selftests_home() / f"linux-{k.version}"
    if (tree / ".complete").exists():
        return tree
    suite, spec = debian_source_spec(k)
    deb = apt_download(suite, spec, selftests_home() / "debs")
    print(f"unpacking the selftests of {deb.name} ...", flush=True)
    tmp = tree.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fs = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=fs.stdout, mode="r|") as outer:
        for m in outer:
            if m.name.endswith(".tar.xz") and "/usr/src/linux-source" in m.name:
                inner_f = outer.extractfile(m)
                with tarfile.open(fileobj=inner_f, mode="r|xz") as inner:
                    for e in inner:
                        rel = e.name.split("/", 1)[1] if "/" in e.name else ""
                        if e.isfile() and rel.startswith(TREE_PARTS):
                            e.name = rel
                            inner.extract(e, tmp, filter="data")
                break
    fs.wait()
    (tmp / ".complete").write_text(deb.name + "\n")
    shutil.rmtree(tree, ignore_errors=True)
    os.replace(tmp, tree)
    return tree


def libnuma() -> Path:
    """Debian's libnuma-dev (numa.h, libnuma.a), unpacked into the cache."""
    d = selftests_home() / "libnuma"
    if not (d / "usr" / "lib" / "x86_64-linux-gnu" / "libnuma.a").exists():
        deb = apt_download("bookworm", "libnuma-dev", selftests_home() / "debs")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(d)], check=True)
    return d


# "selftests/mm: fix test_prctl_fork_exec failure" (2025): execv()'s argv needs its NULL;
# without it the static build's child fails execv and runs the rest of main() itself
# (test_prctl_unmerge twice, the case passing untested)
EXEC_ARGV = "{ prg_name, FORK_EXEC_CHILD_PRG_NAME }"
EXEC_ARGV_FIXED = "{ prg_name, FORK_EXEC_CHILD_PRG_NAME, NULL }"


def patched(src: Path, out: Path) -> Path:
    """``src``, or a copy in ``out`` with the upstream fix above (said when applied)."""
    text = src.read_text()
    if EXEC_ARGV not in text:
        return src
    copy = out / src.name
    copy.write_text(text.replace(EXEC_ARGV, EXEC_ARGV_FIXED))
    print(f"{src.name}: test_prctl_fork_exec's execv argv given its NULL (the upstream "
          "fix 'selftests/mm: fix test_prctl_fork_exec failure')", flush=True)
    return copy


def build(tree: Path, out: Path) -> dict[str, Path]:
    """The two selftests, static, as the selftests' Makefile builds them (-O2
    -U_FORTIFY_SOURCE, -lrt -lpthread -lm) against the tree's own uapi headers (what
    headers_install would give: __packed spelled out)."""
    mm = tree / "tools/testing/selftests/mm"
    if not mm.exists():
        mm = tree / "tools/testing/selftests/vm"
    numa = libnuma()
    out.mkdir(parents=True, exist_ok=True)
    cflags = ["-Wall", "-O2", "-static", "-U_FORTIFY_SOURCE",
              "-D__packed=__attribute__((packed))", "-I", str(tree),
              "-isystem", str(tree / "include/uapi"),
              "-isystem", str(tree / "arch/x86/include/uapi"),
              "-I", str(tree / "tools/include"), "-I", str(numa / "usr/include")]
    libs = ["-lrt", "-lpthread", "-lm"]
    helpers = [str(mm / f) for f in ("vm_util.c", "thp_settings.c") if (mm / f).exists()]
    exes = {}
    cflags += ["-iquote", str(mm)]       # a patched copy still finds "../kselftest.h"
    for name, extra in ((FUNCTIONAL, []),
                        ("ksm_tests", [str(numa / "usr/lib/x86_64-linux-gnu/libnuma.a")])):
        src = mm / f"{name}.c"
        if not src.exists():
            print(f"{src}: not in this tree, left out", flush=True)
            continue
        exe = out / name
        src = patched(src, out)
        r = subprocess.run(["nice", "-n", "10", "gcc", *cflags, "-o", str(exe), str(src),
                            *helpers, *extra, *libs], capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"building {name} failed:\n{r.stderr[-3000:]}")
        exes[name] = exe
    return exes


# ----------------------------------------------------------------------------- rounds

@dataclass
class Case:
    label: str                # the original: function or ksm_tests arguments
    port: str                 # the port's file stem
    original: list            # seconds per round (guest)
    outcome: set             # the original's results (ok / not ok / SKIP ...)
    ported: list              # seconds per round (guest: reap + rest)
    reap: list
    status: set               # the port's cell status


RESULT = re.compile(r"^(ok|not ok) \d+ ?(# SKIP|# XFAIL)?(.*)$")


def functional_cases(r: ProgramRun) -> dict[str, tuple[float, str]]:
    """Each case of one ksm_functional_tests run: seconds from its ``# [RUN]`` line to the
    next case's (the last: to the program's end), and its TAP result."""
    starts: list[tuple[str, float]] = []
    result: dict[str, str] = {}
    for u, line in r.lines:
        m = re.match(r"# \[RUN\] (\w+)", line)
        if m and m.group(1) not in dict(starts):
            starts.append((m.group(1), u))
            continue
        t = RESULT.match(line)
        if t and starts and starts[-1][0] not in result:
            result[starts[-1][0]] = ("skip" if t.group(2) == "# SKIP" else t.group(1)) + \
                (f": {t.group(3).strip()}" if t.group(2) else "")
    out = {}
    for i, (name, u) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else r.end
        out[name] = (end - u, result.get(name, "no result"))
    return out


def program_outcome(r: ProgramRun) -> str:
    for _u, line in r.lines:
        t = RESULT.match(line)
        if t:
            return ("skip" if t.group(2) == "# SKIP" else t.group(1))
    last = r.lines[-1][1].strip() if r.lines else ""
    return f"exit {r.status}" + (f": {last[:40]}" if last else "")


def originals_round(k, exes) -> tuple[dict[str, tuple[float, str]], dict]:
    progs = []
    if FUNCTIONAL in exes:
        progs.append(GuestProgram(FUNCTIONAL, exes[FUNCTIONAL]))
    if "ksm_tests" in exes:
        for i, (args, _port) in enumerate(KSM_TESTS_CASES):
            # one name per run: the guest's copy of the same binary
            progs.append(GuestProgram(f"ksm_tests.{i}", exes["ksm_tests"], args))
    res = boot_programs(k, progs)
    if res.reason:
        raise SystemExit(f"the selftests' boot failed: {res.reason}")
    cases: dict[str, tuple[float, str]] = {}
    whole = {}
    for r in res.runs:
        whole[r.name] = r.seconds
        if r.name == FUNCTIONAL:
            cases.update(functional_cases(r))
        else:
            args, _port = KSM_TESTS_CASES[int(r.name.split(".")[1])]
            cases[" ".join(args)] = (r.seconds, program_outcome(r))
    return cases, {"whole": whole, "e2e": res.timings.get("done", float("nan")),
                   "started": res.timings.get("started", float("nan"))}


def ports_round(k, scenarios, stems) -> tuple[dict[str, tuple[float, float, str]], dict]:
    boots = []
    cells = run.run_lab(scenarios, [f"lab:{k.name}"], on_boot=boots.append)[f"lab:{k.name}"]
    if not boots or boots[0].result is None:
        raise SystemExit(f"the ports' boot failed: {boots[0].reason if boots else 'no boot'}")
    b = boots[0]
    secs = b.result.get("guest_seconds", {})
    out = {}
    for i, (stem, cell) in enumerate(zip(stems, cells)):
        reap, rest = secs.get(i, (float("nan"), float("nan")))
        out[stem] = (reap + rest, reap,
                     str(cell.status) + (f" ({cell.reason[:60]})" if cell.status != OK
                                         and cell.reason else ""))
    return out, {"e2e": b.timings.get("result", float("nan")),
                 "started": b.timings.get("agent", float("nan")),
                 "passes": sum(1 for x in b.timings if x.startswith("pass"))}


# Where a port's guest time goes: the same ten pages as ksm_tests -M, stopped at each step
BREAKDOWN = {
    "probe floor (mmap 1 page)": "process A\nA: mmap buf 1\n",
    "+ fill 10 pages, madvise": "process A\nA: mmap map 10\nA: fill map 0x2a\n"
                                "A: madvise map mergeable\n",
    "+ ksm settle": "process A\nA: mmap map 10\nA: fill map 0x2a\n"
                    "A: madvise map mergeable\nksm settle\nexpect counter pages_sharing +9\n",
    "+ ksm scan 2 (the port's)": "process A\nA: mmap map 10\nA: fill map 0x2a\n"
                                 "A: madvise map mergeable\nksm scan 2\n"
                                 "expect counter pages_sharing +9\n",
}


def breakdown_round(k) -> dict[str, list[float]]:
    """Each step of BREAKDOWN three times in one boot: the scenario's guest seconds (the
    reap before it left out)."""
    from ksmdiff.scenario import parse
    # a first scenario, not counted: the boot's first probe pays for TCG translating it
    names = ["warm-up"]
    scenarios = [parse('scenario "bench warm-up"\nprocess A\nA: mmap buf 1\n')]
    for name, body in BREAKDOWN.items():
        for i in range(3):
            names.append(name)
            scenarios.append(parse(f'scenario "bench step {len(names)}"\n{body}'))
    boots = []
    cells = run.run_lab(scenarios, [f"lab:{k.name}"], on_boot=boots.append)[f"lab:{k.name}"]
    if not boots or boots[0].result is None:
        raise SystemExit(f"the breakdown's boot failed: {boots[0].reason if boots else ''}")
    secs = boots[0].result.get("guest_seconds", {})
    out: dict[str, list[float]] = {n: [] for n in BREAKDOWN}
    for i, (name, cell) in enumerate(zip(names, cells)):
        if i == 0:
            continue
        if cell.status != OK:
            raise SystemExit(f"breakdown step {name!r}: {cell.status} {cell.reason}")
        out[name].append(secs.get(i, (0.0, float("nan")))[1])
    return out


def cli_round(k) -> tuple[float, int]:
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "ksmdiff", "run", str(CORPUS), "--kernel",
                        f"lab:{k.name}", "-q"], capture_output=True, text=True, cwd=HERE,
                       env={**os.environ, "PYTHONPATH": str(HERE)})
    return time.monotonic() - t, r.returncode


def med(xs) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def fmt(x: float) -> str:
    return f"{x:7.2f}" if x == x else "      -"


def ratio(a: float, b: float) -> str:
    return f"{a / b:6.2f}" if a == a and b == b and b > 0 else "     -"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="6.12", help="lab kernel (default 6.12)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--source", metavar="TREE",
                    help="kernel tree to build the selftests from (default: the Debian "
                         "kernel's own linux-source package, unpacked into the cache)")
    ap.add_argument("--no-cli", action="store_true",
                    help="leave out the end-to-end 'ksmdiff run' of the ports")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time a port's steps (probe start, fill, settle, scan 2), "
                         "one more boot per round")
    args = ap.parse_args()
    if args.rounds < 3:
        ap.error("--rounds: at least 3 (medians)")
    why = guest.qemu_available()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return 3
    k = store.get_kernel(args.kernel)
    if k is None:
        print(f"no lab kernel {args.kernel}: {run.missing_reason(args.kernel)}", file=sys.stderr)
        return 3
    tree = kernel_tree(k, args.source)
    exes = build(tree, selftests_home() / f"bin-{k.name}-{k.version}")
    paths = find_scenarios([str(CORPUS)])
    scenarios = [parse_file(p) for p in paths]
    stems = [Path(p).stem for p in paths]
    print(f"kernel {k.name} ({k.release}, {k.version}); selftests from {tree}; "
          f"{len(scenarios)} ports; {os.cpu_count()} CPUs", flush=True)
    loads = [os.getloadavg()[0]]
    cases: dict[str, Case] = {}
    for label, port in FUNCTIONAL_CASES:
        cases[label] = Case(label, port, [], set(), [], [], set())
    for a, port in KSM_TESTS_CASES:
        cases[" ".join(a)] = Case("ksm_tests " + " ".join(a), port, [], set(), [], [], set())
    e2e = {"orig": [], "port": [], "cli": []}
    start = {"orig": [], "port": []}
    whole_orig, whole_port = [], []
    steps: dict[str, list[float]] = {}
    for r in range(args.rounds):
        order = ("orig", "port") if r % 2 == 0 else ("port", "orig")
        for which in order:
            if which == "orig":
                got, t = originals_round(k, exes)
                for key, (s, outcome) in got.items():
                    if key in cases:
                        cases[key].original.append(s)
                        cases[key].outcome.add(outcome)
                whole_orig.append(sum(t["whole"].values()))
            else:
                got, t = ports_round(k, scenarios, stems)
                for c in cases.values():
                    if c.port in got:
                        s, reap, status = got[c.port]
                        c.ported.append(s)
                        c.reap.append(reap)
                        c.status.add(str(status))
                whole_port.append(sum(v[0] for v in got.values() if v[0] == v[0]))
            e2e[which].append(t["e2e"])
            start[which].append(t["started"])
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1} {which}: end to end {t['e2e']:.1f} s, "
                  f"load {loads[-1]:.1f}", flush=True)
        if args.breakdown:
            for name, v in breakdown_round(k).items():
                steps.setdefault(name, []).extend(v)
            loads.append(os.getloadavg()[0])
        if not args.no_cli:
            took, rc = cli_round(k)
            e2e["cli"].append(took)
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1} ksmdiff run: {took:.1f} s (exit {rc}), "
                  f"load {loads[-1]:.1f}", flush=True)

    print(f"\nkernel {k.name} ({k.version}), medians of {args.rounds} rounds, seconds in the "
          "guest (original: ksm_functional_tests cases from one [RUN] line to the next, "
          "10 ms resolution; port: the driver's reap before the scenario + the scenario)")
    print(f"{'case':<40} {'original':>8} {'port':>7} {'reap':>7} {'port/orig':>9}  "
          f"{'original result':<24} port")
    for c in cases.values():
        o, p = med(c.original), med(c.ported)
        print(f"{c.label:<40} {fmt(o):>8} {fmt(p)} {fmt(med(c.reap))} {ratio(p, o):>9}  "
              f"{','.join(sorted(c.outcome)) or 'not in this source':<24} "
              f"{','.join(sorted(c.status)) or 'no port'}")
    o, p = med(whole_orig), med(whole_port)
    print(f"{'all (binary runs / ports run)':<40} {fmt(o):>8} {fmt(p)} {'':7} {ratio(p, o):>9}")
    both = [(med(c.original), med(c.ported)) for c in cases.values()
            if med(c.original) == med(c.original) and med(c.ported) == med(c.ported)
            and all(x == "ok" or x.startswith("exit 0") for x in c.outcome)]
    o, p = sum(x for x, _ in both), sum(y for _, y in both)
    print(f"{f'the {len(both)} cases both passed (sums)':<40} {fmt(o):>8} {fmt(p)} {'':7} "
          f"{ratio(p, o):>9}")
    print("\nend to end, qemu's start to the last result (boot included), medians:")
    print(f"  selftest binaries  {med(e2e['orig']):6.1f} s  (their script started at "
          f"{med(start['orig']):.1f} s)")
    print(f"  ports (run_lab)    {med(e2e['port']):6.1f} s  (the driver's first pass began at "
          f"{med(start['port']):.1f} s)")
    if e2e["cli"]:
        print(f"  ksmdiff run corpora/kselftest --kernel lab:{k.name}: {med(e2e['cli']):.1f} s "
              "(the whole command)")
    if steps:
        print("\nwhere a port's time goes (ksm_tests -M's ten pages, each step's scenario "
              "without its reap, median of 3 per round):")
        for name, v in steps.items():
            print(f"  {name:<28} {med(v):6.2f} s")
    print(f"\nload average (1 min) over the run: {min(loads):.1f}-{max(loads):.1f} "
          f"on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
