"""``ksmdiff generate``, ``ksmdiff reduce`` and ``ksmdiff fuzz`` (registered by ksmdiff/cli.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ksmdiff.errors import UsageError
from ksmdiff.status import RunStatus
from ksmdiff.versions import Era, KernelVersion

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_ENV = 0, 1, 2, 3


def _era_of(text: str) -> Era:
    try:
        return Era.of(KernelVersion.parse(text))
    except ValueError as e:
        raise UsageError(f"--kernel {text}: {e}") from None


# ----------------------------------------------------------------------------- generate

def cmd_generate(args) -> int:
    from ksmdiff.gen.generate import file_name, generate
    from ksmdiff.gen.confirm import Reach
    if bool(args.kernel) == bool(args.all_eras):
        raise UsageError("give --kernel VERSION or --all-eras")
    if args.per_label < 1 or args.bound < 1:
        raise UsageError("--per-label and --bound take a positive number")
    eras = list(Era) if args.all_eras else list(dict.fromkeys(_era_of(k) for k in args.kernel))
    model = None
    if args.mutant:
        from ksmdiff.kspec import load_spec
        spec = load_spec()
        if args.mutant not in spec.mutants:
            raise UsageError(f"--mutant {args.mutant}: one of {', '.join(sorted(spec.mutants))}")
        model = spec.mutants[args.mutant]
        _refuse_unobservable(model, "--mutant")
    constraints = _constraints_of(args)
    from ksmdiff.internal.progress import Progress
    with Progress(quiet=args.quiet) as prog:
        prog.stage(f"generate: searching {len(eras)} era(s) "
                   f"({', '.join(e.value for e in eras)})", total=len(eras))
        done = [0]

        def era_done(msg):
            done[0] += 1
            prog.stage(msg, total=len(eras), done=done[0])
        gen = generate(eras, per_label=args.per_label, seed=args.seed, bound=args.bound,
                       beam=args.beam, model=model, progress=era_done,
                       constraints=constraints)
    out = Path(args.out)
    for g in gen.scenarios:
        path = out / file_name(g)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(g.text)
    for rep in gen.labels:
        tail = (f"{rep.scenarios} scenario(s)" + (f"; {rep.why}" if rep.why else "")
                if rep.status is Reach.REACHED else rep.why)
        print(f"{rep.era.value:10} {rep.label:24} {rep.status.value:12} {tail}")
    print(f"{len(gen.scenarios)} scenarios in {out} ({gen.seconds:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "seed": args.seed, "bound": args.bound, "per_label": args.per_label,
            "seconds": round(gen.seconds, 2),
            "constraints": [c.text for c in constraints or ()],
            "labels": [r.to_json() for r in gen.labels],
            "scenarios": [{"file": file_name(g), "era": g.era.value, "label": g.label,
                           "hash": g.hash} for g in gen.scenarios]}, indent=1))
    if constraints and not gen.scenarios:
        return EXIT_FAIL              # no era satisfies the constraints (each says why)
    if args.replay:
        return run_three_way_cli([str(out)], args.replay, quiet=args.quiet, json_out=None,
                                 spec_model=model)
    return EXIT_OK


def _constraints_of(args):
    """The constraints of --constraints FILE and every --where, in that order (parsed
    here; checked against the spec by generate)."""
    from ksmdiff.gen.constraints import load_constraints, parse_where
    out = []
    for path in args.constraints or ():
        out += load_constraints(path)
    for i, text in enumerate(args.where or (), 1):
        out += parse_where(text, i)
    return out or None


# ----------------------------------------------------------------------------- three-way

def run_three_way_cli(paths, targets, *, quiet=False, json_out=None, spec_model=None,
                      model_mutant=None, out=None, args=None) -> int:
    """``ksmdiff run --three-way``: cells as ``ksmdiff run`` makes them (model versions,
    ``host``, ``lab:NAME``), each judged against the spec too; a coverage table at the
    end.  ``args``: ``ksmdiff run``'s options (--shard, --ktap, --junit)."""
    from ksmdiff import session
    from ksmdiff.cli import _load, check_output_path
    from ksmdiff.gen.threeway import coverage, coverage_table, judge_cell
    from ksmdiff.judge.threeway import SpecModel
    out = out or sys.stdout
    scenarios = _load(paths)
    if args is not None:
        from ksmdiff.reports import cli as reports_cli
        scenarios = reports_cli.select_shard(args, scenarios)
    if json_out:
        check_output_path(json_out)
    for t in targets:
        if t != "host" and not t.startswith("lab:"):
            try:
                KernelVersion.parse(t)
            except ValueError as e:
                raise UsageError(f"--kernel {t}: {e}") from None
    started = time.time()
    lab_cells: dict = {}
    lab_targets = [t for t in targets if t.startswith("lab:")]
    if lab_targets:                  # one boot per lab kernel, as plain 'ksmdiff run'
        from ksmdiff.lab.run import run_lab
        lab_cells = run_lab(scenarios, lab_targets)
    cells = []
    for t in targets:
        if t == "host":
            cells += session.run_host_cells(scenarios)
        elif t in lab_cells:
            cells += lab_cells[t]
        else:
            v = KernelVersion.parse(t)
            cells += [session.run_model_cell(s, v, model_mutant) for s in scenarios]
    judged = [judge_cell(c, spec_model) for c in cells]
    counts: dict = {}
    for tw in judged:
        c = tw.cell
        key = tw.verdict.status
        counts[key] = counts.get(key, 0) + 1
        bad = []
        if tw.verdict.status is SpecModel.DISAGREE:
            bad.append(tw.verdict.describe())
        bad += [f"spec violates {p} at statement {i}" for i, p in tw.spec_violations]
        bad += [f"line {e.line}: {e.text}: {e.reason}" for e in c.failed]
        if c.mismatch is not None:
            bad.append(f"kernel/model mismatch ({c.mismatch.classification}): "
                       f"{c.mismatch.first.describe()}")
        bad += [f"model invariant: {v}" for v in c.violations]
        if bad:
            print(f"FAIL {c.scenario.source} [{c.target}]", file=out)
            for b in bad:
                print(f"  {b}", file=out)
        elif not quiet:
            print(f"ok   {c.scenario.source} [{c.target}] spec/model {tw.verdict.status.value}"
                  + (f" ({tw.why})" if tw.why else ""), file=out)
    cov = coverage(judged, spec_model)
    print(coverage_table(cov), file=out)
    print("spec/model: " + ", ".join(f"{k.value} {n}" for k, n in
                                     sorted(counts.items(), key=lambda x: x[0].value)), file=out)
    by_cell = {(i, t): judged[k * len(scenarios) + i].cell
               for k, t in enumerate(targets) for i in range(len(scenarios))}
    extra = {"coverage": cov, "three_way": [tw.to_json() for tw in judged]}

    def write_record(path):
        # a run record like ``ksmdiff run --json`` writes (the reports read it), with the
        # label coverage and each cell's spec/model verdict beside the results
        from ksmdiff.report import write_json
        write_json(path, scenarios, list(targets), by_cell, time.time() - started,
                   sys.argv[1:], extra=extra)
    if json_out:
        write_record(json_out)
    if args is not None:
        from ksmdiff.reports import cli as reports_cli
        reports_cli.after_run(args, write_record)
    if any(tw.failed for tw in judged):
        return EXIT_FAIL
    if any(tw.cell.status in (RunStatus.ENVIRONMENT, RunStatus.NOT_RUN) for tw in judged):
        return EXIT_ENV
    return EXIT_OK


# ----------------------------------------------------------------------------- reduce

def _cell_runner(target, spec_model=None, model_mutant=None):
    """scenario -> ThreeWayCell on the model of a version, the host kernel or a lab
    kernel (one boot per call)."""
    from ksmdiff import session
    from ksmdiff.gen.threeway import judge_cell
    if target == "host":
        return lambda s: judge_cell(session.run_host_cells([s])[0], spec_model)
    if target.startswith("lab:"):
        _, run_lab_batch = lab_runner(target)
        return lambda s: judge_cell(run_lab_batch([s])[0], spec_model)
    try:
        v = KernelVersion.parse(target)
    except ValueError as e:
        raise UsageError(f"--kernel {target}: {e}") from None
    return lambda s: judge_cell(session.run_model_cell(s, v, model_mutant), spec_model)


def _spec_mutant(name):
    if not name:
        return None
    from ksmdiff.kspec import load_spec
    spec = load_spec()
    if name not in spec.mutants:
        raise UsageError(f"--spec-mutant {name}: one of {', '.join(sorted(spec.mutants))}")
    _refuse_unobservable(spec.mutants[name], "--spec-mutant")
    return spec.mutants[name]


def _refuse_unobservable(model, option: str) -> None:
    from ksmdiff.gen.generate import unobservable_mutant
    from ksmdiff.gen.specmap import load_config
    why = unobservable_mutant(model, load_config().model)
    if why:
        raise UsageError(f"{option}: {why}")


def cmd_reduce(args) -> int:
    from ksmdiff.gen.reduce import ddmin
    from ksmdiff.gen.threeway import failure_signature
    from ksmdiff.scenario import parse_file, print_scenario
    scn = parse_file(args.file)
    run = _cell_runner(args.kernel, _spec_mutant(args.spec_mutant), args.model_mutant)
    first = run(scn)
    want = failure_signature(first)
    if not want:
        print(f"{args.file}: nothing fails on {args.kernel}; nothing to reduce")
        return EXIT_OK
    small = ddmin(scn, lambda s: bool(failure_signature(run(s)) & want))
    text = (f"# reduced by ksmdiff reduce from {args.file} on {args.kernel}: "
            f"{len(scn.statements)} -> {len(small.statements)} statements; "
            f"keeps: {', '.join(sorted(want))}\n" + print_scenario(small))
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    print(f"{len(scn.statements)} -> {len(small.statements)} statements", file=sys.stderr)
    return EXIT_FAIL


# ----------------------------------------------------------------------------- fuzz

def _budget(text: str) -> float:
    import re
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not m:
        raise UsageError(f"--budget {text}: expected a duration such as 90s, 10m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _prefixes(corpus: Path, era) -> list:
    """The action lines of the generated scenarios (their expects dropped), those of
    ``era``'s folder first: the corpus keeps a scenario under the first era that needed
    it, so the newest era's folder alone holds only a few (6 of 79), while every
    scenario's actions are a user program any kernel runs."""
    from ksmdiff.scenario import find_scenarios, parse_file
    from ksmdiff.scenario import ast as A
    from ksmdiff.scenario.printer import format_statement
    from ksmdiff.gen.specmap import era_slug
    out = []
    if not corpus.is_dir():
        return out
    own = corpus / era_slug(era)
    files = find_scenarios([own]) if own.is_dir() else []
    seen = set(files)
    files += [f for f in find_scenarios([corpus]) if f not in seen]
    for f in files:
        scn = parse_file(f)
        out.append([f"process {scn.initial}"] + [format_statement(s) for s in scn.statements
                                                 if A.is_action(s)])
    return out


def lab_runner(target: str):
    """(the kernel's version, scenarios -> CellResults) for a lab kernel, one boot per
    call.  A kernel missing from the store, or no qemu, is refused here (exit 3) rather
    than giving a run of not-run cells."""
    from ksmdiff.errors import EnvironmentProblem
    from ksmdiff.lab import guest, store
    from ksmdiff.lab.run import lab_name, missing_reason, run_lab
    try:
        name = lab_name(target)
    except ValueError as e:
        raise UsageError(f"--kernel {target}: {e}") from None
    k = store.get_kernel(name)
    if k is None:
        raise EnvironmentProblem(missing_reason(name))
    no_qemu = guest.qemu_available()
    if no_qemu:
        raise EnvironmentProblem(f"no qemu: {no_qemu}")

    def run_batch(scns):
        return run_lab(scns, [target])[target]
    return k.version, run_batch


def host_fuzz_runner():
    """(host version, run_batch, prepare) for ``fuzz`` on the host kernel: the model's and
    the spec's replays of a batch are made in fuzz's worker (``prepare``) while the
    kernel runs it, and taken here once the kernel is done."""
    from ksmdiff import session
    from ksmdiff.gen.fuzz import prepare_batch, spec_run_of
    from ksmdiff.gen.threeway import judge_cell
    from ksmdiff.probe import host_version
    version = host_version()
    era = Era.of(version)

    def prepare(scns):
        return prepare_batch(scns, version, era)

    def run_batch(scns, prepared=None):
        if prepared is None:
            return [judge_cell(c) for c in session.run_host_cells(scns)]
        got: list = []

        def pre():
            if not got:
                got.append(prepared())
            return got[0]
        cells = session.run_host_cells(scns, models=_Column(pre, 0))
        made = pre()                    # taken even when no cell needed it (not root)
        return [judge_cell(c, spec_run=spec_run_of(made[i][1])) for i, c in enumerate(cells)]
    return version, run_batch, prepare


class _Column:
    """``get()[i][k]`` as a sequence, ``get`` called at the first access only."""

    def __init__(self, get, k: int):
        self.get, self.k = get, k

    def __getitem__(self, i):
        return self.get()[i][self.k]

    def __len__(self):
        return len(self.get())


def cmd_fuzz(args) -> int:
    from ksmdiff import session
    from ksmdiff.gen.fuzz import fuzz
    from ksmdiff.gen.specmap import world_for
    from ksmdiff.gen.threeway import judge_cell
    budget = _budget(args.budget)
    prepare = None
    if args.kernel == "host":
        version, run_batch, prepare = host_fuzz_runner()
    elif args.kernel.startswith("lab:"):
        # one boot per batch: the guest's driver replays the batch one scenario at a time
        version, run_lab_batch = lab_runner(args.kernel)

        def run_batch(scns):
            return [judge_cell(c) for c in run_lab_batch(scns)]
    else:
        try:
            version = KernelVersion.parse(args.kernel)
        except ValueError as e:
            raise UsageError(f"--kernel {args.kernel}: {e}") from None

        def run_batch(scns):
            return [judge_cell(session.run_model_cell(s, version)) for s in scns]
    era = Era.of(version)
    world = world_for(era)
    if args.corpus is None:
        from ksmdiff.internal.resources import generated_corpus_dir
        corpus = generated_corpus_dir()
    else:
        corpus = Path(args.corpus)
        if not corpus.is_dir():
            raise UsageError(f"--corpus {args.corpus}: no such directory")
    prefixes = _prefixes(corpus, era)
    if not prefixes:
        raise UsageError(f"--corpus {corpus}: no .scenario file to seed the drawing from")
    alphabet = sorted(world.text_of.values())

    from ksmdiff.internal.progress import Progress
    with Progress(quiet=args.quiet) as prog:
        prog.stage(f"fuzz {args.kernel}: {budget:.0f} s, batches of {args.batch}",
                   total=max(1, int(budget)))

        def progress(rep):
            prog.update(done=min(int(rep.seconds), int(budget)),
                        note=f"{rep.scenarios} scenarios in {rep.batches} batches, "
                             f"{rep.rate:.1f}/s, {len(rep.found)} found")
        rep = fuzz(run_batch, budget=budget, seed=args.seed, batch=args.batch,
                   prefixes=prefixes, alphabet=alphabet, out_dir=Path(args.out),
                   progress=progress, prepare=prepare)
    print(f"fuzz {args.kernel} ({version}): {rep.scenarios} scenarios, {rep.batches} batches, "
          f"{rep.seconds:.0f} s ({rep.rate:.1f} scenarios/s), seed {args.seed}, "
          f"{len(prefixes)} seed scenarios from {corpus}"
          + (", interrupted" if rep.interrupted else ""))
    for f in rep.found:
        print(f"FOUND {', '.join(f.signature)}: {len(f.original.statements)} -> "
              f"{len(f.scenario.statements)} statements, {f.path}")
    return EXIT_FAIL if rep.found else EXIT_OK


def register(sub) -> None:
    g = sub.add_parser("generate", help="generate scenarios reaching every branch label of "
                                        "the spec (explicit search, confirmed by Z3)",
                       description="For every branch label of the spec's user-level model "
                                   "in the era of --kernel (or every era), find up to "
                                   "--per-label distinct scenarios that reach it and write "
                                   "them with the spec's predicted expects.  With --where "
                                   "or --constraints: up to --per-label scenarios per era "
                                   "whose spec execution satisfies every constraint (each "
                                   "confirmed by Z3 with the constraints in the query), or "
                                   "why there is none: unsatisfiable within the bound, or "
                                   "at any depth by the model's invariants.",
                       epilog="Constraints (docs/constraints.md) are kspec expressions "
                              "over the spec's state behind an anchor:  'at LABEL: EXPR' "
                              "(before a step firing a branch label or action; its "
                              "parameters p, v, ... are bound), 'after LABEL: EXPR' (after "
                              "it), 'eventually EXPR', 'finally EXPR', 'always EXPR'; a "
                              "trace count alone ('processes == 2', 'ksm_frames >= 1', "
                              "'frames == 3': the largest value on the trace).  Examples: "
                              "--where 'at write: present[p, v] and refcount[frame[p, v]] == 2'  "
                              "--where 'at write: swapped[p, v]'  "
                              "--constraints spec/constraints/stale_node.constraints")
    g.add_argument("--kernel", action="append", metavar="VERSION",
                   help="a kernel version (its era); repeatable")
    g.add_argument("--all-eras", action="store_true", help="every era")
    g.add_argument("--out", required=True, metavar="DIR")
    g.add_argument("--per-label", type=int, default=3, metavar="N")
    g.add_argument("--seed", type=int, default=0, metavar="S")
    g.add_argument("--bound", type=int, default=10, metavar="K",
                   help="longest trace, in spec steps (default 10)")
    g.add_argument("--beam", type=int, default=200, metavar="W",
                   help="states kept per search level (default 200)")
    g.add_argument("--mutant", metavar="NAME", help="generate from a spec mutant (spec/mutants)")
    g.add_argument("--replay", action="append", metavar="VERSION",
                   help="then judge the scenarios three ways on this model version or 'host'")
    g.add_argument("--json", metavar="FILE", help="write the label report as JSON")
    g.add_argument("--where", action="append", metavar="CONSTRAINT",
                   help="a constraint every scenario satisfies (repeatable), e.g. "
                        "'at write: present[p, v] and refcount[frame[p, v]] == 2'")
    g.add_argument("--constraints", action="append", metavar="FILE",
                   help="constraints from a file, one after another ('#' comments)")
    g.add_argument("-q", "--quiet", action="store_true")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("reduce", help="shrink a failing scenario (delta debugging) keeping it "
                                      "valid and its failure reproducible",
                       description="ddmin over the statements of FILE: the smallest valid "
                                   "scenario that still fails the same way (spec/model "
                                   "disagreement, failed expect, kernel mismatch) on --kernel.")
    r.add_argument("file", metavar="FILE")
    r.add_argument("--kernel", default="5.4", metavar="VERSION|host|lab:NAME",
                   help="the model of VERSION (default 5.4), the host kernel or a lab "
                        "kernel (one boot per check)")
    r.add_argument("--spec-mutant", metavar="NAME", help="judge against a spec mutant")
    r.add_argument("--model-mutant", metavar="NAME", help="run a model mutant (ksmdiff.model.MUTANTS)")
    r.add_argument("--out", metavar="FILE", help="write the reduced scenario here")
    r.set_defaults(func=cmd_reduce)

    f = sub.add_parser("fuzz", help="replay batches of generated scenarios, judge them three "
                                    "ways, save every reproducible failure reduced",
                       description="Draw scenarios (spec-seeded and full-language; "
                                   "deterministic for --seed), run them in batches on the host "
                                   "kernel or the model of a version, judge spec, model and "
                                   "kernel; a failure is re-checked alone, reduced (ddmin) and "
                                   "saved under --out with its seed. Ctrl-C keeps what was "
                                   "found.")
    f.add_argument("--kernel", required=True, metavar="host|lab:NAME|VERSION",
                   help="the host kernel (root), a lab kernel under qemu (one boot per "
                        "batch; see 'ksmdiff lab list') or the model of a version")
    f.add_argument("--budget", default="10m", metavar="DURATION", help="e.g. 90s, 10m (default)")
    f.add_argument("--seed", type=int, default=0, metavar="S")
    f.add_argument("--batch", type=int, default=512, metavar="N",
                   help="scenarios per batch, one run of the batch runner (default 512)")
    f.add_argument("--corpus", metavar="DIR",
                   help="generated scenarios whose states seed the drawing (default: the "
                        "bundled corpora/generated)")
    f.add_argument("--out", default="corpora/regressions", metavar="DIR")
    f.add_argument("-q", "--quiet", action="store_true")
    f.set_defaults(func=cmd_fuzz)
