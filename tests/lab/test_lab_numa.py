"""The ports that need two NUMA nodes and cgroup v2 controllers (kselftest ksm_tests -N,
LTP ksm02-ksm04, ksm06) run fully in the lab's guests (numa=fake=2, cgroup2 with
+memory +cpuset) and hold.  One boot per kernel; a kernel absent from the store, or a
source build without configs/numa.config (one built before known.toml asked for it), skips with the
reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ksmdiff.cli import main
from ksmdiff.lab import guest, store

ROOT = Path(__file__).resolve().parents[2]
PORTS = [ROOT / "corpora" / p for p in (
    "kselftest/ksm-tests-numa-merge-0.scenario", "kselftest/ksm-tests-numa-merge-1.scenario",
    "ltp/ksm02.scenario", "ltp/ksm03.scenario", "ltp/ksm04.scenario", "ltp/ksm06.scenario")]

pytestmark = [pytest.mark.slow, pytest.mark.lab]


@pytest.mark.parametrize("name", ["5.4", "5.8", "5.10", "6.1", "6.12"])
def test_the_placement_and_cgroup_ports_run_fully(name, tmp_path):
    why = guest.qemu_available()
    if why:
        pytest.skip(why)
    if store.get_kernel(name) is None:
        pytest.skip(f"lab kernel {name} is not in the store: not run "
                    "(ksmdiff lab fetch / ksmdiff lab build --all-known)")
    out = tmp_path / "r.json"
    rc = main(["run", *map(str, PORTS), "--kernel", f"lab:{name}", "-q", "--json", str(out)])
    results = json.loads(out.read_text())["results"]
    unsupported = [r for r in results if r["status"] == "unsupported"]
    if unsupported and store.get_kernel(name).origin is store.Origin.SOURCE:
        pytest.skip(f"lab kernel {name} was built without NUMA or cgroups (build it with "
                    f"configs/numa.config): {unsupported[0].get('reason', '')}")
    bad = [(r["source"], r["status"], r.get("reason"), r.get("mismatch"),
            [e for e in r["expects"] if e["status"] == "failed"])
           for r in results if r["status"] != "ok" or r.get("mismatch")
           or any(e["status"] == "failed" for e in r["expects"])]
    assert rc == 0 and not bad, bad
