"""ksmdiff generate / reduce / fuzz / run --three-way on the command line."""

from __future__ import annotations

import pytest

from ksmdiff.cli import main

REUSE = """scenario "reuse"
process A
A: mmap buf 2
A: fill buf[0] 0x01
A: fill buf[1] 0x01
A: madvise buf mergeable
ksm settle
A: munmap buf[1]
A: write buf[0] 0x03
expect A buf[0] reused on 5.1..5.8
expect A buf[0] copied on >=5.9
"""


def test_usage_errors_exit_2(capsys, tmp_path):
    assert main(["generate", "--out", str(tmp_path)]) == 2
    assert main(["generate", "--kernel", "5.4", "--all-eras", "--out", str(tmp_path)]) == 2
    assert main(["generate", "--kernel", "nonsense", "--out", str(tmp_path)]) == 2
    assert main(["fuzz", "--kernel", "5.4", "--budget", "ten minutes"]) == 2
    assert "budget" in capsys.readouterr().err


def test_three_way_run_and_reduce_of_a_passing_scenario(tmp_path, capsys):
    f = tmp_path / "reuse.scenario"
    f.write_text(REUSE)
    js = tmp_path / "run.json"
    assert main(["run", str(f), "--kernel", "5.4", "--kernel", "6.12", "--three-way",
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "coverage on 5.4 (5.1-5.8)" in out and "reuse" in out
    assert '"coverage"' in js.read_text()
    assert main(["reduce", str(f), "--kernel", "5.4"]) == 0
    assert "nothing to reduce" in capsys.readouterr().out


def test_reduce_against_a_spec_mutant(tmp_path, capsys):
    f = tmp_path / "twice.scenario"
    f.write_text("""scenario "twice"
process A
A: mmap buf 2
A: write buf[0] 0x03
A: write buf[1] 0x03
A: madvise buf mergeable
ksm settle
A: fill buf[1] 0x01
A: fork B
ksm settle
B: munmap buf[0]
""")
    out = tmp_path / "small.scenario"
    assert main(["reduce", str(f), "--kernel", "5.4", "--spec-mutant", "reuse-mapcount-2",
                 "--out", str(out)]) == 1
    text = out.read_text()
    assert text.startswith("# reduced by ksmdiff reduce")
    assert sum(1 for line in text.splitlines() if ":" in line and not line.startswith("#")) <= 8


@pytest.mark.slow
def test_generate_is_deterministic_for_a_seed(tmp_path):
    """Two runs (fresh processes, different string hashing) write the same scenarios, the
    Z3-found ones (--per-label 2) included."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    outs = []
    for k, hashseed in enumerate(("1", "2")):
        out = tmp_path / f"run{k}"
        env = dict(os.environ, PYTHONHASHSEED=hashseed,
                   PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        subprocess.run([sys.executable, "-m", "ksmdiff", "generate", "--kernel", "5.4",
                        "--per-label", "2", "--bound", "4", "--beam", "40", "--seed", "3",
                        "--out", str(out), "-q"], check=True, env=env, cwd=root,
                       capture_output=True, timeout=1800)
        outs.append({p.relative_to(out): p.read_text() for p in out.rglob("*.scenario")})
    assert outs[0] and outs[0] == outs[1]
    assert any("found by Z3 with the shapes of the earlier ones blocked" in t
               for t in outs[0].values())


def test_fuzz_on_a_model_runs_batches_and_finds_nothing(tmp_path, capsys):
    rc = main(["fuzz", "--kernel", "5.4", "--budget", "3s", "--batch", "32", "--seed", "5",
               "--out", str(tmp_path / "found"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "seed 5" in out and " batches" in out
    assert not (tmp_path / "found").exists()


def test_fuzz_seeds_from_the_bundled_corpus_wherever_it_runs(tmp_path, capsys, monkeypatch):
    """Run outside the checkout (as an installed tool is), fuzz still draws from the
    generated corpus's states: the summary names how many and where from."""
    monkeypatch.chdir(tmp_path)
    rc = main(["fuzz", "--kernel", "5.4", "--budget", "2s", "--batch", "16", "--seed", "1",
               "--out", str(tmp_path / "found"), "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    n = int(out.split(" seed scenarios from ")[0].rsplit(" ", 1)[1])
    assert n >= 70, out                      # every era's folder, not only 5.1-5.8's
    assert main(["fuzz", "--kernel", "5.4", "--budget", "2s", "--corpus",
                 str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["fuzz", "--kernel", "5.4", "--budget", "2s", "--corpus",
                 str(tmp_path / "empty")]) == 2
    assert "no .scenario file" in capsys.readouterr().err
