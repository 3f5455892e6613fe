"""lab fetch: apt runs only on private files; modules are picked by their .modinfo."""

import struct
from pathlib import Path

import pytest

from ksmdiff.errors import EnvironmentProblem
from ksmdiff.lab import fetch


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KSMDIFF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_apt_commands_use_only_private_dirs(cache):
    root = fetch.prepare_apt_root("bookworm")
    assert root == cache / "lab" / "apt" / "bookworm"
    cmd = fetch.apt_command(root, "update")
    assert cmd[0] == "apt-get" and cmd[-1] == "update"
    opts = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "-o")
    for key in ("Dir::Etc::sourcelist", "Dir::Etc::sourceparts", "Dir::Etc::preferences",
                "Dir::Etc::preferencesparts", "Dir::State", "Dir::State::status",
                "Dir::Cache"):
        assert Path(opts[key]).is_relative_to(root), key
    assert not any("/etc/apt" in a or "/var/lib/apt" in a or "/var/cache/apt" in a
                   for a in cmd)
    sources = (root / "sources.list").read_text()
    assert "bookworm main" in sources and "bookworm-security main" in sources
    assert "signed-by=" in sources
    assert (root / "sources.list.d").is_dir() and not any((root / "sources.list.d").iterdir())
    q = fetch.apt_cache_command(root, "depends", "linux-image-amd64")
    assert q[0] == "apt-cache" and f"Dir::State={root / 'state'}" in q


@pytest.mark.parametrize("pkg, kernel", [("6.1.176-1", "6.1.176"), ("5.10.262-1", "5.10.262"),
                                         ("6.12.57-1+deb13u1", "6.12.57"), ("6.1-1", "6.1.0")])
def test_kernel_version_from_package_version(pkg, kernel):
    assert fetch.kernel_version(pkg) == kernel


def test_kernel_version_refuses_garbage():
    with pytest.raises(EnvironmentProblem):
        fetch.kernel_version("garbage")


def test_unknown_name_is_a_usage_error(cache):
    from ksmdiff.errors import UsageError
    with pytest.raises(UsageError, match="5.10, 6.1, 6.12"):
        fetch.fetch("4.19")


def fake_module(depends: str) -> bytes:
    """An ELF64 relocatable with a .modinfo section (what the kernel's modpost writes)."""
    modinfo = f"license=GPL\0depends={depends}\0".encode()
    shstr = b"\0.modinfo\0.shstrtab\0"
    data_off = 64
    shstr_off = data_off + len(modinfo)
    shoff = (shstr_off + len(shstr) + 7) // 8 * 8
    hdr = bytearray(64)
    hdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", hdr, 0x28, shoff)
    struct.pack_into("<HHH", hdr, 0x3A, 64, 3, 2)
    body = bytes(hdr) + modinfo + shstr
    body += b"\0" * (shoff - len(body))
    secs = [bytes(64),
            struct.pack("<IIQQQQIIQQ", 1, 1, 0, 0, data_off, len(modinfo), 0, 0, 1, 0),
            struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, shstr_off, len(shstr), 0, 0, 1, 0)]
    return body + b"".join(secs)


def test_modinfo_reads_depends():
    assert fetch.modinfo(fake_module("a,b"))["depends"] == "a,b"


def test_guest_modules_closure_order_and_builtins(tmp_path):
    import lzma
    mod = tmp_path / "lib" / "modules" / "6.1.0-x"
    for rel, deps in {"kernel/fs/9p/9p.ko": "9pnet,netfs", "kernel/net/9p/9pnet.ko": "",
                      "kernel/fs/netfs/netfs.ko": "", "kernel/net/9p/9pnet_virtio.ko": "9pnet,virtio",
                      "kernel/drivers/block/brd.ko": "", "kernel/other/unused.ko": ""}.items():
        p = mod / (rel + ".xz")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(lzma.compress(fake_module(deps)))
    (mod / "modules.builtin").write_text("kernel/drivers/virtio/virtio.ko\n"
                                         "kernel/drivers/virtio/virtio_pci.ko\n")
    out = tmp_path / "out"
    order = fetch.extract_guest_modules(mod, out)
    assert "kernel/other/unused.ko" not in order
    assert order.index("kernel/net/9p/9pnet.ko") < order.index("kernel/fs/9p/9p.ko")
    assert order.index("kernel/fs/netfs/netfs.ko") < order.index("kernel/fs/9p/9p.ko")
    assert set(order) == {"kernel/fs/9p/9p.ko", "kernel/net/9p/9pnet.ko",
                          "kernel/fs/netfs/netfs.ko", "kernel/net/9p/9pnet_virtio.ko",
                          "kernel/drivers/block/brd.ko"}
    assert (out / "kernel/fs/9p/9p.ko").read_bytes()[:4] == b"\x7fELF"   # decompressed
    dep = (out / "modules.dep").read_text()
    assert "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko" in dep


def test_missing_module_is_an_environment_problem(tmp_path):
    mod = tmp_path / "m"
    mod.mkdir()
    with pytest.raises(EnvironmentProblem, match="neither built in"):
        fetch.extract_guest_modules(mod, tmp_path / "out", wanted=("brd",))
