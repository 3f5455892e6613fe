import json

import pytest

from ksmdiff.errors import InputError, InvalidArgument
from ksmdiff.lab import store
from ksmdiff.versions import Era, KernelVersion


@pytest.fixture
def lab(tmp_path, monkeypatch):
    d = tmp_path / "kernels"
    monkeypatch.setenv("KSMDIFF_LAB_DIR", str(d))
    return d


def _meta(**kw):
    m = {"release": "6.1.0-42-amd64", "version": "6.1.176", "origin": "debian",
         "source_hash": None, "config_hash": None, "patches": []}
    m.update(kw)
    return m


def test_round_trip(lab, tmp_path):
    img = tmp_path / "bzImage"
    img.write_bytes(b"MZ kernel")
    mods = tmp_path / "mods" / "kernel" / "fs"
    mods.mkdir(parents=True)
    (mods / "9p.ko").write_bytes(b"ko")
    k = store.write_kernel("6.1", img, _meta(), modules_dir=tmp_path / "mods")
    assert store.lab_dir() == lab
    assert k.vmlinuz.read_bytes() == b"MZ kernel"
    assert (k.modules / "kernel" / "fs" / "9p.ko").read_bytes() == b"ko"
    assert k.version == KernelVersion(6, 1, 176)
    assert k.era is Era.V5_19_TO_6_6
    assert k.origin is store.Origin.DEBIAN
    again = store.get_kernel("6.1")
    assert again == k
    on_disk = json.loads((lab / "6.1" / "meta.json").read_text())
    assert on_disk == k.meta()
    assert set(on_disk) == set(store.META_FIELDS)


def test_replace_and_list_order(lab, tmp_path):
    img = tmp_path / "bzImage"
    img.write_bytes(b"a")
    store.write_kernel("6.1", img, _meta())
    store.write_kernel("5.4", img, _meta(release="5.4.59", version="5.4.59", origin="source",
                                         source_hash="abc", config_hash="def",
                                         patches=["x.patch"]))
    img.write_bytes(b"b")
    store.write_kernel("6.1", img, _meta(version="6.1.177"))
    names = [(k.name, str(k.version)) for k in store.list_kernels()]
    assert names == [("5.4", "5.4.59"), ("6.1", "6.1.177")]
    assert store.get_kernel("6.1").vmlinuz.read_bytes() == b"b"
    assert store.get_kernel("5.4").modules is None
    assert store.get_kernel("5.4").patches == ("x.patch",)
    assert not [p for p in lab.iterdir() if p.name.startswith(".")]


def test_missing_kernel_is_none(lab):
    assert store.get_kernel("5.10") is None
    assert store.list_kernels() == []


def test_damaged_entry_is_reported_not_hidden(lab, tmp_path):
    img = tmp_path / "bzImage"
    img.write_bytes(b"a")
    store.write_kernel("6.1", img, _meta())
    bad = lab / "6.12"
    bad.mkdir()
    (bad / "vmlinuz").write_bytes(b"x")
    (bad / "meta.json").write_text('{"name": "6.12",\n "release": }')
    (lab / ".tmp-6.12-xyz").mkdir()          # a killed write: ignored
    problems = []
    assert [k.name for k in store.list_kernels(problems)] == ["6.1"]
    assert len(problems) == 1
    assert problems[0].location.line == 2 and "not JSON" in str(problems[0])
    with pytest.raises(InputError):
        store.get_kernel("6.12")


@pytest.mark.parametrize("bad, what", [
    (dict(version="6.1"), "patch level"),
    (dict(version="six"), "version"),
    (dict(origin="fedora"), "origin"),
    (dict(patches="a.patch"), "patches"),
    (dict(source_hash=3), "source_hash"),
    (dict(built="yesterday"), "ISO"),
    (dict(extra=1), "unknown"),
])
def test_bad_meta_refused_and_nothing_written(lab, tmp_path, bad, what):
    img = tmp_path / "bzImage"
    img.write_bytes(b"a")
    with pytest.raises(InputError, match=what):
        store.write_kernel("6.1", img, _meta(**bad))
    assert store.get_kernel("6.1") is None


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "-x", "x" * 65])
def test_bad_names(lab, tmp_path, name):
    img = tmp_path / "bzImage"
    img.write_bytes(b"a")
    with pytest.raises(InvalidArgument):
        store.write_kernel(name, img, _meta())


def test_missing_image(lab, tmp_path):
    with pytest.raises(InvalidArgument, match="no kernel image"):
        store.write_kernel("6.1", tmp_path / "nope", _meta())
