"""An action's compiled instances are shared between the eras whose era signature
(compile.era_signature: the proc variants it calls, the ``kernel in`` tests it reaches)
is the same.  The shortcut must never hand one era another era's formulas."""

from ksmdiff.kspec.internal import compile as C
from ksmdiff.kspec.internal.check import build_model
from ksmdiff.kspec.internal.parse import parse_text
from ksmdiff.versions import Era

TEXT = """model m
domain I = 0..1
var a: map[I] of 0..3 = 0
var n: 0..3 = 0
proc bump(i: I) when kernel in <=5.8 { a[i] := 1 }
proc bump(i: I) when kernel in >=5.9 { a[i] := 2 }
action plain(i: I) prints "plain {i}" { n := 1 }
action variant(i: I) prints "variant {i}" { bump(i) }
action test_in() prints "in" { if kernel in >=6.7 { n := 3 } else { n := 2 } }
action in_observe() prints "obs" { if seen[0] { n := 0 } }
observe seen(i: I) = kernel in 5.18 and n == 1
invariant small: n <= 3
"""

OLD, MID, NEW = Era.LE_5_0, Era.V5_9_TO_5_17, Era.GE_6_7


def _model():
    return build_model("m", [parse_text(TEXT, "t.kspec")])


def _formulas(ts, name):
    out = []
    for inst in ts.instances:
        if inst.name == name:
            out.append((inst.guard.sexpr(), sorted((str(k), v.sexpr()) for k, v in inst.next.items()),
                        sorted((p, a.sexpr()) for p, a in inst.asserts.items())))
    return out


def test_the_signature_follows_proc_variants_and_kernel_tests():
    m = _model()
    acts = {a.name: a for a in m.actions}
    sig = lambda name, era: C.era_signature(m, acts[name].body, era)  # noqa: E731
    assert sig("plain", OLD) == sig("plain", NEW)
    assert sig("variant", OLD) != sig("variant", MID)
    assert sig("variant", MID) == sig("variant", NEW)
    assert sig("test_in", OLD) == sig("test_in", MID)
    assert sig("test_in", MID) != sig("test_in", NEW)
    # a kernel test inside an observable the action reads
    assert sig("in_observe", Era.V5_18) != sig("in_observe", MID)


def test_cached_instances_are_the_formulas_a_fresh_compile_gives():
    m = _model()
    C.clear_instances()
    shared = {era: C.compile_ts(m, era) for era in Era}
    for era in Era:
        C.clear_instances()
        fresh = C.compile_ts(m, era)
        for name in ("plain", "variant", "test_in", "in_observe"):
            assert _formulas(shared[era], name) == _formulas(fresh, name), (era, name)
    # and the eras that differ do differ (the cache did not paper over them)
    assert _formulas(shared[OLD], "variant") != _formulas(shared[MID], "variant")
    assert _formulas(shared[MID], "test_in") != _formulas(shared[NEW], "test_in")


def test_another_model_object_never_takes_cached_instances():
    """A mutant is a model of its own: its changed proc must be compiled, not looked up."""
    C.clear_instances()
    base = _model()
    C.compile_ts(base, OLD)
    mutant = build_model("m", [parse_text(TEXT.replace("a[i] := 1", "a[i] := 3"), "t.kspec")])
    got = _formulas(C.compile_ts(mutant, OLD), "variant")
    assert got != _formulas(C.compile_ts(base, OLD), "variant")
    assert any("#b011" in nxt for _g, nexts, _a in got for _k, nxt in nexts)


def test_the_real_spec_shares_only_what_is_the_same():
    """fork and munmap run no era-specific code (one compile for every era); fill reaches
    do_wp_page and settle a ``kernel in >=6.7`` test (compiled apart where they differ).
    A shared instance is the formula a fresh compile gives (checked by Z3: two compiles
    need not build identical terms)."""
    import z3
    from ksmdiff.kspec import load_spec
    m = load_spec().models["user"]
    C.clear_instances()
    ts = {era: C.compile_ts(m, era) for era in (Era.LE_5_0, Era.V5_1_TO_5_8, Era.GE_6_7)}

    def inst(era, name, args=None):
        return [i for i in ts[era].instances if i.name == name
                and (args is None or tuple(c for _p, _d, c in i.args) == args)][0]
    assert inst(Era.LE_5_0, "fork") is inst(Era.GE_6_7, "fork")
    assert inst(Era.LE_5_0, "munmap", (0, 1)) is inst(Era.V5_1_TO_5_8, "munmap", (0, 1))
    assert inst(Era.LE_5_0, "fill", (0, 0, 1)) is not inst(Era.V5_1_TO_5_8, "fill", (0, 0, 1))
    assert inst(Era.LE_5_0, "settle") is inst(Era.V5_1_TO_5_8, "settle")
    assert inst(Era.LE_5_0, "settle") is not inst(Era.GE_6_7, "settle")
    shared = inst(Era.GE_6_7, "fork")
    C.clear_instances()
    fresh = [i for i in C.compile_ts(m, Era.GE_6_7).instances if i.name == "fork"][0]
    assert shared is not fresh and sorted(shared.next) == sorted(fresh.next)
    s = z3.Solver()
    s.add(z3.Or([shared.guard != fresh.guard] +
                [shared.next[k] != fresh.next[k] for k in shared.next]))
    assert s.check() == z3.unsat
    C.clear_instances()
