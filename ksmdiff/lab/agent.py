"""The guest side of a lab run: ``python -m ksmdiff.lab.agent OUTDIR`` inside the VM.

It reads ``OUTDIR/job.json`` (the parsed scenarios and the model's records for the
kernel's real version, pickled by the host; the batch mode), replays the scenarios with ``ksmdiff.probe.run_kernel`` exactly as
``--kernel host`` does on the host, replays alone (``RERUNS`` times) each scenario whose
records differ from the model of that version (the host classifies the mismatch from
them, as it does for its own kernel), and writes ``OUTDIR/result.json`` atomically.
"""

from __future__ import annotations

import json
import os
import sys
import time


TIME_SCALE = 10.0   # the guest's CPU under TCG is 10-30x slower than the host's
BEAT_SECONDS = 1.0  # progress reports at most this often (the host waits minutes for one)


def uptime() -> float:
    """Seconds since the guest booted (/proc/uptime): the phases of a run on the same clock
    as the init's console lines, for the benchmark's account of where the time goes."""
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


PHASES: dict[str, float] = {"agent": uptime()}   # this module imported (interpreter up)


def scale_ksmd_waits(scale: float) -> None:
    """Stretch the runner's bounded waits for ksmd (settle, exact scans, draining stable
    nodes) and ksmd's sleep between exact scans by ``scale``: they were chosen for a native
    CPU; an emulated one does the same work many times slower.  Only the bounds and the
    sleep change, not what is waited for."""
    from ksmdiff.probe import system

    settle, scan_exact, drain = system.settle, system.scan_exact, system.drain_stable_nodes

    def settle_scaled(*, min_scans: int = 2, timeout: float = 3.0) -> int:
        return settle(min_scans=min_scans, timeout=timeout * scale)

    def scan_exact_scaled(n: int, *, sleep_ms: int = 20, timeout: float | None = None) -> int:
        # the runner must write run=0 while ksmd sleeps after the n-th scan: a 20 ms sleep
        # was too short a window for an emulated CPU ("ksmd did 2 full scans" on 6.1)
        sleep_ms = int(sleep_ms * scale)
        if timeout is None:
            timeout = 2.0 + n * sleep_ms / 1000 * 3
        return scan_exact(n, sleep_ms=sleep_ms, timeout=timeout * scale)

    def drain_scaled(timeout: float = 2.0) -> bool:
        return drain(timeout=timeout * scale)

    system.settle = settle_scaled
    system.scan_exact = scan_exact_scaled
    system.drain_stable_nodes = drain_scaled
    # the guest has one CPU: the runner's busy poll of ksmd's counters (a read every
    # 0.2 ms, each many times slower emulated) took that CPU from ksmd, which it waits for
    system.POLL_SECONDS = system.POLL_SECONDS * scale


def run_job(job: dict, beat=lambda what, now=False: None) -> dict:
    """Replay the job's scenarios; ``job["payload"]`` is the host's pickle of the parsed
    scenarios and the model's records for each (None where the model did not run): the
    guest neither builds the scenario parser nor imports the model, which under TCG cost
    seconds."""
    import base64
    import pickle

    from ksmdiff.internal.audit import pure
    from ksmdiff.judge.compare import compare
    from ksmdiff.observe import OK
    from ksmdiff.probe import run_kernel

    PHASES["imports"] = uptime()
    beat("phase:imports", now=True)
    scale_ksmd_waits(float(job.get("time_scale", TIME_SCALE)))
    from ksmdiff.probe.system import kpageflags_ksm_on_plain_anon
    ksm_flag_broken = kpageflags_ksm_on_plain_anon()
    payload = pickle.loads(base64.b64decode(job["payload"]))
    scenarios, model_records = payload["scenarios"], payload["model"]
    PHASES["payload"] = uptime()

    def progress(done: int, total: int) -> None:
        if done == 1:
            PHASES["first"] = uptime()
        beat(f"{done}/{total}", now=done == 1)     # the first result: the benchmark's mark
    t = time.monotonic()
    profile = None
    if job.get("profile"):          # the benchmark's --profile: where the guest's time goes
        import cProfile
        profile = cProfile.Profile()
        profile.enable()
    # a lab VM is the run's own machine: run=2 (ksm unmerge-all) unmerges only what its
    # scenarios merged
    runs = run_kernel(scenarios, batch=job.get("batch"), progress=progress, allow_global=True)
    corpus_s = time.monotonic() - t
    profile_text = ""
    if profile is not None:
        import io
        import pstats
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)
        profile_text = out.getvalue()
    PHASES["corpus"] = uptime()
    beat("phase:corpus", now=True)
    reruns: dict[str, list] = {}
    for i, (scn, run) in enumerate(zip(scenarios, runs)):
        if run.status != OK or model_records[i] is None:
            continue
        with pure():
            diverges = bool(compare(model_records[i], run.records))
        if diverges:
            reruns[str(i)] = []
            for k in range(int(job.get("reruns", 2))):
                beat(f"rerun {i}.{k}")
                reruns[str(i)].append(_run_json(run_kernel([scn], batch=False,
                                                           allow_global=True)[0]))
    PHASES["reruns"] = uptime()
    beat("phase:reruns", now=True)
    return {"release": os.uname().release, "runs": [_run_json(r) for r in runs],
            "reruns": reruns, "corpus_s": round(corpus_s, 3), "phases": dict(PHASES),
            "profile": profile_text,
            "kpageflags_ksm_on_plain_anon": ksm_flag_broken}


def _run_json(run) -> dict:
    return {"status": run.status, "reason": run.reason, "mode": run.mode, "salt": run.salt,
            "records": [r.to_json() for r in run.records]}


def _write(path: str, doc: dict) -> None:
    # encoded first, then one write: json.dump writes each small chunk of the encoding
    # with its own write(2), each a round trip over 9p (seconds for a corpus' records)
    data = json.dumps(doc, separators=(",", ":")).encode()
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0]
    t0 = time.monotonic()
    with open(os.path.join(out, "started"), "w") as f:
        f.write(f"{t0}\n")
    with open(os.path.join(out, "job.json")) as f:
        job = json.load(f)
    last = [0.0]

    def beat(what: str, *, now: bool = False) -> None:
        # the host's hang detector (progress, not a deadline), at most every BEAT_SECONDS
        # (each beat is a file written and renamed over 9p: 25 ms of an emulated CPU)
        t = time.monotonic()
        if not now and t - last[0] < BEAT_SECONDS:
            return
        last[0] = t
        path = os.path.join(out, "progress")
        with open(path + ".tmp", "w") as f:
            f.write(f"{what} {time.monotonic() - t0:.3f}\n")
        os.replace(path + ".tmp", path)

    try:
        if job.get("kind") == "race":          # ksmdiff lab race: race.c, no scenarios
            from ksmdiff.lab.race import run_in_guest
            doc = run_in_guest(job, beat)
        else:
            doc = run_job(job, beat)
    except BaseException as e:      # the host reports it as an environment result
        import traceback
        _write(os.path.join(out, "result.json"),
               {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        return 1
    doc["agent_s"] = round(time.monotonic() - t0, 3)
    _write(os.path.join(out, "result.json"), doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
