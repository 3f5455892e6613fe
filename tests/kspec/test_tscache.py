"""The compiled transition system kept on disk (ksmdiff/kspec/internal/tscache.py)."""

import z3

from ksmdiff.gen.specmap import world_for
from ksmdiff.kspec.internal import engine, tscache
from ksmdiff.versions import Era

ERA = Era.V5_1_TO_5_8


def _terms(ts):
    out = [ts.step_guard, ts.init, ts.types]
    out += [ts.step_next[k] for k in ts.keys]
    out += list(ts.step_labels.values()) + list(ts.invariants.values())
    for inst in ts.instances:
        out.append(inst.guard)
        out += list(inst.next.values()) + list(inst.labels.values())
    return out


def test_round_trip_gives_the_compiled_terms(tmp_path, monkeypatch):
    monkeypatch.setenv("KSMDIFF_CACHE", str(tmp_path))
    model = world_for(ERA).model
    engine._TS_CACHE.pop((id(model), ERA), None)
    first = tscache.compiled(model, ERA)
    path = tscache.cache_path(model, ERA)
    assert path.exists() and path.is_relative_to(tmp_path)
    engine._TS_CACHE.pop((id(model), ERA), None)
    again = tscache.load(model, path)
    assert again is not None and again is not first
    assert again.model is model
    assert [i.name for i in again.instances] == [i.name for i in first.instances]
    a, b = _terms(first), _terms(again)
    assert len(a) == len(b)
    assert all(x.eq(y) for x, y in zip(a, b))


def test_damaged_file_is_compiled_again(tmp_path, monkeypatch):
    monkeypatch.setenv("KSMDIFF_CACHE", str(tmp_path))
    model = world_for(ERA).model
    path = tscache.cache_path(model, ERA)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a pickle")
    assert tscache.load(model, path) is None
    engine._TS_CACHE.pop((id(model), ERA), None)
    ts = tscache.compiled(model, ERA)
    assert ts.era is ERA and ts.instances
    assert tscache.load(model, path) is not None     # rewritten


def test_key_follows_the_era_and_the_model():
    model = world_for(ERA).model
    assert tscache.cache_key(model, ERA) != tscache.cache_key(model, Era.GE_6_7)
    assert tscache.cache_key(model, ERA) == tscache.cache_key(model, ERA)


def test_dump_refuses_terms_it_cannot_rebuild():
    x = z3.Int("x")
    try:
        tscache.dump_terms([x + 1 > 0])
    except tscache._Unsupported:
        return
    raise AssertionError("an Int term was dumped")


def test_key_follows_the_fact_tables_answer(monkeypatch):
    from ksmdiff.kspec.internal import check
    model = world_for(ERA).model
    assert model.facts, "the user model reads a fact through `kernel has`"
    before = tscache.cache_key(model, ERA)
    real = check.era_has
    monkeypatch.setattr(check, "era_has", lambda fact, era: not real(fact, era))
    assert tscache.cache_key(model, ERA) != before
