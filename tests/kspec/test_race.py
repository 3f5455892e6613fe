"""The race model: the freeze protocol holds in 5.1-5.8; get_ksm_page spins only on
swapcache pages (mm/ksm.c), unlike the thread's "waiting" description."""

import z3

from ksmdiff.kspec import load_spec, prove
from ksmdiff.kspec.internal.compile import compile_ts
from ksmdiff.kspec.internal.prove import Unroller
from ksmdiff.versions import Era


def test_race_properties_proved_for_5_1_to_5_8():
    rs = prove(load_spec(), eras=[Era.V5_1_TO_5_8], models=["race"])
    assert rs and all(r.status == "proved" for r in rs)
    assert {r.prop for r in rs} >= {"freeze", "refcount", "exclusive_write", "stale_node"}
    assert all(r.method == "complete" for r in rs if r.prop != "vacuity")  # unbounded
    [vac] = [r for r in rs if r.prop == "vacuity"]      # and not vacuously so
    assert vac.method == "vacuity" and "every reachable state" in vac.note


def _reachable(ts, label, depth=16):
    u = Unroller(ts)
    s = z3.SolverFor("QF_BV")
    s.add(u.init(), u.at(ts.types, 0))
    for t in range(depth):
        s.add(u.step(t))
        s.push()
        s.add(u.step_expr(ts.step_labels[label], t))
        if s.check() == z3.sat:
            return True
        s.pop()
    return False


def test_get_ksm_page_spins_only_on_swapcache_pages():
    """The thread says a parallel get_ksm_page *waits* while reuse_ksm_page has the page
    frozen.  The code spins only on PageSwapCache; reuse never freezes a swapcache page,
    so ksmd finds the frozen page stale at once and never spins against the fault."""
    ts = compile_ts(load_spec().models["race"], Era.V5_1_TO_5_8)
    assert _reachable(ts, ("ksmd.g_get", "gkp_frozen_stale"))   # stale at once
    assert not _reachable(ts, ("ksmd.g_get", "gkp_spin"))      # never waits on the fault
    assert _reachable(ts, ("fault.f_reuse", "race_reuse"))     # and reuse does happen
