"""The guest's initramfs, qemu command line and boot image, without booting."""

import os
import stat
import struct
from pathlib import Path

import pytest

from ksmdiff.lab import guest, store


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, data) of a newc archive."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701", pos
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            assert len(data) % 512 == 0
            return out
        out[name] = (mode, body)


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    monkeypatch.setenv("KSMDIFF_LAB_DIR", str(tmp_path / "kernels"))
    img = tmp_path / "bzImage"
    img.write_bytes(b"kernel")
    mods = tmp_path / "mods"
    for rel in ("kernel/a/virtio.ko", "kernel/a/virtio_pci.ko", "kernel/b/brd.ko"):
        (mods / rel).parent.mkdir(parents=True, exist_ok=True)
        (mods / rel).write_bytes(rel.encode())
    (mods / "modules.dep").write_text("kernel/a/virtio_pci.ko: kernel/a/virtio.ko\n"
                                      "kernel/a/virtio.ko:\nkernel/b/brd.ko:\n")
    return store.write_kernel("6.1", img, {
        "release": "6.1.0-9-amd64", "version": "6.1.176", "origin": "debian",
        "source_hash": None, "config_hash": None, "patches": []}, modules_dir=mods)


def test_module_load_order_dependencies_first(kernel):
    order = guest.module_load_order(kernel.modules)
    assert order.index("kernel/a/virtio.ko") < order.index("kernel/a/virtio_pci.ko")
    assert set(order) == {"kernel/a/virtio.ko", "kernel/a/virtio_pci.ko", "kernel/b/brd.ko"}
    assert guest.module_load_order(None) == []


def test_initramfs_contents(kernel, tmp_path):
    bb = tmp_path / "busybox"
    bb.write_bytes(b"\x7fELF-busybox")
    files = read_cpio(guest.initramfs_entries(kernel, bb).finish())
    mode, init = files["init"]
    assert stat.S_ISREG(mode) and mode & 0o111
    init = init.decode()
    assert init.startswith("#!/bin/busybox sh")
    for needed in ("mount -t 9p", "trans=virtio", ",ro,", "/dev/vda /dev/ram0",
                   "mkswap $SWAPDEV", "swapon $SWAPDEV", "mount -t tracefs", "chroot $H", "reboot -f",
                   guest.GUEST_OUT):
        assert needed in init, needed
    assert files["bin/busybox"] == (stat.S_IFREG | 0o755, b"\x7fELF-busybox")
    order = files["etc/lab-modules"][1].decode().split()
    assert order == guest.module_load_order(kernel.modules)
    for rel in order:
        assert files[f"lib/modules/{rel}"][1] == rel.encode()
    for d in ("proc", "sys", "dev", "host", "lib/modules/kernel/a"):
        assert stat.S_ISDIR(files[d][0]), d


def test_initramfs_for_a_kernel_without_modules(tmp_path, monkeypatch):
    monkeypatch.setenv("KSMDIFF_LAB_DIR", str(tmp_path / "kernels"))
    img = tmp_path / "bzImage"
    img.write_bytes(b"k")
    k = store.write_kernel("5.4", img, {
        "release": "5.4.59", "version": "5.4.59", "origin": "source", "source_hash": "s",
        "config_hash": "c", "patches": []})
    bb = tmp_path / "busybox"
    bb.write_bytes(b"bb")
    files = read_cpio(guest.initramfs_entries(k, bb).finish())
    assert files["etc/lab-modules"][1].strip() == b""


def test_qemu_command(kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("KSMDIFF_CACHE", str(tmp_path / "cache"))
    cmd = guest.qemu_command(kernel, tmp_path / "initrd", tmp_path / "out")
    text = " ".join(cmd)
    assert cmd[0] == "qemu-system-x86_64"
    assert "-accel tcg" in text and "-cpu max" in text and "-no-reboot" in text
    assert "-nographic" in text and "-smp 1,sockets=1," in text
    two = guest.qemu_command(kernel, tmp_path / "initrd", tmp_path / "out", smp=2)
    # one CPU per socket: a kernel without ACPI sees CPUs through SeaBIOS's MP table,
    # which lists one per package
    assert two[two.index("-smp") + 1] == "2,sockets=2,cores=1,threads=1"
    assert "mem-merge=off" in cmd[cmd.index("-machine") + 1]   # host ksmd leaves it alone
    host = [a for a in cmd if "mount_tag=host" in a][0]
    assert "path=/," in host and "readonly=on" in host
    out = [a for a in cmd if "mount_tag=out" in a][0]
    assert f"path={tmp_path / 'out'}" in out and "readonly" not in out
    drive = cmd[cmd.index("-drive") + 1]
    assert f"file={tmp_path / 'out' / guest.SWAP_IMAGE}" in drive and "if=virtio" in drive
    append = cmd[cmd.index("-append") + 1]
    assert "panic=-1" in append and "console=ttyS0" in append
    assert "acpi=noirq" in append.split()      # no AML run per PCI device under TCG
    # two emulated NUMA nodes (no SRAT without ACPI), for 'mmap R N node K'
    assert f"numa=fake={guest.NUMA_NODES}" in append.split() and guest.NUMA_NODES == 2


def test_both_inits_share_their_start_and_mount_cgroup2():
    for init in (guest.INIT, guest.INIT_DRIVER):
        assert guest._INIT_START in init and guest._INIT_SWAP in init
        assert init.count("insmod") == guest._INIT_START.count("insmod")
    assert "mount -t cgroup2 cgroup2 /sys/fs/cgroup" in guest._INIT_START
    assert "for c in memory cpuset" in guest._INIT_START
    assert "echo +$c > /sys/fs/cgroup/cgroup.subtree_control" in guest._INIT_START
    assert "ksmdiff-lab-driver" in guest.INIT_DRIVER and "ksmdiff-lab-driver" not in guest.INIT
    assert "run.sh" in guest.INIT and "run.sh" not in guest.INIT_DRIVER


def _elf_with_note(name: bytes, ntype: int) -> bytes:
    desc = b"\0" * 4
    note = struct.pack("<III", len(name) + 1, len(desc), ntype) + name + b"\0"
    note += b"\0" * (-len(note) % 4) + desc
    hdr = bytearray(64)
    hdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", hdr, 0x20, 64)
    struct.pack_into("<HH", hdr, 0x36, 56, 1)
    ph = struct.pack("<IIQQQQQQ", 4, 0, 120, 0, 0, len(note), len(note), 4)
    return bytes(hdr) + ph + note


def test_pvh_note_detection():
    assert guest.has_pvh_note(_elf_with_note(b"Xen", 18))
    assert not guest.has_pvh_note(_elf_with_note(b"Xen", 17))
    assert not guest.has_pvh_note(_elf_with_note(b"GNU", 18))
    assert not guest.has_pvh_note(b"MZ not an elf")


def test_boot_image_extracts_a_pvh_vmlinux(tmp_path, monkeypatch):
    import lzma
    monkeypatch.setenv("KSMDIFF_LAB_DIR", str(tmp_path / "kernels"))
    monkeypatch.setenv("KSMDIFF_CACHE", str(tmp_path / "cache"))
    elf = _elf_with_note(b"Xen", 18)
    img = tmp_path / "bzImage"
    img.write_bytes(b"MZ setup code" + lzma.compress(elf, format=lzma.FORMAT_XZ))
    k = store.write_kernel("x", img, {"release": "6.1.0", "version": "6.1.1",
                                      "origin": "debian", "source_hash": None,
                                      "config_hash": None, "patches": []})
    got = guest.boot_image(k)
    assert got != k.vmlinuz and got.read_bytes() == elf
    # no PVH entry: the bzImage itself
    img.write_bytes(b"MZ" + lzma.compress(_elf_with_note(b"Xen", 1), format=lzma.FORMAT_XZ))
    k2 = store.write_kernel("y", img, {"release": "6.1.0", "version": "6.1.1",
                                       "origin": "debian", "source_hash": None,
                                       "config_hash": None, "patches": []})
    assert guest.boot_image(k2) == k2.vmlinuz


def test_find_busybox_is_static():
    try:
        bb = guest.find_busybox()
    except Exception as e:
        pytest.skip(f"no busybox: {e}")
    assert guest._is_static(bb)


def test_guest_config_fragment_lists_what_the_guest_uses():
    text = (Path(guest.__file__).parent / "configs" / "guest.config").read_text()
    opts = {l.split("=")[0] for l in text.splitlines() if l.startswith("CONFIG_")}
    for o in ("CONFIG_KSM", "CONFIG_9P_FS", "CONFIG_NET_9P_VIRTIO", "CONFIG_VIRTIO_PCI",
              "CONFIG_BLK_DEV_RAM", "CONFIG_SWAP", "CONFIG_PROC_PAGE_MONITOR",
              "CONFIG_BLK_DEV_INITRD", "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_DEVTMPFS",
              "CONFIG_ADVISE_SYSCALLS", "CONFIG_PVH", "CONFIG_VIRTIO_BLK",
              "CONFIG_NETWORK_FILESYSTEMS"):
        assert o in opts, o


def test_numa_fragment_is_what_the_placement_scenarios_need_and_5_4_has_it():
    """NUMA (numa=fake=2 needs NUMA_EMU, which needs SMP; move_pages needs MIGRATION) and
    the memory and cpuset cgroups, in their own fragment so the mutant and race kernels
    keep their builds; the lab's 5.4 and 5.8 are built with it."""
    import tomllib
    here = Path(guest.__file__).parent
    text = (here / "configs" / "numa.config").read_text()
    opts = {l.split("=")[0] for l in text.splitlines() if l.startswith("CONFIG_")}
    assert opts == {"CONFIG_SMP", "CONFIG_NR_CPUS", "CONFIG_NUMA", "CONFIG_NUMA_EMU",
                    "CONFIG_MIGRATION", "CONFIG_CGROUPS", "CONFIG_MEMCG", "CONFIG_CPUSETS"}
    known = tomllib.loads((here / "known.toml").read_text())
    assert all("numa.config" in known["kernel"][k]["config"] for k in ("5.4", "5.8"))


def test_host_tmp_paths_keep_a_venv_made_under_tmp(monkeypatch):
    """The guest mounts its own tmpfs on /tmp; a venv made there (as CI makes one) is bound
    back in, or the agent's interpreter is missing (env: '/tmp/.../python': not found)."""
    from ksmdiff.lab import guest
    monkeypatch.setattr(guest.sys, "prefix", "/tmp/ci-x/venv")
    monkeypatch.setattr(guest, "guest_pythonpath",
                        lambda: "/tmp/ci-x/venv/lib/python3.11/site-packages:/usr/lib/python3")
    assert guest.host_tmp_paths() == ["/tmp/ci-x/venv"]
    assert 'mount -o bind "/hosttmp${p#/tmp}" "$H$p"' in guest.INIT


def test_guest_sources_are_byte_compiled_beside_them(tmp_path, monkeypatch):
    """The tree the guest imports gets its __pycache__ (the guest cannot write it), once."""
    import ksmdiff
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("X = 1\n")
    monkeypatch.setattr(ksmdiff, "__file__", str(pkg / "__init__.py"))
    monkeypatch.setattr(guest, "_COMPILED_ONCE", [])
    guest.compile_guest_sources()
    assert sorted(p.name.split(".")[0] for p in (pkg / "__pycache__").iterdir()) == [
        "__init__", "mod"]
    (pkg / "late.py").write_text("Y = 2\n")
    guest.compile_guest_sources()                  # once per process
    assert not any(p.name.startswith("late") for p in (pkg / "__pycache__").iterdir())


def test_the_scenarios_initramfs_carries_the_probe_and_the_driver(kernel, tmp_path):
    """No Python and no host tree in the scenarios' guest: the static probe and driver
    are in the initramfs, the init starts the driver on the "out" share."""
    bb, probe, drv = tmp_path / "busybox", tmp_path / "probe", tmp_path / "driver"
    bb.write_bytes(b"bb")
    probe.write_bytes(b"\x7fELF-probe")
    drv.write_bytes(b"\x7fELF-driver")
    files = read_cpio(guest.initramfs_entries(kernel, bb, (probe, drv)).finish())
    assert files["bin/ksmdiff-probe"] == (stat.S_IFREG | 0o755, b"\x7fELF-probe")
    assert files["bin/ksmdiff-lab-driver"] == (stat.S_IFREG | 0o755, b"\x7fELF-driver")
    init = files["init"][1].decode()
    assert "/bin/ksmdiff-lab-driver /out /bin/ksmdiff-probe" in init
    assert "swapon $SWAPDEV" in init and "mount_tag" not in init
    assert "chroot" not in init and "python" not in init and " host " not in init


def test_the_scenarios_guest_gets_no_host_tree(kernel, tmp_path, monkeypatch):
    monkeypatch.setenv("KSMDIFF_CACHE", str(tmp_path / "cache"))
    cmd = guest.qemu_command(kernel, tmp_path / "initrd", tmp_path / "out", host_tree=False)
    assert not [a for a in cmd if "mount_tag=host" in a]
    assert [a for a in cmd if "mount_tag=out" in a]
