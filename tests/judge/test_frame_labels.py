"""observe.FrameLabels keeps the canonical per-record labels of observe.label_frames from
what moved: random batches of moves (several per page within a batch, pages leaving and
coming back) against labelling every page from scratch."""

from __future__ import annotations

import random

from ksmdiff.observe import FrameLabels, label_frames


def test_incremental_labels_equal_labels_from_scratch():
    rng = random.Random(1)
    for _trial in range(300):
        labels, state = FrameLabels(), {}
        npages = rng.randint(1, 30)
        prev: dict = {}
        for _step in range(20):
            for _ in range(rng.randint(0, 12)):
                page = rng.randrange(npages)
                frame = rng.choice([None, None] + list(range(8)))
                labels.move(page, frame)
                state[page] = frame
            changed = set(labels.labels())
            want = label_frames(sorted(state.items()))
            for page in range(npages):
                assert labels.label(page) == want.get(page)
                if prev.get(page) != want.get(page):
                    assert page in changed          # every page whose label moved
            prev = want


def test_a_new_frame_first_in_page_order_relabels_the_pages_after_it():
    labels = FrameLabels()
    for page in range(4):
        labels.move(page, "k")
    labels.labels()
    assert [labels.label(p) for p in range(4)] == ["F0"] * 4
    labels.move(0, "new")
    assert set(labels.labels()) == {0, 1, 2, 3}
    assert [labels.label(p) for p in range(4)] == ["F0", "F1", "F1", "F1"]
    assert set(labels.labels()) == set()            # nothing moved since
