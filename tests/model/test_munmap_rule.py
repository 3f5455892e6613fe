"""The munmap rule: munmap unmaps the still-mapped pages of its range and leaves pages
already unmapped alone; another region's page is never touched (the probe keeps holes
reserved, the validator accepts the statement, the model predicts it)."""

from __future__ import annotations

import pytest

from .conftest import ERA_VERSIONS, run

HOLE = """A: mmap a 4
A: munmap a[1]
A: mmap b 1
A: fill b 0x01
A: munmap a
A: write b[0] 0x02
"""


def _one(r, key):
    allowed = r.records[-1].fields[key]
    assert len(allowed) == 1, (key, allowed)
    return next(iter(allowed))


@pytest.mark.parametrize("version", ERA_VERSIONS)
def test_munmap_over_a_hole_leaves_the_next_region_alone(version):
    r = run(HOLE, version)
    assert _one(r, "A/b[0].present") is True
    assert _one(r, "A/b[0].content") == "0x01+0x02"
    assert _one(r, "A/b[0].fault") == "reused"        # b's own anonymous page, count 1
    after_munmap = r.records[-2].fields
    assert all(f"A/a[{i}].present" not in after_munmap for i in range(4)), \
        "an unmapped page has no record fields"
    assert next(iter(after_munmap["A/b[0].present"])) is True


def test_a_second_munmap_of_the_same_page_changes_nothing():
    r = run("A: mmap a 2\nA: fill a 0x11\nA: munmap a[1]\nA: munmap a[1]\n", "6.1")
    assert r.records[-1].fields == r.records[-2].fields
