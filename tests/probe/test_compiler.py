"""The scenario -> probe program compiler (pure) and the probe's program reader (no root:
``--check`` only parses and validates)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ksmdiff.probe.compiler import compile_scenario
from ksmdiff.scenario import find_scenarios, parse, parse_file

ROOT = Path(__file__).resolve().parents[2]

BASIC = """scenario "basic"
process A
A: mmap buf 4
A: fill buf[0..1] 0x5a
A: madvise buf mergeable
ksm settle
A: fork B
B: write buf 0x01
A: exit
ksm scan 2
"""


def test_program_text_and_tables():
    prog = compile_scenario(parse(BASIC), salt=0x0123456789ABCDEF)
    lines = prog.text.splitlines()
    assert lines[:5] == ["ksmdiff-probe 1", "salt 0123456789abcdef", "procs 2", "regions 1",
                         f"stmts {len(lines) - 6}"]
    assert lines[-1] == "end"
    assert prog.procs == ("A", "B") and prog.regions == ("buf",)
    assert "0 mmap 0 0 4" in lines and "1 fill 0 0 0 1 0x5a" in lines
    assert "3 sync" in lines and "7 sync" in lines
    assert sorted(prog.barriers) == [3, 7]
    assert prog.signature == (("settle",), ("scan", 2))
    assert prog.solo_reasons == ()


def test_write_to_zero_based_pages_carries_the_second_salt_in_page_order():
    prog = compile_scenario(parse(BASIC), salt=5)
    writes = [ln for ln in prog.text.splitlines() if " write " in ln]
    # pages 0..1 were filled (salted); 2..3 never: they get the second salt (flag 1)
    assert writes == ["5 write 1 0 0 1 0x01 0", "5 write 1 0 2 3 0x01 1"]


@pytest.mark.parametrize("body,reason", [

    ("A: mmap b 1\nksm settle\nksm set max_page_sharing 2\n", "max_page_sharing"),
])
def test_scenarios_that_cannot_share_a_settle(body, reason):
    scn = parse(f'scenario "x"\nprocess A\n{body}')
    assert any(reason in r for r in compile_scenario(scn).solo_reasons)


def test_zero_pages_with_use_zero_pages_are_batchable():
    scn = parse('scenario "z"\nprocess A\nksm set use_zero_pages 1\nA: mmap b 2\n'
                'A: fill b zero\nA: madvise b mergeable\nksm settle\n')
    assert compile_scenario(scn).solo_reasons == ()


def test_use_zero_pages_is_a_scan_requirement_only_with_real_zero_pages():
    from ksmdiff.probe.compiler import merge_signatures
    zero1 = compile_scenario(parse(
        'scenario "z"\nprocess A\nksm set use_zero_pages 1\nA: mmap b 2\n'
        'A: fill b zero\nA: madvise b mergeable\nksm settle\nksm scan 1\n'))
    assert zero1.signature == (("settle", "use_zero_pages", 1), ("scan", 1, "use_zero_pages", 1))
    assert sorted(zero1.scan_knobs) == [4, 5]
    assert zero1.scan_knobs[4] == {"use_zero_pages": 1}
    salted = compile_scenario(parse(
        'scenario "s"\nprocess A\nksm set use_zero_pages 1\nA: mmap b 2\n'
        'A: fill b 0x11\nA: madvise b mergeable\nksm settle\n'))
    assert salted.signature == (("settle",),) and salted.scan_knobs == {}
    plain = compile_scenario(parse(BASIC))
    zero0 = compile_scenario(parse(
        'scenario "z0"\nprocess A\nA: mmap b 1\nA: fill b zero\nksm settle\n'))
    # indifferent scenarios share a batch with either value; two values never do
    assert merge_signatures(plain.signature, zero1.signature) is None      # scan 2 vs scan 1
    assert merge_signatures(salted.signature, zero1.signature) == zero1.signature
    assert merge_signatures(plain.signature, zero0.signature) == (
        ("settle", "use_zero_pages", 0), ("scan", 2))
    assert merge_signatures(zero0.signature, zero1.signature) is None
    mps = compile_scenario(parse('scenario "m"\nprocess A\nksm set max_page_sharing 2\n'
                                 'A: mmap b 1\nksm settle\n'))
    assert merge_signatures(mps.signature, salted.signature) is None


def test_salts_differ_per_compile():
    scn = parse(BASIC)
    assert compile_scenario(scn).salt != compile_scenario(scn).salt


def probe_check(tmp_path: Path, text: bytes | str) -> subprocess.CompletedProcess:
    from ksmdiff.probe.build import probe_path
    try:
        exe = probe_path()
    except Exception as e:  # no compiler
        pytest.skip(str(e))
    f = tmp_path / "p.prog"
    f.write_bytes(text.encode() if isinstance(text, str) else text)
    return subprocess.run([str(exe), "--check", str(f)], capture_output=True, timeout=20)


def test_probe_accepts_every_compiled_corpus_scenario(tmp_path):
    for path in find_scenarios([ROOT / "corpora"]):
        r = probe_check(tmp_path, compile_scenario(parse_file(path)).text)
        assert r.returncode == 0, (path, r.stderr)


@pytest.mark.parametrize("text,needle", [
    ("", "missing 'end'"),
    ("ksmdiff-probe 2\n", "expected 'ksmdiff-probe 1'"),
    ("ksmdiff-probe 1\nsalt 0000000000000000\n", "salt must not be 0"),
    ("ksmdiff-probe 1\nsalt 00000000000000zz\n", "bad salt digit"),
    ("ksmdiff-probe 1\nsalt 0000000000000001\nprocs 17\n", "bad process count"),
    ("ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 1\n0 mmap 0 0 131073\nend\n",
     "bad page count"),
    ("ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 1\n0 write 0 0 0 0 0x01 0\nend\n",
     "no region"),
    ("ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 2\n0 mmap 0 0 2\n"
     "1 munmap 0 0 5 5\nend\n", "outside region"),
    ("ksmdiff-probe 1\nsalt 0000000000000001\nprocs 2\nregions 1\nstmts 1\n0 exit 1\nend\n",
     "not alive"),
    ("ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 1\n0 mmap 0 0 99999999999\nend\n",
     "bad page count"),
    ("ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 1\n0 bogus\nend\n",
     "unknown operation"),
    ("ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 0\nend\n\x00", "not allowed"),
    ("ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 0\nend\nmore\n",
     "after 'end'"),
])
def test_probe_refuses_malformed_programs(tmp_path, text, needle):
    r = probe_check(tmp_path, text)
    assert r.returncode == 2
    assert needle in r.stderr.decode(), r.stderr
    assert b"malformed program, line" in r.stderr


def test_probe_usage_error(tmp_path):
    from ksmdiff.probe.build import probe_path
    r = subprocess.run([str(probe_path())], capture_output=True, timeout=20)
    assert r.returncode == 4 and b"usage" in r.stderr


def test_real_zero_pages_are_flagged():
    scn = parse('scenario "z"\nprocess A\nA: mmap b 1\nA: fill b zero\n'
                'A: madvise b mergeable\nksm settle\n')
    prog = compile_scenario(scn)
    assert prog.zero_merges and prog.solo_reasons == ()


def test_the_probes_tables_hold_every_scenario_the_language_allows():
    """probe.c sizes its tables from the program; its limits are the language's, so no
    valid scenario is beyond the probe (a big one runs: tests/probe/test_probe_scale.py)."""
    from ksmdiff.probe.compiler import (PROBE_MAX_REGION_PAGES, PROBE_MAX_TOTAL_PAGES,
                                        beyond_probe)
    from ksmdiff.scenario import parse
    from ksmdiff.scenario.validate import MAX_REGION_PAGES, MAX_TOTAL_PAGES
    assert (PROBE_MAX_REGION_PAGES, PROBE_MAX_TOTAL_PAGES) == (MAX_REGION_PAGES,
                                                               MAX_TOTAL_PAGES)
    big = parse('scenario "s"\nprocess A\nA: mmap a 32768\nA: mmap b 32768\nA: fork B\n')
    assert beyond_probe(big) is None
    probe_c = (Path(__file__).resolve().parents[2] / "ksmdiff/probe/probe.c").read_text()
    assert f"#define MAX_REGION_PAGES {PROBE_MAX_REGION_PAGES}\n" in probe_c
    assert f"#define MAX_TOTAL_PAGES {PROBE_MAX_TOTAL_PAGES}\n" in probe_c
