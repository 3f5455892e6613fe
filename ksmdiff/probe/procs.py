"""Probe processes on the host: the probe server (``ksmdiff-probe --server``) and the probes
it forks, watched and signalled through pidfds.  The host backend of the runner."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

from ksmdiff.errors import EnvironmentProblem

PROBE_ENV = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0", "KSMDIFF_PROBE_NORSEQ": "1",
             "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def _readable(fds, timeout: float | None) -> list[int]:
    """The fds of ``fds`` that are readable within ``timeout`` seconds (poll(2): no
    FD_SETSIZE limit, unlike select)."""
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    ms = None if timeout is None else max(0, int(timeout * 1000))
    return [fd for fd, _ev in p.poll(ms)]


class _Forked:
    """A probe the probe server forked: stdin/stdout/stderr on our pipes; not our child,
    so it is watched and signalled through the pidfd the server sent with its pid (opened
    before the server could reap it: it names this probe, never a reused pid)."""

    def __init__(self, pid: int, pidfd: int, fds):
        self.pid = pid
        self.pidfd: int | None = pidfd
        self.stdin = os.fdopen(fds[0], "wb", buffering=0)
        self.stdout = os.fdopen(fds[1], "rb", buffering=0)
        self.stderr = os.fdopen(fds[2], "rb", buffering=0)
        self.returncode: int | None = None
        self.closed = False

    def poll(self) -> int | None:
        if self.pidfd is None:
            return -1 if self.returncode is None else self.returncode
        if self.returncode is None and _readable([self.pidfd], 0):
            self.returncode = -1         # exited; the exit code stays with the server
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.poll() is None:
            if not _readable([self.pidfd], timeout):
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            self.returncode = -1
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        if self.poll() is None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass                     # exited meanwhile

    def wait_tree(self, timeout: float) -> bool:
        """Wait (bounded) until the probe and every scenario process it started are gone:
        they all hold the write end of its stdout (inherited), so EOF there means none is
        left, and their memory was torn down.  What they still wrote is discarded."""
        fd = self.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not _readable([fd], left):
                return False
            try:
                if not os.read(fd, 1 << 16):
                    return True
            except BlockingIOError:
                continue

    def close(self) -> None:
        self.closed = True
        for f in (self.stdin, self.stdout, self.stderr):
            try:
                f.close()
            except OSError:
                pass
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class _ProbeServer:
    """``ksmdiff-probe --server``: forks a probe per request, far cheaper than an exec.

    The protocol (top of probe.c's ``serve``): a request is ``P TOKEN LEN`` (fixed size,
    LEN as 10 digits) with the probe's stdin, stdout and stderr attached, then the program;
    the answer is ``TOKEN PID`` (fixed size) with the probe's pidfd attached.  TOKEN is
    random per server and checked first on every message, by both sides."""

    REQ = b"P %s %010d\n"
    REQ_LEN = 2 + 16 + 1 + 10 + 1
    REPLY_LEN = 16 + 1 + 11 + 1

    def __init__(self, exe: Path, lock: Path):
        import secrets
        import socket
        import threading
        self._socket = socket
        self.token = secrets.token_hex(8).encode()
        a, b = socket.socketpair()
        env = {**PROBE_ENV, "KSMDIFF_PROBE_LOCK": str(lock),
               "KSMDIFF_PROBE_TOKEN": self.token.decode()}
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            self.pid = os.posix_spawn(str(exe), [exe.name, "--server", "3"], env, file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, b.fileno(), 3)])
        finally:
            os.close(devnull)
            b.close()
        self.sock = a
        self.lock = threading.Lock()

    def spawn(self, program: bytes) -> _Forked:
        return self.spawn_many([program])[0]

    PIPELINE = 16    # requests in flight: their programs fit the socket buffer

    def _reply(self) -> tuple[int, int | None]:
        """One answer: (pid, pidfd).  The token is compared before the pid is read;
        descriptors beyond the one pidfd, or a cut control message, are closed and fail."""
        data, fds, bad = b"", [], False
        while len(data) < self.REPLY_LEN:
            chunk, got, flags, _addr = self._socket.recv_fds(
                self.sock, self.REPLY_LEN - len(data), 4, self._socket.MSG_CMSG_CLOEXEC)
            fds += got
            bad = bad or bool(flags & self._socket.MSG_CTRUNC)
            if not chunk:
                break
            data += chunk
        if (len(data) != self.REPLY_LEN or data[:16] != self.token or data[16:17] != b" "
                or bad or len(fds) > 1):
            for fd in fds:
                os.close(fd)
            raise EnvironmentProblem(f"the probe server died or answered out of step "
                                     f"({data[:40]!r}{', cut descriptors' if bad else ''})")
        try:
            pid = int(data[17:])
        except ValueError:
            pid = 0
        if pid <= 0:
            for fd in fds:
                os.close(fd)
            raise EnvironmentProblem(
                f"the probe server could not fork: {os.strerror(-pid) if pid else data!r}")
        return pid, (fds[0] if fds else None)

    def spawn_many(self, programs: list[bytes]) -> list[_Forked]:
        """One probe per program.  The requests are pipelined (up to PIPELINE sent before
        the first answer is read): the server forks while the next request is on its way."""
        out: list[_Forked] = []
        with self.lock:
            for at in range(0, len(programs), self.PIPELINE):
                sent = []
                try:
                    for program in programs[at:at + self.PIPELINE]:
                        fds = [os.pipe() for _ in range(3)]      # stdin, stdout, stderr
                        sent.append(fds)
                        child = [fds[0][0], fds[1][1], fds[2][1]]
                        try:
                            self._socket.send_fds(self.sock, [self.REQ % (self.token,
                                                                          len(program))],
                                                  child)
                            self.sock.sendall(program)
                        finally:
                            for fd in child:
                                os.close(fd)
                    for fds in sent:
                        pid, pidfd = self._reply()
                        if pidfd is None:
                            raise EnvironmentProblem(
                                "this kernel has no pidfd_open (Linux 5.3): the runner watches "
                                "and stops its probes only through pidfds, never by a pid "
                                "that may have been reused, so it does not run here")
                        os.set_blocking(fds[1][0], False)
                        out.append(_Forked(pid, pidfd, (fds[0][1], fds[1][0], fds[2][0])))
                except BaseException:
                    # the probes already answered for die with their pipes (EOF on stdin)
                    for f in out:
                        f.kill()
                        f.close()
                    for fds in sent[len(out) - at:]:
                        for fd in (fds[0][1], fds[1][0], fds[2][0]):
                            try:
                                os.close(fd)
                            except OSError:
                                pass
                    raise
        return out

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
