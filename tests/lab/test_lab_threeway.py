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
