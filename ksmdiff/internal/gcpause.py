"""The cyclic garbage collector held off for a block of bulk work.

A fuzz batch makes hundreds of thousands of small, acyclic objects that live for the whole
batch (records, their field tuples, a worker's results unpickled in bulk).  Each of them
counts towards a collection, and they survive the young generations, so the collector runs
over and over and its older-generation passes walk the whole heap: unpickling a batch's
model runs took six times as long with the collector on as with it off.  Reference counting
frees all of it; what the block leaves in a cycle is collected once the collector is back.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic cyclic collection inside the block; the collector is enabled again on
    the way out (also on an exception) if it was enabled on the way in."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
