"""Shards of a scenario list for CI matrices (``ksmdiff run --shard I/N``).

A scenario belongs to shard ``sha256(canonical text) mod N``: the text the printer writes
(``ksmdiff format``), so a file moved, renamed or re-indented stays in its shard, and
every scenario is in exactly one shard of N."""

from __future__ import annotations

import hashlib
import re

from ksmdiff.errors import UsageError

_SPEC = re.compile(r"^([0-9]+)/([0-9]+)$")


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 1 <= I <= N -> (I, N)."""
    m = _SPEC.match(text.strip())
    if not m:
        raise UsageError(f"--shard {text}: expected I/N, e.g. 1/4")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise UsageError(f"--shard {text}: I must be in 1..N and N at least 1")
    return i, n


def scenario_hash(scn) -> str:
    from ksmdiff.scenario import print_scenario
    return hashlib.sha256(print_scenario(scn).encode()).hexdigest()


def shard_of(scn, n: int) -> int:
    """The shard (1..n) a scenario belongs to."""
    return int(scenario_hash(scn)[:16], 16) % n + 1


def select(scenarios, shard: tuple[int, int]) -> list:
    i, n = shard
    return [s for s in scenarios if shard_of(s, n) == i]
