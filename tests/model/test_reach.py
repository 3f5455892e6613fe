"""Model semantics of the ksmd gauges, per-process counters, prctl readback, run=2 and
smart scan, per era."""

import pytest

from ksmdiff.observe import ANY

from .conftest import ERA_VERSIONS, last, run

MERGE3 = """A: mmap buf 4
A: fill buf 0x5a
A: fill buf[3] 0x11
A: madvise buf mergeable
"""


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_gauges_through_a_first_merge(version):
    r = run(MERGE3 + "ksm scan 1\n", version)
    assert last(r, "counter.pages_volatile") == {4}       # new items: checksum only
    assert last(r, "counter.pages_unshared") == {0}
    assert last(r, "counter.full_scans") == {1}
    r = run(MERGE3 + "ksm scan 2\n", version)
    assert last(r, "counter.pages_unshared") == {1}       # the 0x11 page waits
    assert last(r, "counter.pages_volatile") == {0}
    assert last(r, "counter.pages_shared") == {1}
    assert last(r, "counter.pages_sharing") == {2}


@pytest.mark.parametrize("version", ["6.1", "6.6", "6.12"])
def test_per_process_counters_count_from_creation(version):
    r = run(MERGE3 + "ksm scan 2\nA: fork B\n", version)
    assert last(r, "counter.ksm_rmap_items@A") == {4}
    assert last(r, "counter.ksm_merging_pages@A") == {3}
    assert last(r, "counter.ksm_rmap_items@B") == {0}
    r = run(MERGE3 + "ksm scan 2\nA: fork B\nksm scan 2\n", version)
    assert last(r, "counter.ksm_merging_pages@B") == {3}


@pytest.mark.parametrize("version,present", [
    ("5.4", set()), ("5.19", {"ksm_merging_pages"}),
    ("6.1", {"ksm_merging_pages", "ksm_rmap_items"}),
    ("6.6", {"ksm_merging_pages", "ksm_rmap_items", "ksm_zero_pages"})])
def test_per_process_counters_only_where_the_kernel_has_them(version, present):
    r = run(MERGE3 + "ksm scan 2\n", version)
    got = {k.split(".", 1)[1].split("@")[0] for k in r.records[-1].fields
           if k.endswith("@A") and "prctl" not in k}
    assert got == present


@pytest.mark.parametrize("version", ["6.4", "6.12"])
def test_prctl_readback(version):
    r = run("A: prctl merge on\nA: fork B\nA: prctl merge off\n", version)
    assert last(r, "counter.prctl_merge@A") == {False}
    assert last(r, "counter.prctl_merge@B") == {True}


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_unmerge_all_unmerges_and_keeps_mm_slots(version):
    r = run("""A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
A: fork B
ksm settle
ksm unmerge-all
""", version)
    f = r.records[-1].fields
    for p in "AB":
        for i in (0, 1):
            assert f[f"{p}/buf[{i}].ksm"] == {False}
            assert f[f"{p}/buf[{i}].mapcount"] == {1}
    assert f["counter.pages_shared"] == {0} and f["counter.pages_sharing"] == {0}
    assert f["counter.pages_unshared"] == {0} and f["counter.pages_volatile"] == {0}
    assert f["counter.full_scans"] is ANY                  # ksm_scan.seqnr = 0
    # the mm_slots and VM_MERGEABLE stay: the next run merges again
    r = run("""A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
ksm unmerge-all
ksm scan 2
""", version)
    assert last(r, "A/buf[0].ksm") == {True}
    assert r.violations == ()


@pytest.mark.parametrize("version", ["6.7", "6.12", "6.18"])
def test_smart_scan_skips_by_age(version):
    body = "ksm set smart_scan 1\nA: mmap m 1\nA: madvise m mergeable\nA: fill m 0x61\n"
    skipped = []
    for n in range(1, 14):
        r = run(body + f"ksm scan {n}\n", version, requires="smart-scan")
        skipped.append(min(last(r, "counter.pages_skipped")))
    # ages 3.. give skip_age() 1, 2, 4, 8: skipped at scans 5, 7, 8, 10-13
    assert skipped == [0, 0, 0, 0, 1, 1, 2, 3, 3, 4, 5, 6, 7]


def test_smart_scan_off_skips_nothing():
    r = run("A: mmap m 1\nA: madvise m mergeable\nA: fill m 0x61\nksm scan 20\n", "6.12")
    assert last(r, "counter.pages_skipped") == {0}


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_mlock_write_faults_ksm_pages_out(version):
    r = run("""A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
A: fork B
ksm settle
A: mlock buf[0]
""", version)
    assert last(r, "A/buf[0].ksm") == {False} and last(r, "A/buf[0].mapcount") == {1}
    assert last(r, "A/buf[1].ksm") == {True}
    if "counter.cow_ksm" in r.records[-1].fields:
        assert last(r, "counter.cow_ksm") == {1}


@pytest.mark.parametrize("version", ["4.19", "5.4", "6.12"])
def test_mlock_of_a_read_only_range_only_reads(version):
    r = run("A: mmap buf 1\nA: mprotect buf ro\nA: mlock buf\n", version)
    assert last(r, "A/buf[0].frame") == {"Z"}


@pytest.mark.parametrize("version,merges", [("5.4", True), ("6.1", False), ("6.4", False),
                                            ("6.5", True), ("6.12", True)])
def test_prot_none_is_skipped_by_ksmd_on_6_1_to_6_4(version, merges):
    r = run("A: mmap buf 2\nA: fill buf 0x11\nA: mprotect buf none\n"
            "A: madvise buf mergeable\nksm settle\n", version)
    assert last(r, "A/buf[0].ksm") == {merges}


@pytest.mark.parametrize("version", ["4.19", "5.4", "6.1", "6.12"])
def test_force_write_copies_and_keeps_the_pte_read_only(version):
    r = run("A: mmap buf 1\nA: fill buf 0x11\nA: fork B\nA: mprotect buf ro\n"
            "A: force-write buf 0x01\n", version)
    assert last(r, "A/buf[0].fault") == {"copied"}
    assert last(r, "A/buf[0].content") == {"0x11+0x01"}
    assert last(r, "B/buf[0].content") == {"0x11"}
