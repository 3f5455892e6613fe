"""ksmdiff.versions and the kernel fact table it reads (ksmdiff/kernel_facts.py)."""

from __future__ import annotations

import re

import pytest

from ksmdiff import kernel_facts
from ksmdiff.errors import InvalidArgument
from ksmdiff.versions import (COUNTERS, ERA_INFO, ERA_VERSIONS, FACTS, FEATURE_NOTES, FEATURES,
                              Era, FactStatus, KernelVersion, VersionClause, era_span,
                              has_counter, has_fact, has_feature, parse_host)

V = KernelVersion.parse


# ----------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("text,expect", [
    ("5.4", "5.4"), ("6.12.117", "6.12.117"), ("5.9-rc2", "5.9-rc2"), ("5.4.y", "5.4.y"),
    ("6.18.44-fc-v1147", "6.18.44"), ("6.12.38+deb13-amd64", "6.12.38"),
    ("6.1.0-18-amd64", "6.1.0"), ("5.9.0-rc2", "5.9-rc2"), (" 4.19 ", "4.19"),
])
def test_parse(text, expect):
    assert str(V(text)) == expect


@pytest.mark.parametrize("text", ["", "5", "x.y", "5.4.3-rc1", "5.4.-1", "5..4", "v5.4", 54])
def test_parse_rejects(text):
    with pytest.raises(InvalidArgument):
        V(text)


def test_order_puts_release_candidates_before_the_release():
    chain = ["5.8", "5.8.18", "5.9-rc1", "5.9-rc3", "5.9-rc4", "5.9", "5.9.1", "5.10"]
    vs = [V(s) for s in chain]
    assert vs == sorted(reversed(vs))
    assert V("5.9-rc2") < V("5.9") and V("5.8.999") < V("5.9-rc1")


# ----------------------------------------------------------------------------- host

@pytest.mark.parametrize("release,uname_v,signature,expect", [
    # Debian bookworm: the ABI release hides 6.1.176; uname -v has it
    ("6.1.0-37-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2025-06-01)", None, "6.1.176"),
    ("6.1.0-37-cloud-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.140-1 (2025-05-22)", None,
     "6.1.140"),
    # Debian trixie names the version in the release too
    ("6.12.38+deb13-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.12.38-1 (2025-07-16)", None,
     "6.12.38"),
    # Ubuntu focal: only /proc/version_signature has the stable level
    ("5.4.0-42-generic", "#46-Ubuntu SMP Fri Jul 10 00:24:02 UTC 2020",
     "Ubuntu 5.4.0-42.46-generic 5.4.44\n", "5.4.44"),
    ("5.15.0-91-generic", "#101-Ubuntu SMP Tue Nov 14 13:30:08 UTC 2023",
     "Ubuntu 5.15.0-91.101-generic 5.15.131", "5.15.131"),
    # no source of the real level: unknown
    ("5.4.0-42-generic", "#46-Ubuntu SMP Fri Jul 10 00:24:02 UTC 2020", None, "5.4.y"),
    ("4.18.0-477.10.1.el8_8.x86_64", "#1 SMP Wed Apr 5 13:35:01 EDT 2023", None, "4.18.y"),
    ("6.1.0-37-amd64", "#1 SMP PREEMPT_DYNAMIC", None, "6.1.y"),
    # a uname -v that names another branch is not believed
    ("6.1.0-37-amd64", "#1 SMP Debian 6.12.38-1~bpo12+1 (2025-07-16)", None, "6.1.y"),
    # kernels that say what they are
    ("6.18.44-fc-v1147", "#1 SMP PREEMPT_DYNAMIC @0", None, "6.18.44"),
    ("5.9.0-rc2", "#1 SMP", None, "5.9-rc2"),
])
def test_parse_host(release, uname_v, signature, expect):
    assert str(parse_host(release, uname_v, signature)) == expect


# ----------------------------------------------------------------------------- eras

@pytest.mark.parametrize("version,era", [
    ("4.14", Era.LE_5_0), ("5.0.21", Era.LE_5_0), ("5.1", Era.V5_1_TO_5_8),
    ("5.8.18", Era.V5_1_TO_5_8), ("5.9-rc1", Era.V5_1_TO_5_8), ("5.9-rc3", Era.V5_1_TO_5_8),
    ("5.9-rc4", Era.V5_9_TO_5_17), ("5.9", Era.V5_9_TO_5_17), ("5.17.15", Era.V5_9_TO_5_17),
    ("5.18-rc1", Era.V5_18), ("5.18.19", Era.V5_18), ("5.19", Era.V5_19_TO_6_6),
    ("6.6.60", Era.V5_19_TO_6_6), ("6.7-rc1", Era.GE_6_7), ("6.18.44", Era.GE_6_7),
    ("5.4.y", Era.V5_1_TO_5_8),
])
def test_era_of(version, era):
    assert Era.of(V(version)) is era


def test_eras_come_from_the_table():
    assert [e.value for e in Era] == [row["label"] for row in kernel_facts.ERAS]
    assert [Era.of(V(v)) for v in ERA_VERSIONS] == list(Era)
    assert ERA_VERSIONS == ("4.19", "5.4", "5.10", "5.18", "6.1", "6.12")
    for era in Era:
        lo, mid, hi = era_span(era)
        assert {Era.of(lo), Era.of(mid), Era.of(hi)} == {era}, era
        info = ERA_INFO[era]
        if info.fact is not None:
            assert FACTS[info.fact].first == info.first


# ----------------------------------------------------------------------------- facts

@pytest.mark.parametrize("version,expect", [
    ("4.14", False), ("4.14.231", False), ("4.14.232", True), ("4.14.y", None),
    ("4.19", False), ("4.19.0", False), ("4.19.188", False), ("4.19.189", True),
    ("4.19.y", None), ("4.9.300", None), ("4.9", False), ("4.20", False),
    ("5.4", False), ("5.4.46", False), ("5.4.47", True), ("5.4.300", True), ("5.4.y", None),
    ("5.7", False), ("5.7.2", False), ("5.7.3", True),
    ("5.8-rc1", True), ("5.8", True), ("5.8.18", True),
    ("5.9-rc3", True), ("5.9-rc4", False), ("5.9", False), ("6.18", False),
])
def test_gup_breaks_cow_by_stable_level(version, expect):
    assert has_fact(V(version), "gup_breaks_cow") is expect


@pytest.mark.parametrize("name,before,since", [
    ("mprotect_try_change_writable", "5.19.17", "6.0"),
    ("mprotect_clean_writable", "6.1.150", "6.2"),
    ("break_ksm_unshare", "6.1.150", "6.2"),
    ("swapin_refcount", "5.17.15", "5.18"),
    ("ksm_tracepoints", "6.3.13", "6.4"),
    ("reuse_ksm_page", "5.0.21", "5.1"),
    ("pgreuse", "5.9-rc3", "5.9-rc4"),
])
def test_fact_boundaries(name, before, since):
    assert has_fact(V(before), name) is False
    assert has_fact(V(since), name) is True


def test_reuse_ksm_page_ends_before_5_9_rc4():
    assert has_fact(V("5.9-rc3"), "reuse_ksm_page") is True
    assert has_fact(V("5.9-rc4"), "reuse_ksm_page") is False


def test_the_table_is_well_formed():
    names = [row["name"] for row in kernel_facts.FACTS]
    assert len(names) == len(set(names))
    for f in FACTS.values():
        assert isinstance(f.status, FactStatus)
        assert f.commit is None or re.fullmatch(r"[0-9a-f]{12}", f.commit), f.name
        assert f.last is None or f.first < f.last, f.name
        assert f.title and f.summary and f.checked, f.name
        for b in f.backports:
            assert b.branch < f.first.mm and isinstance(b.status, FactStatus)
    for era in Era:
        fact_name = ERA_INFO[era].fact
        assert fact_name is None or fact_name in FACTS
    assert set(COUNTERS) == set(kernel_facts.COUNTERS)
    assert set(FEATURES) == set(kernel_facts.FEATURES)


def test_counters_and_features_follow_their_facts():
    assert not has_counter(V("6.3"), "stable_nodes_removed")
    assert has_counter(V("6.4"), "stable_nodes_removed")       # 739100c88f49, not 6.2
    assert not has_counter(V("5.9-rc3"), "pgreuse") and has_counter(V("5.9"), "pgreuse")
    assert not has_feature(V("5.3"), "swap") and has_feature(V("5.4"), "swap")
    assert FEATURE_NOTES["tracepoints"] == "tracepoints (ksm:*): 6.4, 739100c88f49"


def test_unknown_fact_is_an_error():
    with pytest.raises(InvalidArgument, match="unknown kernel fact"):
        has_fact(V("5.4"), "no_such_fact")


# ----------------------------------------------------------------------------- clauses

def test_a_clause_with_a_patch_level_skips_an_unknown_level():
    low = VersionClause("..", V("5.4.0"), V("5.4.46"))
    high = VersionClause(">=", V("5.4.47"))
    branch = VersionClause("==", V("5.4"))
    for c in (low, high):
        assert not c.contains(V("5.4.y"))
    assert branch.contains(V("5.4.y"))
    assert low.contains(V("5.4")) and low.contains(V("5.4.46")) and not low.contains(V("5.4.47"))


def test_release_candidates_sit_between_releases_in_clauses():
    assert not VersionClause(">=", V("5.9")).contains(V("5.9-rc2"))
    assert not VersionClause("<=", V("5.8")).contains(V("5.9-rc2"))
    assert VersionClause("<", V("5.9")).contains(V("5.9-rc2"))
    assert VersionClause("==", V("5.9")).contains(V("5.9.3"))


def test_format_table_lists_every_era_and_fact():
    from ksmdiff.versions import format_table
    text = format_table()
    for era in Era:
        assert era.value in text
    for name, f in FACTS.items():
        assert name in text and f.ranges() in text


def test_a_range_is_empty_only_below_its_high_end_at_that_precision():
    """6.12.54..6.12 is every 6.12.y from .54 on; 5.4.47..5.4.10 and 5.8..5.1 hold nothing."""
    from ksmdiff.versions import VersionClause
    def rng(a, b):
        return VersionClause("..", KernelVersion.parse(a), KernelVersion.parse(b))
    assert not rng("6.12.54", "6.12").empty()
    assert rng("6.12.54", "6.12").contains(KernelVersion.parse("6.12.118"))
    assert not rng("6.12.54", "6.12").contains(KernelVersion.parse("6.12.53"))
    assert not rng("6.12.54", "6.12").contains(KernelVersion.parse("6.13.1"))
    assert rng("5.4.47", "5.4.10").empty()
    assert rng("5.8", "5.1").empty()
    assert not rng("5.4", "5.4.10").empty()
