"""Kernel versions, version sets (the `on VERSIONS` of an expect) and the eras they map to.

A kernel version is ``MAJOR.MINOR[.PATCH]`` (``5.4``, ``6.12.117``).  The era of a version
is decided by major.minor alone (stable branches inherit the behaviour of their base; the
one exception, 5.4.y keeping ``reuse_ksm_page``, falls inside 5.1..5.8 anyway).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ksmdiff.errors import InvalidArgument

_VERSION_RE = re.compile(r"^(\d{1,3})(?:\.(\d{1,3}))?(?:\.(\d{1,4}))?$")


@dataclass(frozen=True, order=True)
class KernelVersion:
    major: int
    minor: int = 0
    patch: int | None = None

    @classmethod
    def parse(cls, text: str) -> "KernelVersion":
        """Parse ``5.4``, ``6.12.117`` or ``6.18.44-fc-v595`` (a uname -r suffix is dropped)."""
        if not isinstance(text, str):
            raise InvalidArgument(f"kernel version must be a string, not {type(text).__name__}")
        core = re.split(r"[-+~_ ]", text.strip(), maxsplit=1)[0]
        m = _VERSION_RE.match(core)
        if not m or m.group(2) is None:
            raise InvalidArgument(
                f"bad kernel version {text!r}; expected MAJOR.MINOR[.PATCH] such as 5.4 or 6.12.117")
        patch = int(m.group(3)) if m.group(3) is not None else None
        return cls(int(m.group(1)), int(m.group(2)), patch)

    @property
    def mm(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}"
        return base if self.patch is None else f"{base}.{self.patch}"


class Era(enum.Enum):
    """The eras of do_wp_page for an anonymous KSM page (kernel-eras.md §0 / §a)."""

    LE_5_0 = "<=5.0"        # a.1: PageAnon && !PageKsm guard: always copy
    V5_1_TO_5_8 = "5.1-5.8"  # a.2: reuse_ksm_page (52d1e606ee73)
    V5_9_TO_5_17 = "5.9-5.17"  # a.3: 09854ba94c6a, refcount-based reuse, KSM copies
    V5_18 = "5.18"          # a.4: d4c470970d45, lru drain, rc > 1 + SC
    V5_19_TO_6_6 = "5.19-6.6"  # a.5: PageAnonExclusive, cow_ksm
    GE_6_7 = ">=6.7"        # a.6: wp_can_reuse_anon_folio

    @classmethod
    def of(cls, version: KernelVersion) -> "Era":
        mm = version.mm
        if mm <= (5, 0):
            return cls.LE_5_0
        if mm <= (5, 8):
            return cls.V5_1_TO_5_8
        if mm <= (5, 17):
            return cls.V5_9_TO_5_17
        if mm == (5, 18):
            return cls.V5_18
        if mm <= (6, 6):
            return cls.V5_19_TO_6_6
        return cls.GE_6_7


def _cmp_prefix(version: KernelVersion, bound: KernelVersion) -> int:
    """Compare ``version`` with ``bound`` at the bound's precision (5.4 matches all 5.4.y)."""
    a: tuple[int, ...] = version.mm
    b: tuple[int, ...] = bound.mm
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


# Versions that added an observable or a feature (kernel-eras.md §d).  A counter or feature
# a kernel lacks is absent from its observations, and a scenario that requires it is
# *unsupported* there.
COUNTER_SINCE: dict[str, KernelVersion] = {
    "pages_shared": KernelVersion(2, 6),
    "pages_sharing": KernelVersion(2, 6),
    "pgreuse": KernelVersion(5, 9),          # 798a6b87ecd7
    "ksm_swpin_copy": KernelVersion(5, 18),  # "mm/vmstat: add event for ksm swapping in copy"
    "cow_ksm": KernelVersion(5, 19),         # 94bfe85bde18
    "ksm_zero_pages": KernelVersion(6, 6),   # e2942062e01d (see closing note of issue 2)
    # ksm:ksm_remove_ksm_page, 739100c88f49 "mm: add tracepoints to ksm": v6.4 (kernel-eras
    # §d.7 says ~6.2; the commit reached mainline in the 6.4 merge window)
    "stable_nodes_removed": KernelVersion(6, 4),
}

FEATURE_SINCE: dict[str, KernelVersion] = {
    # The language swaps only through MADV_PAGEOUT: 1a4e58cce84e "mm: introduce MADV_PAGEOUT", v5.4.
    "swap": KernelVersion(5, 4),
    "zero-pages": KernelVersion(4, 11),   # use_zero_pages knob
    "tracepoints": KernelVersion(6, 4),   # include/trace/events/ksm.h, 739100c88f49
    "prctl-merge": KernelVersion(6, 4),   # d7597f59d1d3 PR_SET_MEMORY_MERGE
}

# What a missing feature means, for "unsupported" reasons.
FEATURE_NOTES: dict[str, str] = {
    "swap": "swap (MADV_PAGEOUT: 5.4, 1a4e58cce84e)",
    "zero-pages": "zero-pages (use_zero_pages: 4.11)",
    "tracepoints": "tracepoints (ksm:*: 6.4, 739100c88f49)",
    "prctl-merge": "prctl-merge (PR_SET_MEMORY_MERGE: 6.4, d7597f59d1d3)",
}

COUNTERS = tuple(COUNTER_SINCE)
FEATURES = tuple(FEATURE_SINCE)


def has_counter(version: KernelVersion, name: str) -> bool:
    return version.mm >= COUNTER_SINCE[name].mm


def has_feature(version: KernelVersion, name: str) -> bool:
    return version.mm >= FEATURE_SINCE[name].mm
