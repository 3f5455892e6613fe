from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from ksmdiff.cli import main
from ksmdiff.errors import InputError, UsageError
from ksmdiff.reports.merge import merge
from ksmdiff.reports.record import load, without_timing
from ksmdiff.reports.shard import parse_shard, select, shard_of
from ksmdiff.scenario import find_scenarios, parse_file, print_scenario

REPO = Path(__file__).resolve().parents[2]


def _corpus():
    return [parse_file(p) for p in find_scenarios([REPO / "corpora" / "matrix"])]


def test_every_scenario_is_in_exactly_one_shard():
    scenarios = _corpus()
    for n in (1, 2, 3, 5):
        shards = [select(scenarios, (i, n)) for i in range(1, n + 1)]
        assert sorted(s.source for sh in shards for s in sh) == sorted(s.source
                                                                      for s in scenarios)
    assert all(select(scenarios, (i, 3)) for i in (1, 2, 3))     # 32 files: none empty


def test_the_shard_follows_the_canonical_text_not_the_file(tmp_path):
    scn = _corpus()[0]
    text = Path(scn.source).read_text()
    moved = tmp_path / "elsewhere" / "renamed.scenario"
    moved.parent.mkdir()
    moved.write_text(text.replace("\n\n", "\n\n\n").replace("\n", "  \n"))
    other = parse_file(moved)
    assert print_scenario(other) == print_scenario(scn)
    assert all(shard_of(other, n) == shard_of(scn, n) for n in (2, 3, 7))


@pytest.mark.parametrize("bad", ["0/3", "4/3", "1/0", "x", "1/", "-1/2"])
def test_bad_shard(bad):
    with pytest.raises(UsageError):
        parse_shard(bad)


def test_shards_merged_equal_the_unsharded_run(tmp_path):
    corpus = str(REPO / "corpora" / "matrix")
    whole = tmp_path / "whole.json"
    assert main(["run", corpus, "--kernel", "5.4", "--kernel", "6.12", "-q",
                 "--json", str(whole)]) == 0
    parts = []
    for i in (1, 2, 3):
        for k in ("5.4", "6.12"):
            p = tmp_path / f"run-{i}-{k}.json"
            assert main(["run", corpus, "--shard", f"{i}/3", "--kernel", k, "-q",
                         "--json", str(p)]) == 0
            parts.append(str(p))
    merged = tmp_path / "merged.json"
    assert main(["merge", *parts, "-o", str(merged)]) == 0
    assert without_timing(load(str(merged))) == without_timing(load(str(whole)))


def test_merge_refuses_different_results_for_one_cell(run_json, tmp_path):
    a = load(str(run_json))
    b = json.loads(json.dumps(a))
    b["results"][0]["ksm_reuse"] = not b["results"][0]["ksm_reuse"]
    with pytest.raises(InputError, match="differs from the result in"):
        merge([a, b], ["a.json", "b.json"])


def test_a_cell_no_record_ran_is_not_run(run_json):
    a = load(str(run_json))
    only_54 = dict(a, results=[r for r in a["results"] if r["target"] == "5.4"],
                   versions=["5.4"])
    only_612 = dict(a, results=[r for r in a["results"]
                                if r["target"] == "6.12" and "fails" not in r["source"]],
                    versions=["6.12"],
                    scenarios=[s for s in a["scenarios"] if "fails" not in s])
    m = merge([only_54, only_612])
    gap = [r for r in m["results"] if r["target"] == "6.12" and "fails" in r["source"]]
    assert [g["status"] for g in gap] == ["not-run"] and gap[0]["reason"]
    assert len(m["results"]) == len(m["scenarios"]) * len(m["versions"])


def _steps(workflow, job):
    return [s["run"] for s in workflow["jobs"][job]["steps"]
            if "run" in s and s["run"].startswith("ksmdiff ")]


def test_the_example_ci_workflow_end_to_end(tmp_path, monkeypatch):
    """The commands of examples/github-actions.yml, for every job of its matrix, run here
    on the model: the merged report equals the unsharded run's."""
    wf = yaml.safe_load((REPO / "examples" / "github-actions.yml").read_text())
    env = dict(wf["env"])
    env["SCENARIOS"] = str(REPO / env["SCENARIOS"])
    matrix = wf["jobs"]["run"]["strategy"]["matrix"]
    assert int(env["SHARDS"]) == len(matrix["shard"])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()

    def run(command, **m):
        command = re.sub(r"\$\{\{ matrix\.(\w+) \}\}", lambda x: str(m[x.group(1)]), command)
        command, _, fallback = command.partition(" || ")
        for k, v in env.items():
            command = command.replace(f'"${k}"', shlex.quote(v)).replace(f"${k}", v)
        argv = shlex.split(command)
        if "*" in " ".join(argv):
            argv = [a for arg in argv for a in (sorted(map(str, Path().glob(arg)))
                                                 if "*" in arg else [arg])]
        rc = main(argv[1:])
        assert rc == 0 or (rc == 1 and fallback == "[ $? -eq 1 ]"), (command, rc)

    for shard in matrix["shard"]:
        for kernel in matrix["kernel"]:
            for command in _steps(wf, "run"):
                run(command, shard=shard, kernel=kernel)
            # the upload/download-artifact pair: every record into runs/
            name = f"run-{shard}-{kernel}.json"
            os.replace(name, Path("runs") / name)
    for command in _steps(wf, "report"):
        run(command)

    whole = tmp_path / "whole.json"
    kernels = [a for k in matrix["kernel"] for a in ("--kernel", str(k))]
    assert main(["run", env["SCENARIOS"], *kernels, "-q", "--json", str(whole),
                 "--ktap", "whole.ktap", "--junit", "whole.xml"]) == 0
    assert without_timing(load("merged.json")) == without_timing(load(str(whole)))
    assert Path("results.ktap").read_text() == Path("whole.ktap").read_text()
    assert Path("junit.xml").read_text() == Path("whole.xml").read_text()
    from .test_html import _parse
    assert main(["report", str(whole), "-o", "whole.html"]) == 0
    merged_page, whole_page = _parse(Path("report.html").read_text()), _parse(
        Path("whole.html").read_text())
    assert merged_page.grid == whole_page.grid and len(merged_page.grid) == len(load(str(whole))["results"])
