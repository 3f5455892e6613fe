"""The reuse_ksm_page race on the race kernels (SMP 5.4.59, window widened on all alike).

5.4-no-freeze (a count check instead of page_ref_freeze) is not caught by the corpus.  With
the window widened and ksmd meeting the page inside it, it leaks nothing here either: in
5.4.59 ksmd maps a stable page into another process only after rechecking its mapping
under the page lock, which the write fault holds across reuse_ksm_page (docs/kernel-notes.md,
"Reuse").  What differs is seen only in the instrumentation's counter: on the clean kernel
ksmd's first lookup inside the window finds the frozen page stale and stops (one lookup);
without the freeze it takes the page, compares it and tries the lock (two lookups).  The
control kernels give ksmd an unlocked final lookup (patches/5.4-ksmd-nolock.patch): there
the freeze alone keeps the write private, and without it the write leaks into the other
process.  Each test is one boot with two CPUs (about a minute under TCG, more on a loaded
machine); a kernel not built skips with the reason.
"""

from __future__ import annotations

import pytest

from ksmdiff.lab import guest, race, store

pytestmark = [pytest.mark.slow, pytest.mark.lab]

# Measured per round (docs/kernel-notes.md): ksmd met the page inside a 20 ms window in
# 35-45% of the rounds; the control leaked in 25%.  20 and 30 rounds make a run that never
# meets the window, or a control that never leaks, a chance below 1 in 1000.
ROUNDS, CONTROL_ROUNDS = 20, 30


def _run(name: str, rounds: int) -> race.Outcome:
    why = guest.qemu_available()
    if why:
        pytest.skip(why)
    if store.get_kernel(name) is None:
        pytest.skip(f"lab kernel {name} is not in the store: not run "
                    f"(ksmdiff lab build --all-known)")
    return race.run(name, rounds=rounds)


@pytest.mark.parametrize("name, lookups", [("5.4-race", 1), ("5.4-race-ksmd-nolock", 1),
                                           ("5.4-no-freeze-race", 2)])
def test_no_leak_although_ksmd_met_the_window(name, lookups):
    out = _run(name, ROUNDS)
    assert out.leaks == 0, out.summary()
    assert out.reused > 0 and out.met > 0, (
        "the race was not exercised (no reuse, or ksmd never inside the window): "
        + out.summary())
    # frozen: the first lookup finds the node stale; not frozen: the walk's lookup and
    # the final (trylock) lookup both reach the page
    assert max(r.lookups for r in out.rounds) == lookups, out.rounds


def test_the_control_leaks_without_the_freeze():
    out = _run("5.4-no-freeze-race-ksmd-nolock", CONTROL_ROUNDS)
    assert out.leaks > 0, out.summary()
    leaked = [r for r in out.rounds if r.leak]
    # (not a count of lookups: ksmd's lookups may all come before the window opens and
    # its merge land inside it; CI saw leaked rounds with 0 and 1 lookups counted)
    assert all(r.v0 == 0xEE and r.reused for r in leaked), leaked
