"""``ksmdiff lab build``: lab kernels built from a source tree, optionally with patches.

A source is a kernel.org tarball, an unpacked tree (or a directory holding one tree, such
as ``linux-5.4.59/``), or a git directory (bare or a work tree's ``.git``).  The kernel is
configured as ``make tinyconfig`` plus the repository's fragment (``configs/build.config``)
and any fragments the user adds, merged with ``scripts/kconfig/merge_config.sh`` and
completed with ``make olddefconfig``; every option a fragment sets must survive that, or
the build stops naming the options that did not.  The bzImage goes to the kernel store
(:mod:`ksmdiff.lab.store`).

Builds are cached by the hash of (source, config fragments, patches, build recipe): a
second build with the same inputs copies nothing and compiles nothing.  A patched kernel
starts from a copy of the already built unpatched tree (source files hard-linked, build
outputs copied) and rebuilds only what the patch touched.

Build trees live under ``$KSMDIFF_LAB_BUILD_DIR`` or ``<cache>/lab/build``::

    <build>/src-<source hash>/        a tarball or git source, unpacked once
    <build>/<build key>/tree/         the configured, built kernel tree
    <build>/<build key>/state.json    written last: what was built, from what, how long
    <build>/logs/<build key>.log      configure and make output (kept when a build fails)
"""

from __future__ import annotations

import dataclasses
import enum
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ksmdiff.errors import EnvironmentProblem, InputError, KsmdiffError, Location
from ksmdiff.lab import store

CONFIG_DIR = Path(__file__).with_name("configs")
PATCH_DIR = Path(__file__).with_name("patches")
BASE_FRAGMENT = CONFIG_DIR / "build.config"
GUEST_FRAGMENT = CONFIG_DIR / "guest.config"      # the guest's own needs, when present

ARCH = "x86_64"

# Make variables of every build (part of the build key: changing them rebuilds).  Compiler
# workarounds go here rather than into the source.  With Debian's gcc 12, 5.4.59 and 5.8.1
# need none under this config: the one failure seen, objtool's -Werror on gcc 12's
# use-after-free warning (tools/lib/subcmd), is avoided by building no objtool
# (CONFIG_STACK_VALIDATION off in configs/build.config).
MAKE_VARS: dict[str, str] = {
    "ARCH": ARCH,
}
RECIPE_VERSION = "1"


class BuildError(KsmdiffError):
    """A kernel did not configure, patch or compile; the message says which step and why."""


class SourceKind(enum.Enum):
    TARBALL = "tarball"   # linux-X.Y.Z.tar.{gz,xz,bz2}
    TREE = "tree"         # an unpacked tree on disk
    GIT = "git"           # a git directory: the tree of one commit (HEAD unless given)


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    path: Path           # the tarball, the tree, or the git directory
    subdir: str = ""     # where the kernel tree is inside the tarball/git tree ("" = root)
    rev: str = "HEAD"    # GIT only

    def describe(self) -> str:
        inner = f" ({self.subdir}/)" if self.subdir else ""
        rev = f" at {self.rev}" if self.kind is SourceKind.GIT else ""
        return f"{self.kind.value} {self.path}{inner}{rev}"


# ----------------------------------------------------------------------------- sources

_TREE_MARKERS = ("Makefile", "Kconfig", "mm/ksm.c", "mm/memory.c", "arch/x86/Kconfig")


def _is_kernel_tree(d: Path) -> bool:
    return all((d / m).is_file() for m in _TREE_MARKERS)


def _is_git_dir(d: Path) -> bool:
    return (d / "HEAD").is_file() and (d / "objects").is_dir() and (d / "refs").is_dir()


def _git(gitdir: Path, *args: str, input: bytes | None = None) -> bytes:
    try:
        return subprocess.run(["git", f"--git-dir={gitdir}", *args], check=True,
                              capture_output=True, input=input).stdout
    except FileNotFoundError:
        raise EnvironmentProblem("git is not installed (needed for a git source)") from None
    except subprocess.CalledProcessError as e:
        raise BuildError(f"git {' '.join(args)} in {gitdir}: "
                         f"{e.stderr.decode(errors='replace').strip()}") from None


def _git_tree_names(gitdir: Path, treeish: str) -> dict[str, str]:
    """name -> type ("blob"/"tree") of one git tree."""
    out = {}
    for rec in _git(gitdir, "ls-tree", "-z", treeish).split(b"\0"):
        if rec:
            meta, name = rec.split(b"\t", 1)
            out[name.decode()] = meta.split()[1].decode()
    return out


def _git_kernel_subdir(gitdir: Path, rev: str) -> str | None:
    def is_tree(prefix: str) -> bool:
        names = _git_tree_names(gitdir, f"{rev}:{prefix}" if prefix else f"{rev}^{{tree}}")
        if not ({"Makefile", "Kconfig"} <= names.keys() and names.get("mm") == "tree"):
            return False
        mm = _git_tree_names(gitdir, f"{rev}:{prefix + '/' if prefix else ''}mm")
        return "ksm.c" in mm and "memory.c" in mm
    if is_tree(""):
        return ""
    subs = [n for n, t in _git_tree_names(gitdir, f"{rev}^{{tree}}").items() if t == "tree"]
    found = [s for s in subs if is_tree(s)]
    return found[0] if len(found) == 1 else None


def detect_source(path: str | os.PathLike, rev: str = "HEAD") -> Source:
    """What kind of kernel source PATH is, and where the tree is inside it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"no such source: {p}", None,
                         "a kernel.org tarball, an unpacked kernel tree or a git directory")
    if p.is_file():
        if not tarfile.is_tarfile(p):
            raise InputError(f"{p} is a file but not a tar archive", None,
                             "a kernel.org tarball such as linux-5.4.59.tar.xz")
        with tarfile.open(p) as tf:
            sub = _tarball_subdir(p, tf)
        return Source(SourceKind.TARBALL, p.resolve(), sub)
    if _is_git_dir(p):   # a bare repository or a work tree's .git: one commit's tree
        gitdir = p
        sub = _git_kernel_subdir(gitdir, rev)
        if sub is None:
            raise InputError(f"git directory {gitdir} at {rev} holds no kernel tree (at its "
                             "root or in exactly one top-level directory)", None,
                             "a tree with Makefile, Kconfig, mm/ksm.c and mm/memory.c")
        return Source(SourceKind.GIT, gitdir.resolve(), sub, rev)
    if _is_kernel_tree(p):
        return Source(SourceKind.TREE, p.resolve())
    subs = [d for d in sorted(p.iterdir()) if d.is_dir() and _is_kernel_tree(d)]
    if len(subs) == 1:
        return Source(SourceKind.TREE, subs[0].resolve())
    if len(subs) > 1:
        raise InputError(f"{p} holds several kernel trees: "
                         + ", ".join(d.name for d in subs), None, "one of them")
    raise InputError(f"{p} is not a kernel tree", None,
                     "a directory with Makefile, Kconfig, mm/ksm.c, mm/memory.c and "
                     "arch/x86/Kconfig, or a directory holding exactly one such tree")


def _tarball_subdir(p: Path, tf: tarfile.TarFile) -> str:
    tops = set()
    has_ksm = set()
    for m in tf:
        parts = m.name.lstrip("./").split("/")
        if parts and parts[0]:
            tops.add(parts[0])
        if len(parts) == 3 and parts[1:] == ["mm", "ksm.c"]:
            has_ksm.add(parts[0])
        if len(parts) == 2 and parts == ["mm", "ksm.c"]:
            return ""
    if len(has_ksm) == 1:
        return has_ksm.pop()
    raise InputError(f"tarball {p} holds no kernel tree (no */mm/ksm.c)", None,
                     "a kernel.org tarball such as linux-5.4.59.tar.xz")


def source_hash(src: Source) -> str:
    """A hash naming the source's content: the git tree id, the tarball's bytes, or (for a
    tree on disk, where reading a gigabyte each time would make the cache slow) every
    file's path, size and modification time."""
    h = hashlib.sha256()
    if src.kind is SourceKind.GIT:
        tree = _git(src.path, "rev-parse", f"{src.rev}:{src.subdir}" if src.subdir
                    else f"{src.rev}^{{tree}}").decode().strip()
        h.update(b"git-tree " + tree.encode())
    elif src.kind is SourceKind.TARBALL:
        h.update(b"tarball " + src.subdir.encode() + b"\0")
        with open(src.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        h.update(b"tree-stat\0")
        for rel, st in _walk_files(src.path):
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def _walk_files(root: Path):
    """(relative path, lstat) of every file and symlink under root, sorted, skipping VCS
    metadata."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        rel_dir = os.path.relpath(dirpath, root)
        for fn in filenames:
            full = os.path.join(dirpath, fn)
            rel = fn if rel_dir == "." else os.path.join(rel_dir, fn)
            out.append((rel, os.lstat(full)))
        for d in list(dirnames):   # symlinks to directories are files for our purpose
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                out.append((d if rel_dir == "." else os.path.join(rel_dir, d), os.lstat(full)))
                dirnames.remove(d)
    out.sort(key=lambda t: t[0])
    return out


def materialize(src: Source, dest: Path, log: Callable[[str], None] = lambda s: None
                ) -> list[str]:
    """Write the source's kernel tree into ``dest`` (which must not exist); return the
    relative paths of the files the source is missing (a git store without some blobs)."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    missing: list[str] = []
    if src.kind is SourceKind.TREE:
        shutil.copytree(src.path, tmp, symlinks=True,
                        ignore=shutil.ignore_patterns(".git"))
    elif src.kind is SourceKind.TARBALL:
        _extract_tarball(src, tmp)
    else:
        missing = _extract_git(src, tmp)
    if missing:
        log(f"{len(missing)} files absent from {src.path}: {', '.join(missing)}")
    os.rename(tmp, dest)
    return missing


def _extract_tarball(src: Source, dest: Path) -> None:
    prefix = src.subdir + "/" if src.subdir else ""
    dest.mkdir(parents=True)
    with tarfile.open(src.path) as tf:
        members = []
        for m in tf:
            name = m.name[2:] if m.name.startswith("./") else m.name
            if not name.startswith(prefix) or name == prefix.rstrip("/"):
                continue
            if not (m.issym() or m.isdir() or m.isfile() or m.islnk()):
                continue       # devices, fifos: none in a kernel tarball
            rel = name[len(prefix):]
            if rel.startswith("/") or ".." in rel.split("/"):
                raise InputError(f"tarball {src.path}: unsafe member {m.name!r}", None,
                                 "a kernel.org tarball")
            m.name = rel
            if m.islnk():        # hard links name their target by its full member name
                target = m.linkname[2:] if m.linkname.startswith("./") else m.linkname
                m.linkname = target[len(prefix):]
            members.append(m)
        kw = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
        tf.extractall(dest, members=members, **kw)


def _extract_git(src: Source, dest: Path) -> list[str]:
    """``git archive`` stops at the first absent blob; read blob by blob instead and
    report the absent ones (a build that needs one fails naming the file)."""
    spec = [src.subdir] if src.subdir else []
    listing = _git(src.path, "ls-tree", "-r", "-z", "--full-tree", src.rev, *spec)
    blobs = []
    for rec in listing.split(b"\0"):
        if not rec:
            continue
        meta, path = rec.split(b"\t", 1)
        mode, typ, oid = meta.split()
        if typ != b"blob":
            continue     # submodules: none in a kernel tree
        rel = path.decode()
        if src.subdir:
            rel = rel[len(src.subdir) + 1:]
        blobs.append((mode, oid, rel))
    dest.mkdir(parents=True)
    proc = subprocess.Popen(["git", f"--git-dir={src.path}", "cat-file", "--batch"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def feed():
        try:
            for _, oid, _ in blobs:
                proc.stdin.write(oid + b"\n")
        finally:
            proc.stdin.close()
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    missing = []
    made_dirs: set[Path] = set()
    try:
        for mode, oid, rel in blobs:
            header = proc.stdout.readline().split()
            if len(header) >= 2 and header[1] == b"missing":
                missing.append(rel)
                continue
            size = int(header[2])
            data = proc.stdout.read(size)
            proc.stdout.read(1)
            target = dest / rel
            if target.parent not in made_dirs:
                target.parent.mkdir(parents=True, exist_ok=True)
                made_dirs.add(target.parent)
            if mode == b"120000":
                os.symlink(data.decode(), target)
            else:
                target.write_bytes(data)
                if mode == b"100755":
                    target.chmod(0o755)
    finally:
        feeder.join()
        proc.stdout.close()
        proc.wait()
    return missing


# ----------------------------------------------------------------------------- config

_SET_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse_config(text: str, filename: str = "<config>") -> dict[str, str]:
    """CONFIG_X -> value ("y", "m", a number or quoted string, or "n" for "is not set") of
    a .config or a fragment.  Anything else but comments and blank lines is an error."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        m = _SET_RE.match(s)
        if m:
            if not m.group(2):
                raise InputError(f"{m.group(1)} has no value", Location(filename, n, len(line) + 1),
                                 "y, m, n, a number or a quoted string")
            out[m.group(1)] = m.group(2)
            continue
        m = _UNSET_RE.match(s)
        if m:
            out[m.group(1)] = "n"
            continue
        if not s or s.startswith("#"):
            continue
        raise InputError(f"not a config line: {s!r}", Location(filename, n, 1),
                         "CONFIG_NAME=VALUE or '# CONFIG_NAME is not set'")
    return out


def lost_options(wanted: dict[str, str], final: dict[str, str]) -> list[str]:
    """The options of ``wanted`` that the final .config does not have as asked, each as
    'CONFIG_X=want (got: have)'.  An unset option is 'n'."""
    lost = []
    for opt, want in wanted.items():
        have = final.get(opt, "n")
        if have != want:
            lost.append(f"{opt}={want} (got {'not set' if have == 'n' else have})")
    return lost


def fragments(extra: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """The fragments of a build, in merge order: the base, the guest's (when the lab has
    one), then the user's."""
    out = [BASE_FRAGMENT]
    if GUEST_FRAGMENT.is_file():
        out.append(GUEST_FRAGMENT)
    for e in extra:
        p = Path(e)
        if not p.is_file():
            raise InputError(f"no such config fragment: {p}", None, "a file of CONFIG_ lines")
        out.append(p)
    return out


def wanted_options(frags: Sequence[Path]) -> dict[str, str]:
    """What the fragments ask for, later fragments overriding earlier ones (as
    merge_config.sh does); each fragment is checked for syntax first."""
    wanted: dict[str, str] = {}
    for f in frags:
        wanted.update(parse_config(Path(f).read_text(), str(f)))
    return wanted


def config_hash(frags: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for f in frags:
        h.update(Path(f).name.encode() + b"\0" + Path(f).read_bytes() + b"\0")
    return h.hexdigest()


# ----------------------------------------------------------------------------- patches

@dataclass(frozen=True)
class Patch:
    path: Path
    data: bytes
    files: tuple[str, ...]     # the tree files it changes (-p1 paths)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def read_patch(path: str | os.PathLike) -> Patch:
    """Read a unified diff for ``patch -p1``; refuse anything else, naming the line."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such patch: {p}", None, "a unified diff (patch -p1)") from None
    text = data.decode(errors="replace")
    files = []
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        if line.startswith("+++ "):
            if n < 2 or not lines[n - 2].startswith("--- "):
                raise InputError("'+++' line without a '---' line before it",
                                 Location(str(p), n, 1), "a unified diff")
            target = line[4:].split("\t")[0].strip()
            if target == "/dev/null":
                target = lines[n - 2][4:].split("\t")[0].strip()
            parts = target.split("/", 1)
            if len(parts) != 2 or ".." in parts[1].split("/"):
                raise InputError(f"patch path {target!r} has no leading directory to strip",
                                 Location(str(p), n, 5), "a/PATH and b/PATH (patch -p1)")
            files.append(parts[1])
        elif line.startswith("@@") and not files:
            raise InputError("hunk before any file header", Location(str(p), n, 1),
                             "'--- a/PATH' and '+++ b/PATH' before the first '@@'")
    if not files:
        raise InputError("not a unified diff: no '--- a/PATH' / '+++ b/PATH' header",
                         Location(str(p), 1, 1), "a unified diff (patch -p1)")
    return Patch(p.resolve(), data, tuple(dict.fromkeys(files)))


def apply_patches(tree: Path, patches: Sequence[Patch]) -> None:
    """Apply the patches in order, each checked first with ``--dry-run``; exact context
    only (no fuzz).  On any failure every patch already applied is reverted, so the tree is
    left as it was, and BuildError says which patch and hunk failed."""
    applied: list[Patch] = []
    try:
        for p in patches:
            base = ["patch", "-p1", "--fuzz=0", "--forward", "--no-backup-if-mismatch",
                    "--batch", "-d", str(tree)]
            dry = subprocess.run(base + ["--dry-run"], input=p.data, capture_output=True)
            if dry.returncode != 0:
                raise BuildError(f"patch {p.path} does not apply to {tree}:\n"
                                 + (dry.stdout + dry.stderr).decode(errors="replace").strip())
            real = subprocess.run(base, input=p.data, capture_output=True)
            if real.returncode != 0:   # dry run said yes: disk full or the like
                raise BuildError(f"patch {p.path} failed after its dry run:\n"
                                 + (real.stdout + real.stderr).decode(errors="replace"))
            applied.append(p)
    except FileNotFoundError:
        raise EnvironmentProblem("patch(1) is not installed") from None
    except BaseException:
        for p in reversed(applied):
            subprocess.run(["patch", "-p1", "-R", "--fuzz=0", "--no-backup-if-mismatch",
                            "--batch", "-d", str(tree)], input=p.data, capture_output=True)
        raise


# ----------------------------------------------------------------------------- builds

def build_root() -> Path:
    env = os.environ.get("KSMDIFF_LAB_BUILD_DIR")
    if env:
        return Path(env)
    from ksmdiff.probe.build import cache_dir
    return cache_dir() / "lab" / "build"


def build_key(src_hash: str, cfg_hash: str, patches: Sequence[Patch]) -> str:
    h = hashlib.sha256()
    h.update(f"recipe {RECIPE_VERSION} {sorted(MAKE_VARS.items())}\0".encode())
    h.update(f"source {src_hash}\0config {cfg_hash}\0".encode())
    for p in patches:
        h.update(f"patch {p.name} {p.sha256}\0".encode())
    return h.hexdigest()


@dataclass
class BuildResult:
    name: str
    key: str
    kernel: store.KernelImage
    cached: bool              # nothing was compiled: the store or a built tree had it
    seconds: float            # wall time of this call
    make_seconds: float       # wall time of make on the tree (0 when cached)
    incremental: bool         # a patched copy of a built tree
    missing_files: list[str] = dataclasses.field(default_factory=list)
    state: dict = dataclasses.field(default_factory=dict)   # the tree's state.json


def _sha256_file(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Log:
    def __init__(self, path: Path, echo: Callable[[str], None] | None):
        self.path = path
        self.echo = echo
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w")    # one attempt per log

    def __call__(self, msg: str) -> None:
        self.f.write(f"[ksmdiff] {msg}\n")
        self.f.flush()
        if self.echo:
            self.echo(msg)

    def run(self, cmd: list[str], cwd: Path, what: str) -> None:
        self(f"$ {' '.join(cmd)}")
        try:
            r = subprocess.run(cmd, cwd=cwd, stdout=self.f, stderr=subprocess.STDOUT)
        except FileNotFoundError as e:
            raise EnvironmentProblem(f"{what}: {e.filename} is not installed") from None
        if r.returncode != 0:
            self.f.flush()
            tail = "".join(self.path.read_text(errors="replace").splitlines(True)[-25:])
            raise BuildError(f"{what} failed (exit {r.returncode}); the end of "
                             f"{self.path}:\n{tail}")

    def close(self) -> None:
        self.f.close()


def _children_cpu() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _make(jobs: int, *targets: str) -> list[str]:
    return ["nice", "-n", "10", "make", f"-j{jobs}",
            *(f"{k}={v}" for k, v in MAKE_VARS.items()), *targets]


def _read_state(d: Path) -> dict | None:
    try:
        return json.loads((d / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_state(d: Path, state: dict) -> None:
    tmp = d / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, d / "state.json")


def clone_built_tree(clean: Path, dest: Path, source_files: set[str]) -> None:
    """Copy a built tree cheaply: source files hard-linked (patch(1) replaces a file
    rather than writing into it, so the clean tree never sees a patch), build outputs
    copied (the compiler and linker may rewrite them in place)."""
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)

    def link_or_copy(s: str, d: str) -> None:
        rel = os.path.relpath(s, clean)
        if rel in source_files:
            os.link(s, d)
        else:
            shutil.copy2(s, d)
    shutil.copytree(clean, tmp, symlinks=True, copy_function=link_or_copy)
    os.rename(tmp, dest)


def _kernel_version(tree: Path) -> tuple[str, str]:
    """(full version from the Makefile, kernelrelease as make prints it)."""
    head = (tree / "Makefile").read_text(errors="replace")[:2000]
    vals = {}
    for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL"):
        m = re.search(rf"^{k}\s*=\s*(\d+)\s*$", head, re.M)
        if not m:
            raise BuildError(f"{tree}/Makefile has no {k} line")
        vals[k] = m.group(1)
    version = f"{vals['VERSION']}.{vals['PATCHLEVEL']}.{vals['SUBLEVEL']}"
    r = subprocess.run(["make", "-s", f"ARCH={ARCH}", "kernelrelease"], cwd=tree,
                       capture_output=True, text=True)
    release = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() \
        else version
    return version, release


def build(source: str | os.PathLike | Source, name: str,
          patches: Sequence[str | os.PathLike] = (),
          config: Sequence[str | os.PathLike] = (), jobs: int = 2,
          echo: Callable[[str], None] | None = None) -> BuildResult:
    """Build (or find in the cache) kernel NAME from SOURCE with PATCHES, and store it.

    Bad input (source, fragment, patch) raises InputError before anything is written; a
    patch that does not apply or a failed compile raises BuildError and leaves the store
    and every built tree as they were."""
    t0 = time.monotonic()
    store.check_name(name)
    src = source if isinstance(source, Source) else detect_source(source)
    frags = fragments(config)
    wanted = wanted_options(frags)
    pats = [read_patch(p) for p in patches]
    names = [p.name for p in pats]
    if len(set(names)) != len(names):
        raise InputError("two patches with the same file name: "
                         + ", ".join(sorted({n for n in names if names.count(n) > 1})), None,
                         "distinct patch file names (the store records names)")
    s_hash = source_hash(src)
    c_hash = config_hash(frags)
    key = build_key(s_hash, c_hash, pats)

    # The store already has this very kernel: nothing to do.
    have = store.get_kernel(name)
    tree_dir = build_root() / key[:24]
    state = _read_state(tree_dir)
    if have is not None and state is not None and have.source_hash == s_hash \
            and have.config_hash == c_hash and list(have.patches) == names \
            and _sha256_file(have.vmlinuz) == state.get("bzimage_sha256"):
        return BuildResult(name, key, have, True, time.monotonic() - t0, 0.0, bool(pats),
                           state.get("missing_files", []), state)

    if state is None:
        state = _build_tree(src, s_hash, c_hash, key, frags, wanted, pats, jobs, echo)
        cached = False
    else:
        cached = True
    tree = tree_dir / "tree"
    meta = {"release": state["release"], "version": state["version"],
            "origin": store.Origin.SOURCE.value, "source_hash": s_hash,
            "config_hash": c_hash, "patches": names}
    kernel = store.write_kernel(name, tree / "arch/x86/boot/bzImage", meta)
    return BuildResult(name, key, kernel, cached, time.monotonic() - t0,
                       0.0 if cached else state["make_seconds"], bool(pats),
                       state.get("missing_files", []), state)


# What Kbuild runs for tinyconfig plus the lab's fragments on x86_64 (kconfig's lexer and
# parser are generated by flex and bison; kernel/time/timeconst.bc needs bc; perl for
# headers_install and a few generated files), by program, with the Debian package.
BUILD_TOOLS = {"make": "make", "gcc": "gcc", "ld": "binutils", "flex": "flex",
               "bison": "bison", "bc": "bc", "perl": "perl"}


def missing_build_tools() -> list[str]:
    """The programs of BUILD_TOOLS this machine lacks."""
    return [t for t in BUILD_TOOLS if shutil.which(t) is None]


def _check_build_tools() -> None:
    missing = missing_build_tools()
    if missing:
        pkgs = " ".join(dict.fromkeys(BUILD_TOOLS[t] for t in missing))
        raise EnvironmentProblem(f"building a kernel needs {', '.join(missing)}, not "
                                 f"installed (apt-get install {pkgs})")


def _build_tree(src: Source, s_hash: str, c_hash: str, key: str, frags: list[Path],
                wanted: dict[str, str], pats: list[Patch], jobs: int,
                echo: Callable[[str], None] | None) -> dict:
    """Configure and compile the tree of KEY (a patched one from a copy of the built clean
    tree); return its state once state.json is written."""
    _check_build_tools()              # before anything is unpacked or written
    root = build_root()
    d = root / key[:24]
    tree = d / "tree"
    (root / "locks").mkdir(parents=True, exist_ok=True)
    lock = open(root / "locks" / f"{key[:24]}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:       # another build of this key, or a cleanup: wait for it
        if echo:
            echo(f"waiting for another ksmdiff building {d}")
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        _remove_stale(root)
        state = _read_state(d)
        if state is not None:      # built meanwhile by the holder of the lock
            return state
        if d.exists():             # a killed earlier attempt: start it over
            shutil.rmtree(d)
        d.mkdir(parents=True)
        return _build_locked(src, s_hash, c_hash, key, frags, wanted, pats, jobs, echo,
                             root, d, tree)
    finally:
        lock.close()


def _remove_stale(root: Path) -> None:
    """Remove the trees of killed builds: no state.json, and nobody holds their lock."""
    for d in root.iterdir():
        if not d.is_dir() or d.name in ("locks", "logs") or (d / "state.json").exists():
            continue
        name = d.name.removesuffix(".partial")
        with open(root / "locks" / f"{name}.lock", "w") as lk:
            try:
                fcntl.flock(lk, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue           # being built
            shutil.rmtree(d, ignore_errors=True)


def _build_locked(src, s_hash, c_hash, key, frags, wanted, pats, jobs, echo, root, d, tree):
    log = _Log(root / "logs" / f"{key[:24]}.log", echo)
    try:
        log(f"source: {src.describe()} (hash {s_hash[:16]})")
        missing: list[str] = []
        if pats:
            clean_key = build_key(s_hash, c_hash, [])
            clean_dir = root / clean_key[:24]
            clean_state = _read_state(clean_dir)
            if clean_state is None:
                log("building the unpatched kernel first (patched kernels reuse its tree)")
                clean_state = _build_tree(src, s_hash, c_hash, clean_key, frags, wanted, [],
                                          jobs, echo)
            source_files = set((clean_dir / "source-files.txt").read_text().splitlines())
            for p in pats:
                for f in p.files:
                    if f not in source_files:
                        raise BuildError(f"patch {p.path} changes {f}, which is not a source "
                                         "file of this kernel")
            log(f"copying the built tree {clean_dir.name} (sources linked, outputs copied)")
            clone_built_tree(clean_dir / "tree", tree, source_files)
            log("applying " + ", ".join(p.name for p in pats))
            apply_patches(tree, pats)
            (d / "source-files.txt").write_text(
                (clean_dir / "source-files.txt").read_text())
            missing = clean_state.get("missing_files", [])
        else:
            log("unpacking the source")
            missing = materialize(src, tree, log)
            (d / "source-files.txt").write_text(
                "\n".join(rel for rel, _ in _walk_files(tree)) + "\n")
            if (tree / "include/generated").exists() or (tree / "vmlinux").exists():
                log("the source tree was built before: make mrproper")
                log.run(["make", f"ARCH={ARCH}", "mrproper"], tree, "make mrproper")
            log.run(["make", *(f"{k}={v}" for k, v in MAKE_VARS.items()), "tinyconfig"],
                    tree, "make tinyconfig")
            merge = tree / "scripts/kconfig/merge_config.sh"
            if not merge.is_file():
                raise BuildError(f"{merge} is missing: this tree cannot merge fragments")
            log.run(["env", f"ARCH={ARCH}", "sh", str(merge), "-m", ".config",
                     *map(str, frags)], tree, "merge_config.sh")
            log.run(["make", *(f"{k}={v}" for k, v in MAKE_VARS.items()), "olddefconfig"],
                    tree, "make olddefconfig")
            lost = lost_options(wanted, parse_config((tree / ".config").read_text(),
                                                     str(tree / ".config")))
            if lost:
                raise BuildError("options of the config fragments did not survive "
                                 "make olddefconfig (unmet dependencies, or not in this "
                                 "kernel version): " + "; ".join(lost))
        t = time.monotonic()
        cpu = _children_cpu()
        log.run(_make(jobs, "bzImage"), tree, "make bzImage")
        make_seconds = time.monotonic() - t
        make_cpu = _children_cpu() - cpu
        version, release = _kernel_version(tree)
        bz = tree / "arch/x86/boot/bzImage"
        state = {"key": key, "source": src.describe(), "source_hash": s_hash,
                 "config_hash": c_hash, "patches": [p.name for p in pats],
                 "patch_sha256": [p.sha256 for p in pats], "make_vars": MAKE_VARS,
                 "version": version, "release": release, "make_seconds": round(make_seconds, 2),
                 "make_cpu_seconds": round(make_cpu, 2),
                 "incremental": bool(pats), "missing_files": missing,
                 "bzimage_sha256": _sha256_file(bz), "built": store.now_iso()}
        _write_state(d, state)
        log(f"built {release} in {make_seconds:.1f} s of make ({make_cpu:.0f} CPU-seconds)")
        return state
    except BaseException as e:
        log(f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        shutil.rmtree(d, ignore_errors=True)     # no half-built tree is ever reused
        raise
    finally:
        log.close()


# ----------------------------------------------------------------------------- known kernels

KNOWN_FILE = Path(__file__).with_name("known.toml")


@dataclass(frozen=True)
class KnownKernel:
    name: str
    source_id: str
    patches: tuple[Path, ...]
    config: tuple[Path, ...] = ()     # fragments after the lab's (configs/)


@dataclass(frozen=True)
class KnownSources:
    search: tuple[Path, ...]
    sources: dict          # id -> {"tarballs": [...], "trees": [...], "gits": [...]}
    kernels: tuple[KnownKernel, ...]


def _toml_load(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:      # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise EnvironmentProblem("reading known.toml needs Python 3.11 or tomli") from None
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        line = getattr(e, "lineno", 1) or 1
        col = getattr(e, "colno", 1) or 1
        raise InputError(f"not valid TOML: {e}", Location(str(path), line, col)) from None


def load_known(path: Path = KNOWN_FILE) -> KnownSources:
    """The known kernels and where to look for their sources; a malformed file is an
    InputError naming it."""
    doc = _toml_load(path)
    here = Location(str(path), 1, 1)

    def strings(v, what) -> list[str]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise InputError(f"{what} must be a list of strings", here)
        return v
    unknown = set(doc) - {"search", "source", "kernel"}
    if unknown:
        raise InputError(f"unknown top-level keys {', '.join(sorted(unknown))}", here,
                         "search, source, kernel")
    env = os.environ.get("KSMDIFF_LAB_SOURCES")
    roots = env.split(":") if env is not None else strings(doc.get("search", []), "search")
    sources = {}
    for sid, s in doc.get("source", {}).items():
        if not isinstance(s, dict) or set(s) - {"tarballs", "trees", "gits"}:
            raise InputError(f"source {sid!r}: expected only tarballs, trees, gits", here)
        sources[sid] = {k: strings(s.get(k, []), f"source {sid!r} {k}")
                        for k in ("tarballs", "trees", "gits")}
    kernels = []
    for name, k in doc.get("kernel", {}).items():
        store.check_name(name)
        if not isinstance(k, dict) or set(k) - {"source", "patches", "config"} \
                or "source" not in k:
            raise InputError(f"kernel {name!r}: expected source and optional patches, "
                             "config", here)
        if k["source"] not in sources:
            raise InputError(f"kernel {name!r}: unknown source {k['source']!r}", here,
                             "one of " + ", ".join(sorted(sources)))
        pats = tuple(PATCH_DIR / p for p in strings(k.get("patches", []),
                                                    f"kernel {name!r} patches"))
        for p in pats:
            if not p.is_file():
                raise InputError(f"kernel {name!r}: no patch {p}", here)
        cfgs = tuple(CONFIG_DIR / c for c in strings(k.get("config", []),
                                                     f"kernel {name!r} config"))
        for c in cfgs:
            if not c.is_file():
                raise InputError(f"kernel {name!r}: no config fragment {c}", here)
        kernels.append(KnownKernel(name, k["source"], pats, cfgs))
    return KnownSources(tuple(Path(r).expanduser() for r in roots if r), sources,
                        tuple(kernels))


def find_source(known: KnownSources, source_id: str) -> Source | None:
    """The first candidate of SOURCE_ID that exists under a search root, detected."""
    cand = known.sources[source_id]
    for root in known.search:
        for rel in cand["tarballs"] + cand["trees"] + cand["gits"]:
            p = root / rel
            if p.exists():
                try:
                    return detect_source(p)
                except InputError:
                    continue         # something else by that name: keep looking
    return None


class Outcome(enum.Enum):
    BUILT = "built"
    CACHED = "cached"
    STORED = "stored"             # no source here, but the store holds a build of it
    NO_SOURCE = "not run: no source"
    FAILED = "failed"


def build_known(names: Sequence[str] = (), jobs: int = 2,
                echo: Callable[[str], None] | None = None,
                known: KnownSources | None = None) -> list[tuple[str, Outcome, str]]:
    """Build every known kernel (or those named) whose source is on this machine.
    Returns (name, outcome, detail) per kernel; a kernel without a source is NO_SOURCE,
    a failed build FAILED with its error: the caller decides the exit code."""
    known = known or load_known()
    wanted = list(names) or [k.name for k in known.kernels]
    by_name = {k.name: k for k in known.kernels}
    bad = [n for n in wanted if n not in by_name]
    if bad:
        raise InputError(f"unknown kernel {', '.join(bad)} in {KNOWN_FILE}", None,
                         "one of " + ", ".join(by_name))
    # clean kernels first: the patched ones start from their trees
    order = sorted((by_name[n] for n in wanted), key=lambda k: bool(k.patches))
    out = []
    for k in order:
        src = find_source(known, k.source_id)
        if src is None:
            roots = ", ".join(map(str, known.search)) or "(no search roots)"
            have = store.get_kernel(k.name)
            if have is not None:
                # still runnable: say so, and that it cannot be rebuilt here
                out.append((k.name, Outcome.STORED,
                            f"{have.release}, built earlier; {k.source_id} found in none "
                            f"of {roots}, so it is not rebuilt"))
            else:
                out.append((k.name, Outcome.NO_SOURCE,
                            f"{k.source_id} found in none of {roots}"))
            continue
        try:
            r = build(src, k.name, k.patches, k.config, jobs=jobs, echo=echo)
        except (BuildError, EnvironmentProblem) as e:
            out.append((k.name, Outcome.FAILED, str(e)))
            continue
        how = "cached" if r.cached else f"{r.make_seconds:.0f} s of make" + (
            ", incremental" if r.incremental else "")
        out.append((k.name, Outcome.CACHED if r.cached else Outcome.BUILT,
                    f"{r.kernel.release} ({how})"))
    return out


# ----------------------------------------------------------------------------- command line

def _resolve_patch(arg: str) -> Path:
    """A patch file as given, or one of the repository's patches by file name."""
    p = Path(arg)
    if p.is_file() or p.parent != Path("."):
        return p
    return PATCH_DIR / arg if (PATCH_DIR / arg).is_file() else p


def register(lab_sub) -> None:
    """Add ``build`` to the ``ksmdiff lab`` subcommands."""
    b = lab_sub.add_parser(
        "build", help="build a kernel from source (tinyconfig + the lab's fragment) into "
                      "the lab's kernel store",
        description="Build kernel NAME from a kernel.org tarball, an unpacked tree (or a "
                    "directory holding one) or a git directory, with optional patches, "
                    "and store it for --kernel lab:NAME.  Cached by source, config and "
                    "patches.  --all-known builds the kernels listed in "
                    "ksmdiff/lab/known.toml whose sources are on this machine.")
    b.add_argument("name", nargs="?", metavar="NAME", help="the kernel's name in the store")
    b.add_argument("--source", metavar="PATH", help="tarball, tree or git directory")
    b.add_argument("--patch", action="append", default=[], metavar="FILE",
                   help="apply this patch (patch -p1, no fuzz); a bare file name also "
                        "finds the lab's own patches (repeatable, applied in order)")
    b.add_argument("--config", action="append", default=[], metavar="FRAGMENT",
                   help="another config fragment merged after the lab's (repeatable)")
    b.add_argument("--all-known", action="store_true",
                   help="build every known kernel whose source is found (NAME may narrow "
                        "it to one)")
    b.add_argument("-j", "--jobs", type=int, default=2, help="make -j (default 2)")
    b.add_argument("-v", "--verbose", action="store_true", help="echo build steps")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress")
    b.set_defaults(func=cmd_build)


def cmd_build(args) -> int:
    import sys
    from ksmdiff.errors import UsageError
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    from ksmdiff.internal.progress import Progress
    if args.verbose:             # every step already: no progress display beside it
        return _cmd_build(args, lambda m: print(f"  {m}", file=sys.stderr))
    with Progress(quiet=args.quiet) as prog:
        return _cmd_build(args, lambda m: prog.stage(f"lab build: {m}"))


def _cmd_build(args, echo) -> int:
    import sys
    from ksmdiff.errors import UsageError
    if args.all_known:
        if args.source or args.patch or args.config:
            raise UsageError("--all-known takes no --source, --patch or --config")
        results = build_known([args.name] if args.name else [], args.jobs, echo)
        for name, outcome, detail in results:
            print(f"{name}: {outcome.value}: {detail}")
        if any(o is Outcome.FAILED for _, o, _ in results):
            return 1
        if any(o is Outcome.NO_SOURCE for _, o, _ in results):
            return 3
        return 0
    if not args.name or not args.source:
        raise UsageError("lab build needs NAME and --source PATH (or --all-known)")
    try:
        r = build(args.source, args.name, [_resolve_patch(p) for p in args.patch],
                  args.config, args.jobs, echo)
    except BuildError as e:
        print(f"ksmdiff: lab build {args.name}: {e}", file=sys.stderr)
        return 1
    how = "cached" if r.cached else (f"built in {r.seconds:.0f} s "
                                     f"({r.make_seconds:.0f} s of make"
                                     + (", incremental)" if r.incremental else ")"))
    print(f"{r.name}: {r.kernel.release} (era {r.kernel.era.value}), {how}: {r.kernel.path}")
    if r.missing_files:
        print(f"  note: {len(r.missing_files)} files were absent from the source and not "
              "needed: " + ", ".join(r.missing_files[:3])
              + (" ..." if len(r.missing_files) > 3 else ""))
    return 0
