"""Model: MADV_UNMERGEABLE of uffd-wp KSM pages per era (break_ksm(): a write fault that
handle_userfault() refuses before 6.2, an unshare fault from 6.2)."""

import pytest

from .conftest import last, run

BODY = """A: mmap buf 4
A: fill buf 0xcf
A: madvise buf mergeable
ksm settle
A: uffd-wp buf
A: madvise buf unmergeable
"""


@pytest.mark.parametrize("version, stays", [("5.7", True), ("5.10", True), ("6.1", True),
                                             ("6.2", False), ("6.12", False)])
def test_unmerge_under_uffd_wp(version, stays):
    r = run(BODY, version)
    assert last(r, "A/buf[0].ksm") == {stays}
    assert last(r, "A/buf[3].mapcount") == ({4} if stays else {1})
    assert last(r, "A/buf[2].content") == {"0xcf"}
    if version == "6.1":
        # still in the stable tree either way: ksm_merging_pages drops at the next scan
        assert last(r, "counter.ksm_merging_pages@A") == {4}


def test_uffd_wp_alone_changes_no_page():
    r = run(BODY.replace("A: madvise buf unmergeable\n", ""), "6.12")
    assert last(r, "A/buf[0].ksm") == {True}
    assert last(r, "A/buf[0].mapcount") == {4}
