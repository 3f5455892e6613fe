"""Helpers of the kernel tests: what a run must leave as it found it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Where the ksmdiff under test lives (site-packages in CI, the checkout otherwise): the cwd
# and PYTHONPATH of every subprocess, so that `python -m`/`-c` import that one and no other.
PKG_HOME = Path(__import__("ksmdiff").__file__).resolve().parents[1]
PKG_ENV = {**__import__("os").environ, "PYTHONPATH": str(PKG_HOME)}
KSM = Path("/sys/kernel/mm/ksm")


def machine_state() -> dict:
    knobs = {}
    for p in sorted(KSM.iterdir()):
        if p.stat().st_mode & 0o200:
            knobs[p.name] = p.read_text().strip()
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[2] == "tracefs"]
    instances = []
    inst_dir = Path("/sys/kernel/tracing/instances")
    if inst_dir.exists():
        instances = sorted(p.name for p in inst_dir.iterdir() if p.name.startswith("ksmdiff"))
    top_event = Path("/sys/kernel/tracing/events/ksm/ksm_remove_ksm_page/enable")
    return {
        "knobs": knobs,
        "thp": thp.read_text().strip() if thp.exists() else None,
        "swaps": Path("/proc/swaps").read_text().strip().splitlines()[1:],
        "tracefs": mounts,
        "instances": instances,
        "top_event": top_event.read_text().strip() if top_event.exists() else None,
        "probes": probe_pids(),
        "journal": (Path("/var/lib/ksmdiff") / "journal.json").exists(),
    }


def probe_pids() -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                # a zombie holds no memory; reaping it is its parent's (or init's) business
                if ((d / "comm").read_text().startswith("ksmdiff-probe")
                        and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"):
                    out.append(int(d.name))
            except OSError:
                pass
    return sorted(out)


def corpus_paths() -> list[Path]:
    from ksmdiff.scenario import find_scenarios
    return find_scenarios([ROOT / "corpora"])
