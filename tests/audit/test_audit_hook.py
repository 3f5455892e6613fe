"""The audit hook really keeps pure code off the system (it is what the other pure tests
rely on), and does nothing outside a pure() block."""

from __future__ import annotations

import os
import subprocess

import pytest

from ksmdiff.internal.audit import SystemAccessError, is_pure, pure


def test_tests_in_this_folder_run_pure():
    assert is_pure()


@pytest.mark.parametrize("path", ["/sys/kernel/mm/ksm/run", "/proc/self/pagemap",
                                  "/proc/vmstat", "/dev/null", "/sys/../sys/kernel"])
def test_open_under_sys_proc_dev_is_refused(path):
    with pytest.raises(SystemAccessError):
        open(path, "rb")
    with pytest.raises(SystemAccessError):
        os.open(path, os.O_RDONLY)


def test_relative_path_into_proc_is_refused(tmp_path):
    here = os.getcwd()
    with pytest.raises(SystemAccessError):
        open(os.path.relpath("/proc/self/status", here))


def test_listing_and_processes_are_refused():
    with pytest.raises(SystemAccessError):
        os.listdir("/sys/kernel/mm")
    with pytest.raises(SystemAccessError):
        subprocess.run(["true"])
    with pytest.raises(SystemAccessError):
        os.system("true")


def test_ordinary_files_are_fine(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("ok")
    assert p.read_text() == "ok"


@pytest.mark.system
def test_outside_pure_nothing_is_refused():
    assert not is_pure()
    with open("/proc/self/status") as fh:
        assert fh.readline()
    with pure():
        with pytest.raises(SystemAccessError):
            open("/proc/self/status")
    assert not is_pure()


@pytest.mark.system          # outside the fixture's pure(): the CLI must enter its own
def test_prove_cli_runs_the_prover_under_the_audit_hook(monkeypatch, tmp_path):
    import ksmdiff.kspec as kspec
    from ksmdiff.internal.audit import SystemAccessError
    from ksmdiff.kspec.cli import main

    def sneaky(*a, **k):
        open("/proc/self/status").close()
        return []
    monkeypatch.setattr(kspec, "prove", sneaky)
    with pytest.raises(SystemAccessError):
        main(["prove", "--out", str(tmp_path)])
