"""Each invariant fires on a state that breaks it (so a clean run means something)."""

from ksmdiff.model.invariants import check

from .conftest import interp

MERGED = """A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
"""


def props(it):
    return {v.prop for v in check(it.m, 0, 1)}


def slot(it, i=0, proc="A"):
    return it.m.procs[proc].regions["buf"].pages[i]


def test_clean_state_has_no_violation():
    assert props(interp(MERGED, "6.18")) == set()


def test_ksm_page_mapped_writable():
    it = interp(MERGED, "6.18")
    slot(it).pte.writable = True
    assert {"ksm-writable", "writable-exclusive"} <= props(it)


def test_zero_page_mapped_writable():
    it = interp("A: mmap buf 1\nA: read buf\n", "6.18")
    slot(it).pte.writable = True
    assert "ksm-writable" in props(it)


def test_isolation():
    it = interp(MERGED, "6.18")
    slot(it).pte.frame.content = slot(it).pte.frame.content.__class__(0x5a, 0x01)
    assert props(it) == {"isolation"}


def test_refcount_below_mapcount_and_pins():
    it = interp(MERGED + "A: pin buf[0]\n", "6.18")
    slot(it).pte.frame.refcount = 2                  # mapcount 2 + pin 1
    assert props(it) == {"refcount"}


def test_mapcount_must_match_the_ptes():
    it = interp(MERGED, "6.18")
    slot(it).pte.frame.mapcount = 3
    slot(it).pte.frame.refcount = 3
    assert props(it) == {"refcount"}


def test_negative_counts():
    it = interp(MERGED, "6.18")
    slot(it).pte.frame.swap_refs = -1
    assert "refcount" in props(it)


def test_freed_page_still_mapped():
    it = interp("A: mmap buf 1\nA: fill buf 0x5a\n", "6.18")
    slot(it).pte.frame.freed = True
    assert "refcount" in props(it)


def test_writable_page_mapped_twice():
    it = interp("A: mmap buf 1\nA: fill buf 0x5a\nA: fork B\n", "6.18")
    slot(it).pte.writable = True
    assert props(it) == {"writable-exclusive"}
