"""ksmdiff.lab.build without compiling: sources, config fragments, cache keys, patches,
the copy a patched kernel starts from, and the known-kernels list."""

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from ksmdiff.errors import InputError, InvalidArgument
from ksmdiff.lab import build as B


def _fake_tree(root: Path, ksm_text: str = "int ksm;\n") -> Path:
    """The files detect_source looks for, plus one more."""
    for rel, text in {"Makefile": "VERSION = 5\nPATCHLEVEL = 4\nSUBLEVEL = 59\n",
                      "Kconfig": "mainmenu \"x\"\n", "mm/ksm.c": ksm_text,
                      "mm/memory.c": "int memory;\n", "arch/x86/Kconfig": "\n",
                      "kernel/fork.c": "int fork;\n"}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("KSMDIFF_LAB_DIR", str(tmp_path / "kernels"))
    monkeypatch.setenv("KSMDIFF_LAB_BUILD_DIR", str(tmp_path / "build"))
    return tmp_path


# ----------------------------------------------------------------------------- sources

def test_detect_tree_and_subdir(tmp_path):
    t = _fake_tree(tmp_path / "linux")
    assert B.detect_source(t) == B.Source(B.SourceKind.TREE, t.resolve())
    holder = tmp_path / "holder"
    _fake_tree(holder / "linux-5.4.59")
    (holder / "README").mkdir()
    s = B.detect_source(holder)
    assert s.kind is B.SourceKind.TREE and s.path.name == "linux-5.4.59"


def test_detect_refuses_what_is_not_a_kernel(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a kernel tree"):
        B.detect_source(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a tar archive"):
        B.detect_source(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="no such source"):
        B.detect_source(tmp_path / "absent")
    two = tmp_path / "two"
    _fake_tree(two / "a")
    _fake_tree(two / "b")
    with pytest.raises(InputError, match="several kernel trees"):
        B.detect_source(two)


def test_tarball_detect_and_unpack(tmp_path):
    _fake_tree(tmp_path / "linux-5.4.59")
    tb = tmp_path / "linux-5.4.59.tar.gz"
    with tarfile.open(tb, "w:gz") as tf:
        tf.add(tmp_path / "linux-5.4.59", arcname="linux-5.4.59")
    s = B.detect_source(tb)
    assert (s.kind, s.subdir) == (B.SourceKind.TARBALL, "linux-5.4.59")
    missing = B.materialize(s, tmp_path / "out")
    assert missing == []
    assert (tmp_path / "out/mm/ksm.c").read_text() == "int ksm;\n"
    assert not (tmp_path / "out.partial").exists()
    assert B.source_hash(s) == B.source_hash(s)


def test_git_sources_bare_and_subdir_and_absent_blobs(tmp_path):
    work = tmp_path / "work"
    _fake_tree(work / "linux-5.4.59")
    _git("init", "-q", cwd=work)
    _git("add", ".", cwd=work)
    _git("commit", "-qm", "tree", cwd=work)
    bare = tmp_path / "bare.git"
    _git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    s = B.detect_source(bare)
    assert (s.kind, s.subdir) == (B.SourceKind.GIT, "linux-5.4.59")
    assert B.detect_source(work / ".git").kind is B.SourceKind.GIT
    # the work tree itself is a tree source (files on disk, holder directory)
    assert B.detect_source(work).kind is B.SourceKind.TREE
    h = B.source_hash(s)
    # remove one blob from the store: extraction goes on and reports it
    oid = subprocess.run(["git", f"--git-dir={bare}", "rev-parse",
                          "HEAD:linux-5.4.59/kernel/fork.c"], capture_output=True,
                         text=True, check=True).stdout.strip()
    subprocess.run(["git", f"--git-dir={bare}", "repack", "-qad"], check=True)
    # unpack into loose objects so one can be deleted
    loose = tmp_path / "loose.git"
    _git("init", "-q", "--bare", str(loose), cwd=tmp_path)
    for pack in (bare / "objects/pack").glob("*.pack"):
        subprocess.run(["git", f"--git-dir={loose}", "unpack-objects", "-q"],
                       stdin=open(pack, "rb"), check=True)
    for ref in ("HEAD",):
        head = subprocess.run(["git", f"--git-dir={bare}", "rev-parse", ref],
                              capture_output=True, text=True).stdout.strip()
        subprocess.run(["git", f"--git-dir={loose}", "update-ref", "HEAD", head], check=True)
    (loose / "objects" / oid[:2] / oid[2:]).unlink()
    s2 = B.detect_source(loose)
    assert B.source_hash(s2) == h          # the tree id does not depend on the blobs held
    missing = B.materialize(s2, tmp_path / "out")
    assert missing == ["kernel/fork.c"]
    assert (tmp_path / "out/mm/ksm.c").read_text() == "int ksm;\n"


def test_tree_hash_follows_content(tmp_path):
    t = _fake_tree(tmp_path / "linux")
    s = B.detect_source(t)
    h1 = B.source_hash(s)
    assert B.source_hash(s) == h1
    (t / "mm/ksm.c").write_text("int ksm2;\n")
    assert B.source_hash(s) != h1


# ----------------------------------------------------------------------------- config

def test_parse_config_and_errors(tmp_path):
    cfg = B.parse_config("# c\nCONFIG_KSM=y\n# CONFIG_SMP is not set\nCONFIG_X=\"a b\"\n\n")
    assert cfg == {"CONFIG_KSM": "y", "CONFIG_SMP": "n", "CONFIG_X": '"a b"'}
    with pytest.raises(InputError) as e:
        B.parse_config("CONFIG_KSM=y\nKSM=y\n", "frag.config")
    assert e.value.location.file == "frag.config" and e.value.location.line == 2
    with pytest.raises(InputError, match="no value"):
        B.parse_config("CONFIG_KSM=\n")


def test_lost_options():
    wanted = {"CONFIG_KSM": "y", "CONFIG_SMP": "n", "CONFIG_9P_FS": "y", "CONFIG_HZ": "100"}
    final = {"CONFIG_KSM": "y", "CONFIG_HZ": "250"}
    assert B.lost_options(wanted, final) == ["CONFIG_9P_FS=y (got not set)",
                                             "CONFIG_HZ=100 (got 250)"]
    assert B.lost_options(wanted, dict(final, CONFIG_9P_FS="y", CONFIG_HZ="100")) == []


def test_fragments_order_override_and_hash(tmp_path):
    extra = tmp_path / "extra.config"
    extra.write_text("# CONFIG_KSM is not set\nCONFIG_SMP=y\n")
    frags = B.fragments([extra])
    assert frags[0] == B.BASE_FRAGMENT and frags[-1] == extra
    wanted = B.wanted_options(frags)
    assert wanted["CONFIG_KSM"] == "n" and wanted["CONFIG_SMP"] == "y"
    h = B.config_hash(frags)
    extra.write_text("CONFIG_SMP=y\n")
    assert B.config_hash(frags) != h
    with pytest.raises(InputError, match="no such config fragment"):
        B.fragments([tmp_path / "nope.config"])


def test_base_fragment_asks_for_what_the_probe_needs():
    wanted = B.wanted_options([B.BASE_FRAGMENT])
    for opt in ("CONFIG_KSM", "CONFIG_PROC_PAGE_MONITOR", "CONFIG_ADVISE_SYSCALLS",
                "CONFIG_SWAP", "CONFIG_BLK_DEV_RAM", "CONFIG_BLK_DEV_INITRD",
                "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_TMPFS", "CONFIG_UNIX", "CONFIG_9P_FS"):
        assert wanted[opt] == "y", opt


# ----------------------------------------------------------------------------- cache key

def _patch(tmp_path, name, body):
    p = tmp_path / name
    p.write_text(body)
    return B.read_patch(p)


GOOD = """A header that says what the patch does.

--- a/mm/ksm.c
+++ b/mm/ksm.c
@@ -1 +1 @@
-int ksm;
+int ksm_patched;
"""


def test_build_key(tmp_path):
    p1 = _patch(tmp_path, "a.patch", GOOD)
    p2 = _patch(tmp_path, "b.patch", GOOD.replace("ksm_patched", "ksm_other"))
    k0 = B.build_key("s", "c", [])
    assert B.build_key("s", "c", []) == k0
    assert len({k0, B.build_key("s2", "c", []), B.build_key("s", "c2", []),
                B.build_key("s", "c", [p1]), B.build_key("s", "c", [p2]),
                B.build_key("s", "c", [p1, p2]), B.build_key("s", "c", [p2, p1])}) == 7


# ----------------------------------------------------------------------------- patches

def test_read_patch_refuses_what_is_not_a_diff(tmp_path):
    p = _patch(tmp_path, "ok.patch", GOOD)
    assert p.files == ("mm/ksm.c",)
    bad = tmp_path / "bad.patch"
    bad.write_text("just words\n")
    with pytest.raises(InputError, match="not a unified diff") as e:
        B.read_patch(bad)
    assert e.value.location.file == str(bad)
    bad.write_text("@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(InputError, match="hunk before any file header"):
        B.read_patch(bad)
    with pytest.raises(InputError, match="no such patch"):
        B.read_patch(tmp_path / "absent.patch")


def test_apply_and_refuse_leaving_tree_unchanged(tmp_path):
    t = _fake_tree(tmp_path / "t")
    good = _patch(tmp_path, "good.patch", GOOD)
    stale = _patch(tmp_path, "stale.patch", GOOD.replace("-int ksm;", "-int nothing;")
                   .replace("mm/ksm.c", "mm/memory.c"))
    before = {p: p.read_bytes() for p in t.rglob("*") if p.is_file()}
    with pytest.raises(B.BuildError, match="stale.patch does not apply"):
        B.apply_patches(t, [good, stale])
    after = {p: p.read_bytes() for p in t.rglob("*") if p.is_file()}
    assert after == before                      # the good one was reverted
    B.apply_patches(t, [good])
    assert (t / "mm/ksm.c").read_text() == "int ksm_patched;\n"


def test_clone_built_tree_links_sources_and_copies_outputs(tmp_path):
    clean = _fake_tree(tmp_path / "clean")
    (clean / "mm/ksm.o").write_bytes(b"object")
    sources = {"Makefile", "Kconfig", "mm/ksm.c", "mm/memory.c", "arch/x86/Kconfig",
               "kernel/fork.c"}
    B.clone_built_tree(clean, tmp_path / "mutant", sources)
    m = tmp_path / "mutant"
    assert os.stat(m / "mm/ksm.c").st_ino == os.stat(clean / "mm/ksm.c").st_ino
    assert os.stat(m / "mm/ksm.o").st_ino != os.stat(clean / "mm/ksm.o").st_ino
    assert os.stat(m / "mm/ksm.o").st_mtime_ns == os.stat(clean / "mm/ksm.o").st_mtime_ns
    # patch(1) replaces the file: the clean tree keeps its source
    B.apply_patches(m, [_patch(tmp_path, "p.patch", GOOD)])
    assert (clean / "mm/ksm.c").read_text() == "int ksm;\n"
    assert (m / "mm/ksm.c").read_text() == "int ksm_patched;\n"
    # and output rewritten in place in the copy does not reach the clean tree
    with open(m / "mm/ksm.o", "r+b") as f:
        f.write(b"OBJECT")
    assert (clean / "mm/ksm.o").read_bytes() == b"object"


def test_lab_patches_name_their_mistake_and_mutant():
    patches = sorted(B.PATCH_DIR.glob("*.patch"))
    # the race kernels' instrumentation and control say so first; every other is a mistake
    other = {"5.4-race-window.patch": "Instrumentation, not a mistake: ",
             "5.4-ksmd-nolock.patch": "Control, not a mirror of a spec mutant: "}
    assert {p.name for p in patches} >= set(other)
    for p in patches:
        if p.name in other:
            assert p.read_text().startswith(other[p.name]), p
    patches = [p for p in patches if p.name not in other]
    assert len(patches) == 4
    mutants = {p.stem for p in (Path(__file__).parents[2] / "spec/mutants").glob("*.kspec")}
    for p in patches:
        text = p.read_text()
        assert text.startswith("Mistake: "), p
        assert "Mirrors the spec mutant" in text, p
        assert B.read_patch(p).files[0].startswith("mm/")
        stem = p.stem.removeprefix("5.4-").replace("-", "_")
        assert stem in mutants, (p, mutants)


def test_bad_input_changes_nothing(dirs):
    t = _fake_tree(dirs / "linux")
    bad = dirs / "bad.patch"
    bad.write_text("not a diff\n")
    with pytest.raises(InputError):
        B.build(t, "5.4-bad", patches=[bad])
    with pytest.raises(InvalidArgument):
        B.build(t, "no/slash")
    assert not (dirs / "kernels").exists() and not (dirs / "build").exists()


def test_missing_build_tools_are_named_before_anything_is_written(dirs, monkeypatch):
    """A machine without flex (a fresh Debian has none) is told what to install, and the
    build cache and the store stay as they were."""
    from ksmdiff.errors import EnvironmentProblem
    real = shutil.which
    monkeypatch.setattr(B.shutil, "which", lambda t: None if t in ("flex", "bc") else real(t))
    assert {"flex", "bc"} <= set(B.missing_build_tools())
    t = _fake_tree(dirs / "linux")
    with pytest.raises(EnvironmentProblem, match=r"flex.*bc.*apt-get install flex bc"):
        B.build(t, "5.4-tools")
    assert not (dirs / "kernels").exists() and not (dirs / "build" / "logs").exists()


# ----------------------------------------------------------------------------- known kernels

def test_known_file_parses_and_names_its_patches():
    k = B.load_known()
    names = [x.name for x in k.kernels]
    assert {"5.4", "5.8", "5.4-no-freeze", "5.4-freeze-at-2", "5.4-no-stable-node-check",
            "5.4-reuse-mapcount-2"} <= set(names)
    assert all(p.is_file() for x in k.kernels for p in x.patches)


def test_known_without_sources_reports_not_run(dirs, monkeypatch):
    monkeypatch.setenv("KSMDIFF_LAB_SOURCES", str(dirs / "nothing-here"))
    out = B.build_known()
    assert out and all(o is B.Outcome.NO_SOURCE for _, o, _ in out)
    from ksmdiff.cli import main
    assert main(["lab", "build", "--all-known"]) == 3


def test_known_without_source_but_stored_says_stored(dirs, monkeypatch):
    # a kernel built earlier (its source since removed) stays runnable: not "no source"
    from ksmdiff.lab import store
    monkeypatch.setenv("KSMDIFF_LAB_SOURCES", str(dirs / "nothing-here"))
    img = dirs / "bzImage"
    img.write_bytes(b"\0" * 64)
    store.write_kernel("5.8", img, {"release": "5.8.1", "version": "5.8.1",
                                    "origin": "source", "source_hash": "ab" * 8,
                                    "config_hash": "cd" * 8, "patches": []})
    out = dict((n, (o, d)) for n, o, d in B.build_known())
    assert out["5.8"][0] is B.Outcome.STORED and "5.8.1" in out["5.8"][1]
    assert out["5.4"][0] is B.Outcome.NO_SOURCE


def test_known_finds_a_tree_under_a_search_root(dirs, monkeypatch):
    _fake_tree(dirs / "roots" / "linux-5.8.1")
    monkeypatch.setenv("KSMDIFF_LAB_SOURCES", str(dirs / "roots"))
    k = B.load_known()
    assert B.find_source(k, "linux-5.8.1").path == (dirs / "roots/linux-5.8.1").resolve()
    assert B.find_source(k, "linux-5.4.59") is None


def test_known_refuses_a_malformed_file(tmp_path):
    f = tmp_path / "known.toml"
    f.write_text('[kernel."5.4"]\nsource = "nowhere"\n')
    with pytest.raises(InputError, match="unknown source"):
        B.load_known(f)
    f.write_text('[kernel."5.4"\n')
    with pytest.raises(InputError) as e:
        B.load_known(f)
    assert e.value.location.file == str(f)


def test_trees_of_killed_builds_are_removed_unless_being_built(tmp_path):
    import fcntl
    root = tmp_path / "build"
    (root / "locks").mkdir(parents=True)
    for name in ("done", "killed", "busy"):
        (root / name / "tree").mkdir(parents=True)
    (root / "done" / "state.json").write_text("{}")
    with open(root / "locks" / "busy.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        B._remove_stale(root)
    assert sorted(p.name for p in root.iterdir()) == ["busy", "done", "locks"]


# ----------------------------------------------------------------------------- whole builds
# A stand-in kernel tree whose Makefile knows the targets lab build uses: the whole flow
# (configure, verify, make, store, cache, patched copy) runs in a second.

FAKE_MAKEFILE = """VERSION = 5
PATCHLEVEL = 4
SUBLEVEL = 59
tinyconfig:
\tprintf 'CONFIG_64BIT=y\\n' > .config
olddefconfig:
\tif [ -e drop-ksm ]; then sed -i '/^CONFIG_KSM=/d' .config; fi
bzImage: arch/x86/boot/bzImage
arch/x86/boot/bzImage: mm/ksm.c mm/memory.c
\tmkdir -p arch/x86/boot
\tcat mm/ksm.c mm/memory.c > arch/x86/boot/bzImage
\techo $@ >> compiled
kernelrelease:
\t@echo 5.4.59
"""

FAKE_MERGE = """#!/bin/sh
shift; shift
cat "$@" >> .config
"""


def _fake_kernel(root: Path) -> Path:
    _fake_tree(root)
    (root / "Makefile").write_text(FAKE_MAKEFILE)
    m = root / "scripts/kconfig/merge_config.sh"
    m.parent.mkdir(parents=True)
    m.write_text(FAKE_MERGE)
    m.chmod(0o755)
    return root


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("patch") is None,
                    reason="needs make and patch")
def test_whole_build_cache_and_patched_copy(dirs):
    src = _fake_kernel(dirs / "linux-5.4.59")
    r = B.build(src, "5.4")
    assert not r.cached and r.kernel.release == "5.4.59"
    assert r.kernel.vmlinuz.read_text() == "int ksm;\nint memory;\n"
    assert r.kernel.source_hash == B.source_hash(B.detect_source(src))
    again = B.build(src, "5.4")
    assert again.cached and again.key == r.key
    clean_tree = B.build_root() / r.key[:24] / "tree"
    assert (clean_tree / "compiled").read_text().count("bzImage") == 1

    p = dirs / "5.4-x.patch"
    p.write_text(GOOD)
    m = B.build(src, "5.4-x", patches=[p])
    assert m.incremental and not m.cached and m.kernel.patches == ("5.4-x.patch",)
    assert m.kernel.vmlinuz.read_text() == "int ksm_patched;\nint memory;\n"
    assert (clean_tree / "mm/ksm.c").read_text() == "int ksm;\n"         # untouched
    mutant_tree = B.build_root() / m.key[:24] / "tree"
    assert (mutant_tree / "compiled").read_text().count("bzImage") == 2  # rebuilt once
    assert B.build(src, "5.4-x", patches=[p]).cached

    # a patch that does not apply: BuildError, the store and the clean tree as they were
    stale = dirs / "5.4-stale.patch"
    stale.write_text(GOOD.replace("-int ksm;", "-int other;"))
    before = {k.name: k.vmlinuz.read_bytes() for k in B.store.list_kernels()}
    with pytest.raises(B.BuildError, match="does not apply"):
        B.build(src, "5.4-stale", patches=[stale])
    assert {k.name: k.vmlinuz.read_bytes() for k in B.store.list_kernels()} == before
    assert (clean_tree / "mm/ksm.c").read_text() == "int ksm;\n"
    assert sorted(d.name for d in B.build_root().iterdir()
                  if d.name not in ("locks", "logs")) == sorted([r.key[:24], m.key[:24]])

    # the same name with other inputs is rebuilt and replaces the stored kernel
    (src / "mm/memory.c").write_text("int memory2;\n")
    r2 = B.build(src, "5.4")
    assert not r2.cached and r2.kernel.vmlinuz.read_text().endswith("int memory2;\n")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_an_option_olddefconfig_drops_is_an_error(dirs):
    src = _fake_kernel(dirs / "linux-5.4.59")
    (src / "drop-ksm").write_text("")
    with pytest.raises(B.BuildError, match=r"CONFIG_KSM=y \(got not set\)"):
        B.build(src, "5.4")
    assert B.store.list_kernels() == []
