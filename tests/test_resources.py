"""Where ksmdiff keeps its caches (ksmdiff/internal/resources.py cache_dir)."""

from ksmdiff.internal.resources import cache_dir


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KSMDIFF_CACHE", str(tmp_path / "k"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "k"
    monkeypatch.delenv("KSMDIFF_CACHE")
    assert cache_dir() == tmp_path / "x" / "ksmdiff"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_dir() == tmp_path / "h" / ".cache" / "ksmdiff"


def test_the_probe_the_lab_and_the_spec_cache_share_it(monkeypatch, tmp_path):
    from ksmdiff.kspec.internal import tscache
    from ksmdiff.lab import store
    monkeypatch.setenv("KSMDIFF_CACHE", str(tmp_path))
    monkeypatch.delenv("KSMDIFF_LAB_DIR", raising=False)
    assert store.lab_dir().is_relative_to(tmp_path)
    assert tscache.cache_dir() == tmp_path

