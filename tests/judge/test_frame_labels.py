"""observe.FrameLabels keeps the labels of observe.label_frames (a frame is named by its first
page in page order) from what moved: random batches of moves (several per page within a
batch, pages leaving and coming back) against labelling every page from scratch, and the
stability that makes a record cost what changed: no frame is relabelled unless its first
page changed."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ksmdiff.observe import FrameLabels, label_frames

NPAGES = 24
FRAMES = [None, None] + list(range(8))

# a run: batches of (page, frame) moves, labels() asked after each batch
moves = st.lists(st.lists(st.tuples(st.integers(0, NPAGES - 1), st.sampled_from(FRAMES)),
                          max_size=14), min_size=1, max_size=12)


def _check_run(batches) -> None:
    labels, state = FrameLabels(), {}
    prev: dict = {}
    for batch in batches:
        for page, frame in batch:
            labels.move(page, frame)
            state[page] = frame
        changed = set(labels.labels())
        want = label_frames(sorted(state.items()))
        for page in range(NPAGES):
            assert labels.label(page) == want.get(page)
            if prev.get(page) != want.get(page):
                assert page in changed          # every page whose label moved
        prev = want


@settings(max_examples=400, deadline=None)
@given(moves)
def test_incremental_labels_equal_labels_from_scratch(batches):
    _check_run(batches)


def test_incremental_labels_equal_labels_from_scratch_long_runs():
    rng = random.Random(1)
    for _trial in range(100):
        _check_run([[(rng.randrange(NPAGES), rng.choice(FRAMES))
                     for _ in range(rng.randint(0, 12))] for _step in range(40)])


@settings(max_examples=300, deadline=None)
@given(moves)
def test_a_label_changes_only_where_the_frames_first_page_changed(batches):
    """Label stability: between two batches, a page that did not move keeps its label
    unless its frame's first page changed; every label names the first page of its frame."""
    labels, state = FrameLabels(), {}
    prev_label: dict = {}
    prev_first: dict = {}
    for batch in batches:
        moved = set()
        for page, frame in batch:
            labels.move(page, frame)
            state[page] = frame
            moved.add(page)
        changed = set(labels.labels())
        first: dict = {}
        for page in sorted(state):
            if state[page] is not None:
                first.setdefault(state[page], page)
        for page, frame in state.items():
            if frame is None:
                continue
            assert labels.label(page) == str(first[frame])
            if page not in moved and prev_first.get(frame) == first[frame]:
                assert page not in changed
                assert labels.label(page) == prev_label[page]
        prev_label = {p: labels.label(p) for p in state}
        prev_first = first


def test_a_new_frame_first_in_page_order_relabels_no_other_frame():
    labels = FrameLabels(lambda p: f"A/buf[{p}]")
    for page in range(4):
        labels.move(page, "k")
    labels.labels()
    assert [labels.label(p) for p in range(4)] == ["A/buf[0]"] * 4
    labels.move(0, "new")
    # page 0 moved; the old frame lost its first page, so its pages get its new first
    assert set(labels.labels()) == {0, 1, 2, 3}
    assert [labels.label(p) for p in range(4)] == ["A/buf[0]"] + ["A/buf[1]"] * 3
    assert set(labels.labels()) == set()            # nothing moved since
    labels.move(3, "other")                         # a new frame after the others' first
    assert set(labels.labels()) == {3}
    assert labels.label(3) == "A/buf[3]" and labels.label(1) == "A/buf[1]"


def test_a_page_joining_before_the_first_relabels_that_frame_only():
    labels = FrameLabels()
    for page, frame in ((2, "a"), (3, "a"), (4, "b"), (5, "b")):
        labels.move(page, frame)
    labels.labels()
    labels.move(1, "b")
    assert set(labels.labels()) == {1, 4, 5}
    assert [labels.label(p) for p in range(1, 6)] == ["1", "2", "2", "1", "1"]
