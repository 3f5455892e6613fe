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


def run_job(job: dict) -> dict:
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

    payload = pickle.loads(base64.b64decode(job["payload"]))
    scenarios, model_records = payload["scenarios"], payload["model"]
    t = time.monotonic()
    runs = run_kernel(scenarios, batch=job.get("batch"))
    corpus_s = time.monotonic() - t
    reruns: dict[str, list] = {}
    for i, (scn, run) in enumerate(zip(scenarios, runs)):
        if run.status != OK or model_records[i] is None:
            continue
        with pure():
            diverges = bool(compare(model_records[i], run.records))
        if diverges:
            reruns[str(i)] = [_run_json(run_kernel([scn], batch=False)[0])
                              for _ in range(int(job.get("reruns", 2)))]
    return {"release": os.uname().release, "runs": [_run_json(r) for r in runs],
            "reruns": reruns, "corpus_s": round(corpus_s, 3)}


def _run_json(run) -> dict:
    return {"status": run.status, "reason": run.reason, "mode": run.mode, "salt": run.salt,
            "records": [r.to_json() for r in run.records]}


def _write(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = argv[0]
    t0 = time.monotonic()
    with open(os.path.join(out, "started"), "w") as f:
        f.write(f"{t0}\n")
    with open(os.path.join(out, "job.json")) as f:
        job = json.load(f)
    try:
        doc = run_job(job)
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
