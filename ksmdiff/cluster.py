"""Model runs on a Dask distributed cluster (``ksmdiff run --cluster ADDRESS``).

Each task is one batch of scenarios on one model version, run by the same
:func:`ksmdiff.session.run_model_cell` as a local run; the results come back as the same
cell results, so the table and the JSON record are those of a local run.  Dask does the
scheduling; the host kernel is never run remotely (a worker's kernel is not this one)."""

from __future__ import annotations

from typing import Sequence

from ksmdiff.errors import EnvironmentProblem, UsageError

BATCH = 8      # scenarios per task


def _batch(scenarios, version: str):
    from ksmdiff.session import run_model_cell
    from ksmdiff.versions import KernelVersion
    kv = KernelVersion.parse(version)
    return [run_model_cell(s, kv) for s in scenarios]


def run_model_cells(address: str, scenarios: Sequence, versions: Sequence[str],
                    timeout: float = 30) -> dict:
    """{(scenario index, version): CellResult} for every model version, run on the
    cluster at ``address``."""
    if "host" in versions or any(v.startswith("lab:") for v in versions):
        raise UsageError("--cluster runs model versions only; run --kernel host (or a lab "
                         "kernel) without --cluster")
    try:
        from dask.distributed import Client
    except ImportError:
        raise EnvironmentProblem("--cluster needs dask.distributed "
                                 "(pip install 'dask[distributed]')") from None
    try:
        client = Client(address, timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise EnvironmentProblem(f"--cluster {address}: cannot connect: {e}") from None
    try:
        jobs = []
        for v in versions:
            for start in range(0, len(scenarios), BATCH):
                part = list(scenarios[start:start + BATCH])
                jobs.append((v, start, client.submit(_batch, part, v, pure=False)))
        cells = {}
        for v, start, future in jobs:
            for k, cell in enumerate(future.result()):
                cells[(start + k, v)] = cell
        return cells
    finally:
        client.close()
