"""The bundled corpus on every lab kernel this machine has, and the broken kernels caught.

One boot per kernel (tens of seconds under TCG).  A kernel absent from the store skips with
the reason (fetch the Debian ones with ``ksmdiff lab fetch``, build the others with
``ksmdiff lab build --all-known``); CI does both first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ksmdiff.cli import main
from ksmdiff.lab import guest, store
from ksmdiff.observe import records_from_json

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "corpora"
SEED = "corpora/seed/reuse-only-pte-mapped.scenario"
NO_NODE = "corpora/matrix/ksm-page-without-stable-node.scenario"

pytestmark = [pytest.mark.slow, pytest.mark.lab]

# Clean kernels: the corpus holds.  The reuse era's kernels keep the seed's frame.
CLEAN = {"5.4": "reused", "5.8": "reused", "5.10": "copied", "6.1": "copied", "6.12": "copied"}
# Broken 5.4.59 kernels (ksmdiff/lab/patches) and a scenario each must fail on.
CAUGHT = {"5.4-freeze-at-2": SEED.replace("seed/reuse-only-pte-mapped", "matrix/fork-before-merge"),
          "5.4-reuse-mapcount-2": None,
          "5.4-no-stable-node-check": NO_NODE}


def _need(name: str) -> None:
    why = guest.qemu_available()
    if why:
        pytest.skip(why)
    if store.get_kernel(name) is None:
        pytest.skip(f"lab kernel {name} is not in the store: not run "
                    f"(ksmdiff lab fetch / ksmdiff lab build --all-known)")


def _run(name: str, tmp_path: Path, *paths: Path) -> tuple[int, dict]:
    out = tmp_path / f"{name}.json"
    rc = main(["run", *map(str, paths or [CORPUS]), "--kernel", f"lab:{name}", "-q",
               "--json", str(out)])
    return rc, json.loads(out.read_text())


def _seed_write_fault(record: dict) -> str:
    row, = [r for r in record["results"] if r["source"].endswith(SEED)]
    # the record holds each statement's changes: rebuild the states as a reader would
    states = records_from_json(row["observations"])
    write = [r for r in states if "A/buf[3].fault" in r.fields][-1]
    value, = write.fields["A/buf[3].fault"]
    return value


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_the_corpus_holds_on_a_clean_kernel(name, tmp_path):
    _need(name)
    rc, record = _run(name, tmp_path)
    bad = [(r["source"], r["status"], r.get("mismatch"), [e for e in r["expects"]
                                                          if e["status"] == "failed"])
           for r in record["results"]
           if r.get("mismatch") or any(e["status"] == "failed" for e in r["expects"])
           or r["status"] not in ("ok", "unsupported")]
    assert rc == 0 and not bad, bad
    assert _seed_write_fault(record) == CLEAN[name]


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_a_broken_kernel_is_caught_naming_the_scenario(name, tmp_path):
    _need(name)
    rc, record = _run(name, tmp_path)
    caught = {Path(r["source"]).relative_to(ROOT).as_posix() if r["source"].startswith(str(ROOT))
              else r["source"]: r.get("mismatch") or [e for e in r["expects"]
                                                      if e["status"] == "failed"]
              for r in record["results"]
              if r.get("mismatch") or any(e["status"] == "failed" for e in r["expects"])}
    assert rc == 1 and caught, f"{name} was not caught"
    for problem in caught.values():   # each names the statement
        if isinstance(problem, dict):
            assert problem["statement"] and problem["classification"] == "reproducible", problem
    if CAUGHT[name]:
        assert CAUGHT[name] in caught, sorted(caught)
