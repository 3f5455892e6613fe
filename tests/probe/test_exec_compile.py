"""exec in the probe program: the compiler's line, the probe's reader (``--check``), and
the decoder's per-process counters across an exec."""

from __future__ import annotations

import subprocess

import pytest

from ksmdiff.probe.compiler import compile_scenario
from ksmdiff.scenario import parse

EXEC = """scenario "exec"
process A
A: mmap buf 4
A: fill buf 0x5a
A: fork B
B: exec
B: mmap buf 2
B: fill buf 0x11
"""


def test_exec_line_and_solo():
    prog = compile_scenario(parse(EXEC), salt=1)
    assert "3 exec 1" in prog.text.splitlines()
    assert any("exec" in r for r in prog.solo_reasons)


HEAD = "ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\n"


def _check(tmp_path, text):
    from ksmdiff.probe.build import probe_path
    try:
        exe = probe_path()
    except Exception as e:  # no compiler
        pytest.skip(str(e))
    f = tmp_path / "p.prog"
    f.write_text(text)
    return subprocess.run([str(exe), "--check", str(f)], capture_output=True, text=True,
                          timeout=20)


def test_probe_reads_exec(tmp_path):
    r = _check(tmp_path, compile_scenario(parse(EXEC), salt=1).text)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("body, needle", [
    ("stmts 3\n0 mmap 0 0 2\n1 pin 0 0 0 0\n2 exec 0\nend\n", "pins a page"),
    ("stmts 3\n0 mmap 0 0 2\n1 exec 0\n2 write 0 0 0 0 0x01 0\nend\n", "no region"),
    ("stmts 1\n0 exec 0 1\nend\n", "takes 1 fields"),
])
def test_probe_refuses(tmp_path, body, needle):
    r = _check(tmp_path, HEAD + body)
    assert r.returncode == 2
    assert needle in r.stderr, r.stderr
