"""``ksmdiff lab fetch``: Debian's ``linux-image-*-amd64`` kernels into the lab store.

apt runs with a private sources list, state and cache under ``<cache>/lab/apt/<suite>/``
(``-o Dir::Etc::sourcelist=... -o Dir::State=... -o Dir::Cache=...``; no sources.list.d,
no preferences): the system's apt configuration and package lists are never touched.  The
package is unpacked with ``dpkg-deb -x``; the store keeps the bzImage and the modules the
guest needs (virtio, 9p, brd and what they depend on, decompressed) with a modules.dep for
that subset.  The version stored is the package's (``6.1.176-1`` -> ``6.1.176``), the real
kernel version the model era is taken from; ``uname -r`` (``6.1.0-42-amd64``) lacks it.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ksmdiff.errors import EnvironmentProblem, UsageError
from ksmdiff.lab import store

MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class Distro:
    name: str       # the store name: 5.10, 6.1, 6.12
    suite: str      # Debian release carrying that kernel


DISTROS = {d.name: d for d in (Distro("5.10", "bullseye"), Distro("6.1", "bookworm"),
                               Distro("6.12", "trixie"))}

# Modules the guest loads (when not built in), with everything modules.dep says they need:
# the virtio PCI transport, 9p over virtio (the host's file system, read-only, and the
# result directory), and brd (a RAM disk for swap inside the guest).
GUEST_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "brd")


def apt_dir(suite: str) -> Path:
    from ksmdiff.probe.build import cache_dir
    return cache_dir() / "lab" / "apt" / suite


def sources_list(suite: str) -> str:
    return (f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n"
            f"deb [signed-by={KEYRING}] {SECURITY} {suite}-security main\n")


def apt_options(root: Path) -> list[str]:
    """The -o options that point apt at private files under ``root`` only."""
    return [
        "-o", f"Dir::Etc::sourcelist={root / 'sources.list'}",
        "-o", f"Dir::Etc::sourceparts={root / 'sources.list.d'}",
        "-o", f"Dir::Etc::preferences={root / 'preferences'}",
        "-o", f"Dir::Etc::preferencesparts={root / 'preferences.d'}",
        "-o", f"Dir::State={root / 'state'}",
        "-o", f"Dir::State::status={root / 'state' / 'status'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", "APT::Architecture=amd64",
        "-o", "APT::Architectures::=amd64",
        "-o", "Acquire::Languages=none",
        "-o", "Debug::NoLocking=0",
    ]


def prepare_apt_root(suite: str) -> Path:
    root = apt_dir(suite)
    for d in ("sources.list.d", "preferences.d", "state/lists/partial",
              "cache/archives/partial", "debs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text(sources_list(suite))
    (root / "state" / "status").touch()
    return root


def apt_command(root: Path, *args: str) -> list[str]:
    return ["apt-get", "-q", *apt_options(root), *args]


def apt_cache_command(root: Path, *args: str) -> list[str]:
    return ["apt-cache", *apt_options(root), *args]


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    except FileNotFoundError:
        raise EnvironmentProblem(f"{cmd[0]} not found: lab fetch needs Debian's apt and dpkg")
    if r.returncode != 0:
        raise EnvironmentProblem(f"{' '.join(cmd[:2])} ... {' '.join(cmd[-2:])} failed "
                                 f"(exit {r.returncode}):\n{r.stderr.strip()[-2000:]}")
    return r.stdout


def resolve_image(root: Path) -> tuple[str, str]:
    """(package, version) of the newest linux-image-*-amd64 the suite's meta package names."""
    out = _run(apt_cache_command(root, "depends", "linux-image-amd64"))
    pkgs = re.findall(r"Depends: (linux-image-[0-9][^\s]*-amd64)\b", out)
    if not pkgs:
        raise EnvironmentProblem(f"linux-image-amd64 names no kernel package:\n{out}")
    pkg = pkgs[0]
    show = _run(apt_cache_command(root, "show", "--no-all-versions", pkg))
    m = re.search(r"^Version: (\S+)", show, re.M)
    if not m:
        raise EnvironmentProblem(f"apt-cache show {pkg} gave no Version")
    return pkg, m.group(1)


def kernel_version(package_version: str) -> str:
    """``6.1.176-1`` -> ``6.1.176``; ``5.10.237-1`` -> ``5.10.237``; ``6.12.57-1+deb13u1``
    -> ``6.12.57``."""
    m = re.match(r"^(\d+\.\d+(?:\.\d+)?)", package_version)
    if not m:
        raise EnvironmentProblem(f"cannot read a kernel version from {package_version!r}")
    v = m.group(1)
    return v if v.count(".") == 2 else v + ".0"


def download(root: Path, pkg: str) -> Path:
    debs = root / "debs"
    for old in debs.glob("*.deb"):
        if not old.name.startswith(pkg + "_"):
            old.unlink()
    _run(apt_command(root, "download", pkg), cwd=debs)
    got = sorted(debs.glob(f"{pkg}_*.deb"))
    if not got:
        raise EnvironmentProblem(f"apt-get download {pkg} left no .deb in {debs}")
    return got[-1]


def modinfo(data: bytes) -> dict[str, str]:
    """The ``.modinfo`` section of an ELF64 little-endian module (what modinfo(8) prints):
    ``depends=``, ``name=``, ``vermagic=`` ...  (no kmod needed on the host)."""
    import struct
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise EnvironmentProblem("not an ELF64 little-endian kernel module")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    stroff = secs[shstrndx][4]
    out: dict[str, str] = {}
    for sec in secs:
        nm = data[stroff + sec[0]:data.index(b"\0", stroff + sec[0])].decode()
        if nm == ".modinfo":
            for item in data[sec[4]:sec[4] + sec[5]].split(b"\0"):
                k, eq, v = item.decode(errors="replace").partition("=")
                if eq:
                    out.setdefault(k, v)
    return out


def _read_module(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".gz"):
        import gzip
        return gzip.decompress(raw)
    if path.name.endswith(".zst"):
        r = subprocess.run(["zstd", "-dc", str(path)], capture_output=True)
        if r.returncode:
            raise EnvironmentProblem(f"zstd -d {path} failed: {r.stderr.decode()}")
        return r.stdout
    return raw


def _modname(path: str) -> str:
    return os.path.basename(path).split(".ko")[0].replace("-", "_")


def builtin_names(moddir: Path) -> set[str]:
    f = moddir / "modules.builtin"
    if not f.exists():
        return set()
    return {_modname(l) for l in f.read_text().split()}


def extract_guest_modules(moddir: Path, out: Path, wanted=GUEST_MODULES) -> list[str]:
    """Copy the wanted modules (decompressed) and what their ``depends=`` name, recursively,
    from a lib/modules/<release> tree to ``out``, with a modules.dep for that subset (the
    package ships none: depmod writes it at install).  Returns the load order, dependencies
    first (file names relative to ``out``)."""
    files = {_modname(str(p)): p for p in moddir.rglob("*.ko*")}
    builtin = builtin_names(moddir)
    order: list[str] = []
    deps: dict[str, list[str]] = {}
    blobs: dict[str, bytes] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order or name in builtin:
            return
        if name in chain:
            raise EnvironmentProblem(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in files:
            raise EnvironmentProblem(f"module {name} is neither built in nor in {moddir}")
        blob = _read_module(files[name])
        blobs[name] = blob
        deps[name] = [d.replace("-", "_") for d in modinfo(blob).get("depends", "").split(",")
                      if d]
        for d in deps[name]:
            visit(d, chain + (name,))
        order.append(name)

    for w in wanted:
        visit(w.replace("-", "_"), ())
    rel = {}
    for name in order:
        r = str(files[name].relative_to(moddir))
        r = re.sub(r"\.ko\.(xz|zst|gz)$", ".ko", r)
        rel[name] = r
        dst = out / r
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(blobs[name])
    lines = [f"{rel[n]}: " + " ".join(rel[d] for d in deps[n] if d in rel) for n in order]
    (out / "modules.dep").write_text("\n".join(lines) + ("\n" if lines else ""))
    for f in ("modules.builtin", "modules.order"):
        if (moddir / f).exists():
            shutil.copyfile(moddir / f, out / f)
    return [rel[n] for n in order]


def unpack(deb: Path, dest: Path) -> tuple[Path, Path, str]:
    """dpkg-deb -x; returns (vmlinuz, lib/modules/<release>, release)."""
    _run(["dpkg-deb", "-x", str(deb), str(dest)])
    images = sorted(dest.glob("boot/vmlinuz-*"))
    if not images:
        raise EnvironmentProblem(f"{deb.name} holds no boot/vmlinuz-*")
    vmlinuz = images[0]
    release = vmlinuz.name[len("vmlinuz-"):]
    for base in ("lib/modules", "usr/lib/modules"):
        moddir = dest / base / release
        if moddir.is_dir():
            return vmlinuz, moddir, release
    raise EnvironmentProblem(f"{deb.name} holds no lib/modules/{release}")


def fetch(name: str, *, log=print) -> store.KernelImage:
    if name not in DISTROS:
        raise UsageError(f"lab fetch {name}: Debian kernels are " + ", ".join(DISTROS))
    suite = DISTROS[name].suite
    root = prepare_apt_root(suite)
    log(f"{name}: apt-get update ({suite}, private lists in {root})")
    _run(apt_command(root, "update"))
    pkg, pver = resolve_image(root)
    log(f"{name}: {pkg} {pver}")
    deb = download(root, pkg)
    with tempfile.TemporaryDirectory(prefix="ksmdiff-fetch-") as tmp:
        vmlinuz, moddir, release = unpack(deb, Path(tmp) / "x")
        mods = Path(tmp) / "modules"
        mods.mkdir()
        extract_guest_modules(moddir, mods)
        meta = {"release": release, "version": kernel_version(pver), "origin": "debian",
                "source_hash": None, "config_hash": None, "patches": []}
        k = store.write_kernel(name, vmlinuz, meta, modules_dir=mods)
    log(f"{name}: stored {k.path} ({k.release}, version {k.version}, era {k.era.value})")
    return k


def fetch_busybox(*, log=print) -> Path:
    """Debian's busybox-static (bookworm) for the guest's initramfs, cached."""
    root = prepare_apt_root("bookworm")
    out = root.parent / "busybox"
    if out.exists():
        return out
    if not (root / "state" / "lists").glob("*Packages*"):
        _run(apt_command(root, "update"))
    try:
        deb = download(root, "busybox-static")
    except EnvironmentProblem:
        _run(apt_command(root, "update"))
        deb = download(root, "busybox-static")
    with tempfile.TemporaryDirectory(prefix="ksmdiff-fetch-") as tmp:
        _run(["dpkg-deb", "-x", str(deb), tmp])
        bb = Path(tmp) / "bin" / "busybox"
        if not bb.exists():
            raise EnvironmentProblem(f"{deb.name} holds no bin/busybox")
        shutil.copyfile(bb, str(out) + ".tmp")
        os.chmod(str(out) + ".tmp", 0o755)
        os.replace(str(out) + ".tmp", out)
    log(f"busybox-static: {out}")
    return out
