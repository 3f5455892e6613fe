"""The lab's kernel store: one directory per kernel, shared by ``lab fetch`` and ``lab build``.

Layout (``lab_dir()`` is ``$KSMDIFF_LAB_DIR`` or ``<cache>/lab/kernels``)::

    <lab_dir>/<NAME>/vmlinuz      the bzImage
    <lab_dir>/<NAME>/modules/     optional: a lib/modules/<release> tree (only what the guest
                                  needs: virtio, 9p, brd/zram ...)
    <lab_dir>/<NAME>/meta.json    {"name", "release", "version", "origin", "source_hash",
                                   "config_hash", "patches", "built"}

``release`` is the kernel's ``uname -r``; ``version`` is the full version the model era is
taken from (``6.1.176`` for Debian's 6.1.0-42-amd64, ``5.4.59`` for a source build).  A
kernel is written into a hidden temporary directory and renamed into place, so a reader
never sees half a kernel; a killed write leaves only a ``.tmp-*`` directory that
``list_kernels`` ignores and the next write of any kernel removes.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ksmdiff.errors import InputError, InvalidArgument, Location
from ksmdiff.versions import Era, KernelVersion

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
META_FIELDS = ("name", "release", "version", "origin", "source_hash", "config_hash",
               "patches", "built")


class Origin(enum.Enum):
    DEBIAN = "debian"    # a distribution image unpacked from linux-image-*-amd64
    SOURCE = "source"    # built from a source tree by ``ksmdiff lab build``


@dataclass(frozen=True)
class KernelImage:
    name: str
    path: Path               # the kernel's directory in the store
    release: str             # uname -r
    version: KernelVersion   # full version, patch level included
    origin: Origin
    source_hash: str | None
    config_hash: str | None
    patches: tuple[str, ...]
    built: str               # ISO 8601 timestamp

    @property
    def vmlinuz(self) -> Path:
        return self.path / "vmlinuz"

    @property
    def modules(self) -> Path | None:
        """The lib/modules/<release> tree, or None when the kernel has everything built in."""
        m = self.path / "modules"
        return m if m.is_dir() else None

    @property
    def era(self) -> Era:
        return Era.of(self.version)

    def meta(self) -> dict:
        return {"name": self.name, "release": self.release, "version": str(self.version),
                "origin": self.origin.value, "source_hash": self.source_hash,
                "config_hash": self.config_hash, "patches": list(self.patches),
                "built": self.built}


def lab_dir() -> Path:
    """The directory holding one subdirectory per kernel."""
    env = os.environ.get("KSMDIFF_LAB_DIR")
    if env:
        return Path(env)
    from ksmdiff.probe.build import cache_dir
    return cache_dir() / "lab" / "kernels"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgument(
            f"bad lab kernel name {name!r}; expected letters, digits, '.', '_', '+', '-' "
            "(at most 64, not starting with a punctuation mark), such as 6.1 or 5.4-nofreeze")
    return name


def _meta_error(path: Path, message: str, line: int = 1, col: int = 1) -> InputError:
    return InputError(message, Location(str(path), line, col))


def _parse_meta(path: Path, raw: object) -> dict:
    """Validate one meta.json document; return it with ``version`` parsed."""
    if not isinstance(raw, dict):
        raise _meta_error(path, "meta.json is not a JSON object")
    missing = [f for f in META_FIELDS if f not in raw]
    if missing:
        raise _meta_error(path, f"meta.json lacks {', '.join(missing)}")
    extra = sorted(set(raw) - set(META_FIELDS))
    if extra:
        raise _meta_error(path, f"meta.json has unknown fields {', '.join(extra)}")
    for f in ("name", "release", "version", "origin", "built"):
        if not isinstance(raw[f], str) or not raw[f]:
            raise _meta_error(path, f"meta.json field {f!r} must be a non-empty string")
    for f in ("source_hash", "config_hash"):
        if raw[f] is not None and not isinstance(raw[f], str):
            raise _meta_error(path, f"meta.json field {f!r} must be a string or null")
    if not isinstance(raw["patches"], list) or not all(isinstance(p, str) for p in raw["patches"]):
        raise _meta_error(path, "meta.json field 'patches' must be a list of file names")
    try:
        version = KernelVersion.parse(raw["version"])
    except InvalidArgument as e:
        raise _meta_error(path, f"meta.json field 'version': {e}") from None
    if version.patch is None:
        raise _meta_error(path, f"meta.json field 'version' {raw['version']!r} lacks the patch "
                                "level; expected the full version such as 6.1.176")
    try:
        origin = Origin(raw["origin"])
    except ValueError:
        raise _meta_error(path, f"meta.json field 'origin' is {raw['origin']!r}; expected "
                                + " or ".join(repr(o.value) for o in Origin)) from None
    try:
        _dt.datetime.fromisoformat(raw["built"])
    except ValueError:
        raise _meta_error(path, f"meta.json field 'built' {raw['built']!r} is not an ISO "
                                "8601 timestamp") from None
    return dict(raw, version=version, origin=origin)


def _load(kdir: Path) -> KernelImage:
    mpath = kdir / "meta.json"
    try:
        text = mpath.read_text()
    except FileNotFoundError:
        raise _meta_error(mpath, "no meta.json: not a lab kernel") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise _meta_error(mpath, f"meta.json is not JSON: {e.msg}", e.lineno, e.colno) from None
    m = _parse_meta(mpath, raw)
    if m["name"] != kdir.name:
        raise _meta_error(mpath, f"meta.json names kernel {m['name']!r} but lives in "
                                 f"{kdir.name!r}")
    if not (kdir / "vmlinuz").is_file():
        raise _meta_error(mpath, f"no vmlinuz beside meta.json in {kdir}")
    return KernelImage(name=m["name"], path=kdir, release=m["release"], version=m["version"],
                       origin=m["origin"], source_hash=m["source_hash"],
                       config_hash=m["config_hash"], patches=tuple(m["patches"]),
                       built=m["built"])


def get_kernel(name: str) -> KernelImage | None:
    """The stored kernel NAME, or None when there is none.  A damaged entry raises
    InputError naming its meta.json."""
    kdir = lab_dir() / check_name(name)
    if not kdir.is_dir():
        return None
    return _load(kdir)


def list_kernels(problems: list[InputError] | None = None) -> list[KernelImage]:
    """Every stored kernel, oldest version first.  A damaged entry is left out and, when
    ``problems`` is given, its error appended there (so one bad entry hides no others)."""
    root = lab_dir()
    out: list[KernelImage] = []
    if not root.is_dir():
        return out
    for kdir in sorted(root.iterdir()):
        if kdir.name.startswith(".") or not kdir.is_dir():
            continue
        try:
            out.append(_load(kdir))
        except InputError as e:
            if problems is not None:
                problems.append(e)
    out.sort(key=lambda k: (k.version, k.name))
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_kernel(name: str, vmlinuz_path: str | os.PathLike, meta: dict,
                 modules_dir: str | os.PathLike | None = None) -> KernelImage:
    """Store a kernel atomically, replacing one of the same name.

    ``meta`` holds the meta.json fields; ``name`` may be left out (taken from the argument)
    and ``built`` too (now).  ``modules_dir`` is a lib/modules/<release> tree, copied."""
    check_name(name)
    meta = dict(meta)
    meta.setdefault("name", name)
    meta.setdefault("built", now_iso())
    if meta["name"] != name:
        raise InvalidArgument(f"meta names kernel {meta['name']!r}, stored as {name!r}")
    if "version" in meta and isinstance(meta["version"], KernelVersion):
        meta["version"] = str(meta["version"])
    if "origin" in meta and isinstance(meta["origin"], Origin):
        meta["origin"] = meta["origin"].value
    if "patches" in meta and isinstance(meta["patches"], tuple):
        meta["patches"] = list(meta["patches"])
    _parse_meta(Path(f"<meta of {name}>"), meta)   # refuse what a reader would refuse
    vmlinuz_path = Path(vmlinuz_path)
    if not vmlinuz_path.is_file():
        raise InvalidArgument(f"no kernel image at {vmlinuz_path}")
    if modules_dir is not None and not Path(modules_dir).is_dir():
        raise InvalidArgument(f"no modules directory at {modules_dir}")
    root = lab_dir()
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):      # left by a killed write
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        shutil.copyfile(vmlinuz_path, tmp / "vmlinuz")
        if modules_dir is not None:
            shutil.copytree(modules_dir, tmp / "modules", symlinks=True)
        with open(tmp / "meta.json", "w") as f:
            json.dump({k: meta[k] for k in META_FIELDS}, f, indent=2)
            f.write("\n")
        final = root / name
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".tmp-old-{name}-", dir=root))
            os.rename(final, old / "k")
        os.rename(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _load(final)
