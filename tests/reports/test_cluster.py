from __future__ import annotations

from pathlib import Path

import pytest

from ksmdiff.cli import main
from ksmdiff.reports.record import load, without_timing

REPO = Path(__file__).resolve().parents[2]
distributed = pytest.importorskip("dask.distributed",
                                  reason="dask.distributed is not installed "
                                         "(pip install 'dask[distributed]')")


def test_a_two_worker_cluster_equals_the_local_run(tmp_path):
    corpus = str(REPO / "corpora" / "matrix")
    kernels = ["--kernel", "4.19", "--kernel", "5.4", "--kernel", "6.12"]
    local, remote = tmp_path / "local.json", tmp_path / "remote.json"
    assert main(["run", corpus, *kernels, "-q", "--json", str(local)]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        with distributed.Client(cluster.scheduler_address) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            with distributed.get_task_stream(client) as stream:
                assert main(["run", corpus, *kernels, "-q", "--json", str(remote),
                             "--cluster", cluster.scheduler_address]) == 0
    # one task per batch of BATCH scenarios per version, every one run on the workers
    from ksmdiff.cluster import BATCH
    from ksmdiff.scenario import find_scenarios
    n = len(find_scenarios([corpus]))
    assert len([t for t in stream.data if t["key"].startswith("_batch")]) == \
        3 * -(-n // BATCH)
    assert without_timing(load(str(remote))) == without_timing(load(str(local)))


def test_the_host_kernel_is_not_sent_to_a_cluster(capsys):
    corpus = str(REPO / "corpora" / "matrix" / "child-writes.scenario")
    assert main(["run", corpus, "--kernel", "host", "--cluster", "tcp://127.0.0.1:1"]) == 2
    assert "model versions only" in capsys.readouterr().err


def test_no_scheduler_there(capsys):
    corpus = str(REPO / "corpora" / "matrix" / "child-writes.scenario")
    rc = main(["run", corpus, "--kernel", "5.4", "-q", "--cluster", "tcp://127.0.0.1:9"])
    assert rc == 3 and "cannot connect" in capsys.readouterr().err
