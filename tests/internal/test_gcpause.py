"""collector_paused: the cyclic collector is off inside and back as it was after."""

from __future__ import annotations

import gc
import weakref

import pytest

from ksmdiff.internal.gcpause import collector_paused


class _Node:
    pass


def test_the_collector_is_off_inside_and_back_after():
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_it_stays_off_when_it_was_off():
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_exception_restores_it():
    with pytest.raises(KeyError):
        with collector_paused():
            raise KeyError("x")
    assert gc.isenabled()


def test_a_cycle_made_inside_is_collected_after():
    with collector_paused():
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        assert ref() is not None          # only the cyclic collector frees a cycle
    gc.collect()
    assert ref() is None
