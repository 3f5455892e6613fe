"""A worker process that computes ahead: ``fn(job)`` for each job submitted, in order,
while the caller does something else (``ksmdiff fuzz`` on a kernel: the model's and the
spec's replays of a batch while the kernel runs it).  Forking is system access: pure code
only gets here through a caller outside ``audit.pure()``."""

from __future__ import annotations

import multiprocessing
import os

from ksmdiff.internal.gcpause import collector_paused


def _serve(conn, fn) -> None:
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return                    # the fuzzer is gone
            if job is None:
                return
            try:
                with collector_paused():    # a batch's results: many objects, no cycles
                    conn.send(("ok", fn(job)))
            except Exception as e:        # the fuzzer makes them itself then
                conn.send(("error", f"{type(e).__name__}: {e}"))
    except KeyboardInterrupt:
        return


class Ahead:
    """``fn(batch)`` for the batches ``submit`` gives, in order, in a worker process forked
    when this is made (before any kernel run starts threads); ``result()`` is the oldest
    batch's, or, when the worker failed, ``fn`` of it made here."""

    def __init__(self, fn):
        self.fn = fn
        self.pending: list = []
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, fn), daemon=True)
        self.proc.start()
        child.close()

    def submit(self, batch) -> None:
        self.pending.append(batch)
        if self.conn is not None:
            try:
                self.conn.send(batch)
            except (OSError, EOFError):
                self.conn = None

    def result(self):
        batch = self.pending.pop(0)
        if self.conn is not None:
            try:
                with collector_paused():    # unpickled in bulk (gcpause.py)
                    status, value = self.conn.recv()
                if status == "ok":
                    return value
            except (OSError, EOFError):
                self.conn = None
        return self.fn(batch)

    def close(self) -> None:
        """Stop the worker.  One still making a batch nobody will take (the fuzzer's budget
        ran out with the next batch submitted) is ended at once, not waited for: that batch
        is seconds of CPU thrown away."""
        busy = bool(self.pending)
        if self.conn is not None:
            try:
                self.conn.send(None)
            except (OSError, EOFError):
                pass
            self.conn.close()
            self.conn = None
        if busy and self.proc.is_alive():
            self.proc.kill()              # this object's own child, by its pid
        self.proc.join(timeout=5)
        if self.proc.is_alive():          # this object's own child, by its pid
            os.kill(self.proc.pid, 9)
            self.proc.join()
