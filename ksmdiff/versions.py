"""Kernel versions, version sets (the `on VERSIONS` of an expect), the eras they map to,
and the reader of the kernel fact table (``ksmdiff/kernel_facts.py``).

A kernel version is ``MAJOR.MINOR[.PATCH][-rcN]`` (``5.4``, ``6.12.117``, ``5.9-rc2``) or
``MAJOR.MINOR.y`` (a stable kernel whose patch level is not known, such as a distribution
kernel that reports ``6.1.0-18-amd64``).  ``5.4`` is the mainline release (patch level 0).
The era of a version is decided by the era table: ``5.9-rc1``..``rc3`` still belong to
5.1-5.8.  A fact whose stable backport level is unknown for a version is *unknown*
(:func:`has_fact` returns ``None``) and the model then allows both outcomes.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import Optional

from ksmdiff import kernel_facts as _table
from ksmdiff.errors import InvalidArgument

_VERSION_RE = re.compile(
    r"^(?P<major>\d{1,3})\.(?P<minor>\d{1,3})(?:\.(?P<patch>\d{1,4}|y))?(?:-rc(?P<rc>\d{1,3}))?"
    r"(?:$|[-+~_ ])")

# A release candidate sorts before the release: (major, minor, stage, patch).
_RELEASE_STAGE = 1_000


@functools.total_ordering
@dataclass(frozen=True)
class KernelVersion:
    """``patch`` None: the mainline release (``5.4``) or, with ``any_level``, an unknown
    stable patch level (``5.4.y``); ``rc``: a release candidate (``5.9-rc2``)."""

    major: int
    minor: int = 0
    patch: Optional[int] = None
    rc: Optional[int] = None
    any_level: bool = False

    def __post_init__(self) -> None:
        if self.rc is not None and (self.patch is not None or self.any_level):
            raise InvalidArgument(f"a release candidate has no patch level: {self}")

    @classmethod
    def parse(cls, text: str) -> "KernelVersion":
        """Parse ``5.4``, ``6.12.117``, ``5.9-rc2``, ``5.4.y`` or a ``uname -r`` string such
        as ``6.18.44-fc-v595`` (the suffix is dropped).  Distribution kernels that hide the
        stable patch level (``6.1.0-18-amd64``) need :func:`parse_host`."""
        if not isinstance(text, str):
            raise InvalidArgument(f"kernel version must be a string, not {type(text).__name__}")
        m = _VERSION_RE.match(text.strip())
        if not m:
            raise InvalidArgument(
                f"bad kernel version {text!r}; expected MAJOR.MINOR[.PATCH][-rcN] or "
                "MAJOR.MINOR.y, such as 5.4, 6.12.117, 5.9-rc2 or 5.4.y")
        patch_s, rc_s = m.group("patch"), m.group("rc")
        any_level = patch_s == "y"
        patch = int(patch_s) if patch_s not in (None, "y") else None
        rc = int(rc_s) if rc_s is not None else None
        if rc is not None and patch:
            raise InvalidArgument(f"bad kernel version {text!r}: a release candidate "
                                  "(-rcN) has no patch level")
        if rc is not None:
            patch = None
        return cls(int(m.group("major")), int(m.group("minor")), patch, rc, any_level)

    @property
    def mm(self) -> tuple[int, int]:
        return (self.major, self.minor)

    @property
    def key(self) -> tuple[int, int, int, int]:
        """Sort key; an unknown patch level sorts as level 0."""
        stage = self.rc if self.rc is not None else _RELEASE_STAGE
        return (self.major, self.minor, stage, self.patch or 0)

    @property
    def level_known(self) -> bool:
        return not self.any_level

    def __lt__(self, other: "KernelVersion") -> bool:
        if not isinstance(other, KernelVersion):
            return NotImplemented
        return self.key < other.key

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}"
        if self.rc is not None:
            return f"{base}-rc{self.rc}"
        if self.any_level:
            return f"{base}.y"
        return base if self.patch is None else f"{base}.{self.patch}"


# ----------------------------------------------------------------------------- host

# Debian/Ubuntu/RHEL-style release strings carry an ABI number, not the stable level:
# "6.1.0-18-amd64", "5.4.0-42-generic", "4.18.0-477.el8.x86_64".
_ABI_RELEASE_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.0-\d+")
# Debian puts the real version into uname -v: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (..)"
_DEBIAN_UNAME_V_RE = re.compile(r"\bDebian (\d{1,3}\.\d{1,3}(?:\.\d{1,4})?)(?:-rc\d+)?[-+~ ]")
# Ubuntu's /proc/version_signature: "Ubuntu 5.4.0-42.46-generic 5.4.44"
_UBUNTU_SIGNATURE_RE = re.compile(r"^Ubuntu \S+ (\d{1,3}\.\d{1,3}(?:\.\d{1,4})?(?:-rc\d+)?)\s*$")


def parse_host(release: str, uname_version: str = "",
               version_signature: Optional[str] = None) -> KernelVersion:
    """The running kernel's version from ``uname -r`` (``release``), ``uname -v`` and
    Ubuntu's ``/proc/version_signature`` (None when absent).  Pure: the caller reads them.

    The distribution's real version wins where it gives one (Ubuntu's signature, Debian's
    ``uname -v``); a release string of the ``X.Y.0-N`` kind without it is ``X.Y.y`` (the
    stable level is unknown); anything else is parsed as it stands."""
    if version_signature:
        m = _UBUNTU_SIGNATURE_RE.match(version_signature.strip())
        if m:
            return KernelVersion.parse(m.group(1))
    if uname_version:
        m = _DEBIAN_UNAME_V_RE.search(uname_version + " ")
        if m:
            v = KernelVersion.parse(m.group(1))
            if v.mm == KernelVersion.parse(release).mm:
                return v
    m = _ABI_RELEASE_RE.match(release.strip())
    if m:
        return KernelVersion(int(m.group(1)), int(m.group(2)), any_level=True)
    return KernelVersion.parse(release)


# ----------------------------------------------------------------------------- the table


class FactStatus(enum.Enum):
    VERIFIED = "verified"      # checked against sources, a review or a merge listing
    INFERRED = "inferred"      # from posting dates or a neighbouring commit


@dataclass(frozen=True)
class Backport:
    branch: tuple[int, int]
    level: Optional[int]       # first stable patch level with the commit; None: unknown
    status: FactStatus

    def __str__(self) -> str:
        lvl = "?" if self.level is None else str(self.level)
        return f"{self.branch[0]}.{self.branch[1]}.{lvl}"


@dataclass(frozen=True)
class Fact:
    name: str
    commit: Optional[str]
    title: str
    first: KernelVersion
    last: Optional[KernelVersion]
    backports: tuple[Backport, ...]
    status: FactStatus
    checked: str
    summary: str

    def ranges(self) -> str:
        """``5.8..5.9-rc3, 5.7.3+, 5.4.47+`` for reports and docs."""
        main = f"{self.first}.." + ("" if self.last is None else str(self.last))
        return ", ".join([main] + [f"{b}+" for b in self.backports])


def _load_facts() -> dict[str, Fact]:
    out: dict[str, Fact] = {}
    for row in _table.FACTS:
        name = row["name"]
        if name in out:
            raise AssertionError(f"kernel_facts: duplicate fact {name}")
        bps = tuple(Backport(KernelVersion.parse(b).mm, lvl, FactStatus(st))
                    for b, lvl, st in row["backports"])
        first = KernelVersion.parse(row["first"])
        last = KernelVersion.parse(row["last"]) if row["last"] else None
        for b in bps:
            if b.branch >= first.mm:
                raise AssertionError(f"kernel_facts: {name}: backport {b} is not below {first}")
        out[name] = Fact(name, row["commit"], row["title"], first, last, bps,
                         FactStatus(row["status"]), row["checked"], row["summary"])
    return out


FACTS: dict[str, Fact] = _load_facts()


def merge_window(first: KernelVersion) -> KernelVersion:
    """A table version ``X.Y`` means the commit came with the merge window: ``X.Y-rc1``."""
    if first.rc is None and first.patch is None and not first.any_level:
        return KernelVersion(first.major, first.minor, rc=1)
    return first


def fact(name: str) -> Fact:
    try:
        return FACTS[name]
    except KeyError:
        raise InvalidArgument(f"unknown kernel fact {name!r}; known: {', '.join(FACTS)}") from None


# (version, fact name) -> (the Fact asked about, answer): the model asks the same few
# questions for every statement of every scenario (a fuzz batch asks ~100,000 times); an
# entry holds the Fact object it was computed from, so a table changed since is asked anew.
_HAS_FACT: dict = {}


def has_fact(version: KernelVersion, name: str) -> Optional[bool]:
    """Does ``version`` have the behaviour of fact ``name``?  ``None``: not known (a stable
    branch that got the commit at an unknown level, or a version whose level is unknown)."""
    f = fact(name)
    hit = _HAS_FACT.get((version, name))
    if hit is not None and hit[0] is f:
        return hit[1]
    got = _has_fact(version, f)
    if len(_HAS_FACT) >= 4096:
        _HAS_FACT.clear()
    _HAS_FACT[(version, name)] = (f, got)
    return got


def _has_fact(version: KernelVersion, f: Fact) -> Optional[bool]:
    for b in f.backports:
        if b.branch == version.mm and version.rc is None:
            if not version.patch and not version.any_level:
                return False                   # the mainline release: before any backport
            if version.any_level or b.level is None:
                return None
            return version.patch >= b.level
    if version < merge_window(f.first):
        return False
    if f.last is not None and version > f.last:
        return False
    return True


# ----------------------------------------------------------------------------- eras

Era = enum.Enum("Era", [(row["key"], row["label"]) for row in _table.ERAS])
Era.__doc__ = "The eras of do_wp_page for an anonymous KSM page (ksmdiff/kernel_facts.py)."


@dataclass(frozen=True)
class EraInfo:
    era: "Era"
    first: Optional[KernelVersion]    # None: everything before the next era
    fact: Optional[str]
    slug: str
    lowest: KernelVersion             # the lowest version the spec checker tries
    representative: KernelVersion     # what `ksmdiff run` runs by default
    summary: str


ERA_INFO: dict = {}
for _row in _table.ERAS:
    _era = Era[_row["key"]]
    ERA_INFO[_era] = EraInfo(_era, KernelVersion.parse(_row["first"]) if _row["first"] else None,
                             _row["fact"], _row["slug"], KernelVersion.parse(_row["lowest"]),
                             KernelVersion.parse(_row["representative"]), _row["summary"])
    if _row["fact"] is not None and fact(_row["fact"]).first != ERA_INFO[_era].first:
        raise AssertionError(f"kernel_facts: era {_row['label']} does not start with its fact")
del _row, _era

NEWEST_CHECKED = KernelVersion.parse(_table.NEWEST_CHECKED)


def _era_of(version: KernelVersion) -> "Era":
    found = None
    for era, info in ERA_INFO.items():
        if info.first is None or version >= merge_window(info.first):
            found = era
    assert found is not None
    return found


Era.of = staticmethod(_era_of)


def era_span(era: "Era") -> tuple[KernelVersion, KernelVersion, KernelVersion]:
    """Lowest, representative and highest checked version of ``era`` (the spec checker's
    probes for a version condition that would split it)."""
    eras = list(Era)
    i = eras.index(era)
    info = ERA_INFO[era]
    if i + 1 < len(eras):
        nxt = ERA_INFO[eras[i + 1]].first
        # the last release before the next era's minor (5.9-rc1..rc3 are not probed)
        hi = KernelVersion(nxt.major, nxt.minor - 1) if nxt.minor > 0 else \
            KernelVersion(nxt.major - 1, 19)
    else:
        hi = NEWEST_CHECKED
    return info.lowest, info.representative, hi


# What `ksmdiff run` runs when no --kernel is given: one representative per era.
ERA_VERSIONS: tuple[str, ...] = tuple(str(ERA_INFO[e].representative) for e in Era)


def _cmp_prefix(version: KernelVersion, bound: KernelVersion) -> int:
    """Compare ``version`` with ``bound`` at the bound's precision (5.4 matches all 5.4.y).
    A release candidate sorts before its release, so ``5.9-rc2`` is neither ``>=5.9`` nor
    ``<=5.8``."""
    a: tuple[int, ...] = version.key[:3]
    b: tuple[int, ...] = bound.key[:3]
    if bound.patch is not None:
        a = a + ((version.patch or 0),)
        b = b + (bound.patch,)
    return (a > b) - (a < b)


@dataclass(frozen=True)
class VersionClause:
    """One item of a VERSIONS list: ``op`` is one of ``==, <, <=, >, >=, ..``."""

    op: str
    low: KernelVersion
    high: KernelVersion | None = None  # only for ``..``

    def contains(self, v: KernelVersion) -> bool:
        """A clause that names a patch level never contains a version whose patch level is
        unknown (``5.4.y`` is neither in ``5.4.0..5.4.46`` nor in ``>=5.4.47``)."""
        if v.any_level and (self.low.patch is not None
                            or (self.high is not None and self.high.patch is not None)):
            return False
        c = _cmp_prefix(v, self.low)
        if self.op == "==":
            return c == 0
        if self.op == "<":
            return c < 0
        if self.op == "<=":
            return c <= 0
        if self.op == ">":
            return c > 0
        if self.op == ">=":
            return c >= 0
        if self.op == "..":
            assert self.high is not None
            return c >= 0 and _cmp_prefix(v, self.high) <= 0
        raise AssertionError(self.op)

    def empty(self) -> bool:
        """A range that holds no version: its low end is above its high end compared at
        the high end's precision (``6.12.54..6.12`` holds 6.12.54 and later 6.12.y)."""
        return self.op == ".." and self.high is not None and _cmp_prefix(self.low,
                                                                          self.high) > 0

    def __str__(self) -> str:
        if self.op == "..":
            return f"{self.low}..{self.high}"
        if self.op == "==":
            return str(self.low)
        return f"{self.op}{self.low}"


@dataclass(frozen=True)
class VersionSet:
    """A union of clauses; ``str()`` prints it back in scenario syntax."""

    clauses: tuple[VersionClause, ...]

    def contains(self, v: KernelVersion) -> bool:
        return any(c.contains(v) for c in self.clauses)

    def __str__(self) -> str:
        return ", ".join(str(c) for c in self.clauses)


# ----------------------------------------------------------------------------- counters

# A counter or feature a kernel lacks is absent from its observations, and a scenario that
# requires it is *unsupported* there.
COUNTER_FACT: dict[str, str] = dict(_table.COUNTERS)
FEATURE_FACT: dict[str, str] = {k: v[0] for k, v in _table.FEATURES.items()}
COUNTERS = tuple(COUNTER_FACT)
FEATURES = tuple(FEATURE_FACT)
# Per-process counters (``expect counter P NAME``): /proc/PID/ksm_stat of one process.
PROC_COUNTER_FACT: dict[str, str] = dict(_table.PROC_COUNTERS)
PROC_COUNTERS = tuple(PROC_COUNTER_FACT)


def _since(name: str) -> str:
    f = fact(name)
    commit = f", {f.commit}" if f.commit else ""
    return f"{f.first}{commit}"


# What a missing feature means, for "unsupported" reasons.
FEATURE_NOTES: dict[str, str] = {
    k: f"{label}: {_since(fact_name)}" for k, (fact_name, label) in _table.FEATURES.items()}


def _present(version: KernelVersion, name: str) -> bool:
    got = has_fact(version, name)
    if got is None:      # not for counters and features: none of them was backported
        raise AssertionError(f"kernel_facts: {name} is unknown for {version}")
    return got


def has_counter(version: KernelVersion, name: str) -> bool:
    return _present(version, COUNTER_FACT[name])


def has_proc_counter(version: KernelVersion, name: str) -> bool:
    return _present(version, PROC_COUNTER_FACT[name])


def has_feature(version: KernelVersion, name: str) -> bool:
    return _present(version, FEATURE_FACT[name])


def beyond_checked(version: KernelVersion) -> bool:
    """Newer than every version the fact table was checked against."""
    return version.mm > NEWEST_CHECKED.mm


def format_table() -> str:
    """The fact table and the eras as text (``python -m ksmdiff.versions``)."""
    lines = ["eras of do_wp_page for a KSM page:"]
    for era in Era:
        info = ERA_INFO[era]
        first = "" if info.first is None else f"from {info.first}"
        lines.append(f"  {era.value:9} {first:14} {info.summary}")
    lines.append("")
    lines.append(f"{'fact':30} {'status':9} {'commit':13} versions")
    for f in FACTS.values():
        lines.append(f"{f.name:30} {f.status.value:9} {f.commit or '-':13} {f.ranges()}")
        lines.append(f"{'':30} {f.summary}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - a reader for people
    print(format_table())
