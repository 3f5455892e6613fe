"""``ksmdiff generate`` then ``ksmdiff run --three-way`` on a lab kernel: one boot, each
scenario judged by the model of the kernel's version, by the spec, and on the kernel."""

from __future__ import annotations

import json

import pytest

from ksmdiff.cli import main
from ksmdiff.lab import guest, store


@pytest.mark.slow
@pytest.mark.lab
def test_generate_then_three_way_on_lab_5_4(tmp_path, capsys):
    """The done-when of the generator on the 5.4 lab kernel: what the spec generates for
    the 5.1-5.8 era holds on the model, on the spec and on the real kernel."""
    why = guest.qemu_available()
    if why:
        pytest.skip(why)
    if store.get_kernel("5.4") is None:
        pytest.skip("lab kernel 5.4 is not in the store: not run (ksmdiff lab fetch 5.4)")
    out = tmp_path / "gen"
    assert main(["generate", "--kernel", "5.4", "--out", str(out), "--per-label", "1",
                 "-q"]) == 0
    js = tmp_path / "lab.json"
    rc = main(["run", str(out), "--kernel", "lab:5.4", "--three-way", "-q",
               "--json", str(js)])
    text = capsys.readouterr().out
    assert rc == 0, text
    record = json.loads(js.read_text())
    assert record["results"] and all(r["status"] == "ok" for r in record["results"])
    cov = record["coverage"]["lab:5.4"]["5.1-5.8"]
    assert "reuse" in cov["kernel"]                 # the era's reuse seen on the kernel


def test_fuzz_and_reduce_refuse_a_lab_kernel_not_in_the_store(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KSMDIFF_LAB_DIR", str(tmp_path / "empty"))   # (refused before qemu)
    assert main(["fuzz", "--kernel", "lab:5.4", "--budget", "5s", "-q",
                 "--out", str(tmp_path / "found")]) == 3
    err = capsys.readouterr().err
    assert "no kernel 5.4" in err and "ksmdiff lab build" in err
    f = tmp_path / "r.scenario"
    f.write_text('scenario "r"\nprocess A\nA: mmap buf 1\nA: write buf[0] 0x01\n')
    assert main(["reduce", str(f), "--kernel", "lab:5.4"]) == 3
    assert main(["fuzz", "--kernel", "lab:bad name", "--budget", "5s", "-q"]) == 2
    assert not (tmp_path / "found").exists()


@pytest.mark.slow
@pytest.mark.lab
def test_fuzz_on_lab_5_4_runs_batches_in_the_guest(tmp_path, capsys):
    """Fuzz on the real 5.4 kernel: each batch one boot, judged three ways; the clean
    kernel gives no reproducible failure."""
    why = guest.qemu_available()
    if why:
        pytest.skip(why)
    if store.get_kernel("5.4") is None:
        pytest.skip("lab kernel 5.4 is not in the store: not run (ksmdiff lab build 5.4)")
    rc = main(["fuzz", "--kernel", "lab:5.4", "--budget", "20s", "--batch", "24", "--seed",
               "3", "--out", str(tmp_path / "found"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "fuzz lab:5.4 (5.4.59)" in out and "seed 3" in out
    n = int(out.split(" scenarios,")[0].rsplit(" ", 1)[1])
    assert n >= 24, out
    assert not (tmp_path / "found").exists(), out
