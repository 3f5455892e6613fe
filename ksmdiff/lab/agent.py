"""The guest side of the race experiment (``ksmdiff lab race``): ``python -m
ksmdiff.lab.agent OUTDIR`` inside the VM, the host's tree shared read-only.

It reads ``OUTDIR/job.json`` (race.make_job: the race program and its arguments), runs it
(race.run_in_guest) and writes ``OUTDIR/result.json`` atomically.  The corpus' scenarios
run without Python in the guest (driver.c, drive.py): an interpreter's start and imports
alone took 10-15 s of an emulated CPU; the race experiment is one program run once.
"""

from __future__ import annotations

import json
import os
import sys
import time


BEAT_SECONDS = 1.0  # progress reports at most this often (the host waits minutes for one)


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
        if job.get("kind") != "race":
            raise ValueError(f"not a race job: {job.get('kind')!r}")
        from ksmdiff.lab.race import run_in_guest
        doc = run_in_guest(job, beat)
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
