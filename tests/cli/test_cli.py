"""The command line: exit codes, clear errors without tracebacks, --help everywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ksmdiff

from ksmdiff.cli import main

GOOD = '''scenario "only-pte-mapped KSM page"
process A
A: mmap buf 2
A: fill buf 0x5a
A: madvise buf mergeable
ksm settle
expect A buf[0] ksm
expect A buf[0] same-frame A buf[1]
A: munmap buf[1]
A: write buf[0] 0x01
expect A buf[0] reused on 5.1..5.8
expect A buf[0] copied on <5.1, >=5.9
expect A buf[0] content 0x5a+0x01
'''


@pytest.fixture
def good(tmp_path):
    p = tmp_path / "good.scenario"
    p.write_text(GOOD)
    return p


def run_cli(*args, cwd=None):
    # The ksmdiff under test (the installed one in CI, the checkout in a developer's
    # `python -m pytest`), never the other: `-m` puts the cwd first on sys.path.
    home = str(Path(ksmdiff.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=home)
    return subprocess.run([sys.executable, "-m", "ksmdiff.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or home, env=env, timeout=300)


def test_check_ok(good, capsys):
    assert main(["check", str(good)]) == 0
    assert "ok (" in capsys.readouterr().out


def test_check_directory_finds_every_scenario(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    for name in ("a", "sub/b"):
        (tmp_path / f"{name}.scenario").write_text(GOOD)
    (tmp_path / "notes.txt").write_text("not a scenario")
    assert main(["check", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count(": ok (") == 2


@pytest.mark.parametrize("content, needle", [
    ("", "must start with its title"),
    (b"\x00\x01\x02binary\xff", "error:"),
    ('scenario "x"\nprocess A\nA: write nowhere[0] 0x01\n', "no region 'nowhere'"),
    ('scenario "x"\nprocess A\nA: mmap b 1\nA: read b[0..999999999]\n', "out of range"),
    ('scenario "x"\nprocess A\nB: mmap b 1\n', "unknown process 'B'"),
])
def test_bad_input_exit_2_one_line_no_traceback(tmp_path, content, needle):
    p = tmp_path / "bad.scenario"
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    res = run_cli("check", p)
    assert res.returncode == 2
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith(f"{p}:")


def test_ten_megabyte_file(tmp_path):
    p = tmp_path / "huge.scenario"
    p.write_text('scenario "x"\nprocess A\n' + "#" * (10 << 20) + "\n")
    res = run_cli("check", p)
    assert res.returncode == 2 and "more than the limit" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_file_and_bad_usage(tmp_path):
    res = run_cli("check", tmp_path / "nope.scenario")
    assert res.returncode == 2 and "no such file" in res.stderr
    assert run_cli("frobnicate").returncode == 2
    assert run_cli("run").returncode == 2
    res = run_cli("run", tmp_path, "--kernel", "five")
    assert res.returncode == 2


def test_bad_kernel_version_is_a_usage_error(good, capsys):
    assert main(["run", str(good), "--kernel", "banana"]) == 2
    assert "bad kernel version" in capsys.readouterr().err


def test_one_bad_file_runs_nothing(tmp_path, capsys):
    (tmp_path / "a.scenario").write_text(GOOD)
    (tmp_path / "b.scenario").write_text('scenario "x"\nprocess A\nA: read b\n')
    assert main(["run", str(tmp_path), "--kernel", "5.4"]) == 2
    captured = capsys.readouterr()
    assert "has no region 'b'" in captured.err
    assert captured.out == ""            # no table: nothing ran


@pytest.mark.parametrize("cmd", [[], ["check"], ["run"], ["format"]])
def test_help_everywhere(cmd):
    with pytest.raises(SystemExit) as info:
        main([*cmd, "--help"])
    assert info.value.code == 0


def test_format_round_trips(tmp_path, good, capsys):
    assert main(["format", str(good)]) == 0
    out = capsys.readouterr().out
    canon = tmp_path / "canon.scenario"
    canon.write_text(out)
    assert main(["format", "--check", str(canon)]) == 0
    capsys.readouterr()
    messy = tmp_path / "messy.scenario"
    messy.write_text(GOOD.replace("A: mmap buf 2", "A:   mmap   buf 2   # two pages"))
    assert main(["format", "--check", str(messy)]) == 1
