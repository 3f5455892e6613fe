"""The probe server's protocol (probe.c ``serve``): the token is checked before a request's
length is believed, descriptors beyond the three of a request end the server, and every
answer carries the token and the forked probe's pidfd.  No root needed: the forked probe
may fail at once (no /proc/kpageflags), its answer comes first."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from ksmdiff.probe.runner import _ProbeServer

TOKEN = "0123456789abcdef"
PROGRAM = b"ksmdiff-probe 1\nsalt 0000000000000001\nprocs 1\nregions 1\nstmts 0\nend\n"


@pytest.fixture
def exe():
    from ksmdiff.probe.build import probe_path
    try:
        return probe_path()
    except Exception as e:  # no compiler
        pytest.skip(f"cannot build the probe: {e}")


def server(exe, token=TOKEN):
    a, b = socket.socketpair()
    env = {"PATH": "/usr/bin:/bin", "KSMDIFF_PROBE_NORSEQ": "1"}
    if token is not None:
        env["KSMDIFF_PROBE_TOKEN"] = token
    p = subprocess.Popen([str(exe), "--server", str(b.fileno())], pass_fds=[b.fileno()],
                         env=env, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    b.close()
    return p, a


def request(sock, token: str, program: bytes, nfds: int = 3, count: int | None = None):
    pipes = [os.pipe() for _ in range(nfds)]
    header = b"P %s %010d\n" % (token.encode(), len(program) if count is None else count)
    socket.send_fds(sock, [header], [w for _r, w in pipes])
    try:
        sock.sendall(program)
    except (BrokenPipeError, ConnectionResetError):
        pass                               # the server refused the header and left
    for r, w in pipes:
        os.close(w)
    return [r for r, _w in pipes]


def no_answer(sock) -> bool:
    """The server ended without answering (EOF, or a reset: it left unread bytes)."""
    sock.settimeout(10)
    try:
        return sock.recv(64) == b""
    except ConnectionResetError:
        return True


def finish(p, sock) -> tuple[int, bytes]:
    sock.close()
    _out, err = p.communicate(timeout=20)
    return p.returncode, err


def test_answer_carries_the_token_and_the_probes_pidfd(exe):
    p, sock = server(exe)
    reads = request(sock, TOKEN, PROGRAM)
    data, fds, flags, _ = socket.recv_fds(sock, _ProbeServer.REPLY_LEN, 4)
    assert len(data) == _ProbeServer.REPLY_LEN and data[:16] == TOKEN.encode()
    pid = int(data[17:])
    assert pid > 0 and len(fds) == 1 and not flags & socket.MSG_CTRUNC
    with open(f"/proc/self/fdinfo/{fds[0]}") as f:
        info = f.read()
    # A pidfd names the forked probe while it lives; the empty program may already have
    # ended and been reaped by the server, and then the kernel shows the pidfd's Pid as -1.
    # Either way the descriptor is a pidfd (a regular fd has no Pid line).
    assert f"Pid:\t{pid}\n" in info or "Pid:\t-1\n" in info, info
    os.close(fds[0])
    for r in reads:
        os.close(r)
    code, err = finish(p, sock)
    assert code == 0, err


@pytest.mark.parametrize("token, count", [
    ("fedcba9876543210", None),            # wrong token, right length
    ("fedcba9876543210", 10 ** 9),         # wrong token and a length too large
    (TOKEN, 10 ** 9),                      # right token, a length too large
])
def test_a_bad_header_ends_the_server_without_a_fork(exe, token, count):
    p, sock = server(exe)
    reads = request(sock, token, PROGRAM, count=count)
    assert no_answer(sock)
    code, err = finish(p, sock)
    assert code == 2 and b"malformed request" in err
    for r in reads:
        assert os.read(r, 1) == b""        # closed: no probe holds them
        os.close(r)


def test_descriptors_beyond_three_end_the_server(exe):
    p, sock = server(exe)
    reads = request(sock, TOKEN, PROGRAM, nfds=4)
    assert no_answer(sock)
    code, err = finish(p, sock)
    assert code == 2 and b"malformed request" in err
    for r in reads:
        assert os.read(r, 1) == b""
        os.close(r)


def test_the_server_needs_its_token(exe):
    p, sock = server(exe, token=None)
    code, err = finish(p, sock)
    assert code == 4 and b"KSMDIFF_PROBE_TOKEN" in err


def test_without_pidfds_the_runner_says_so(monkeypatch):
    """A kernel without pidfd_open: the server answers without a pidfd, and the runner
    stops with that reason instead of watching a probe by a pid that may be reused."""
    import threading

    from ksmdiff.errors import EnvironmentProblem
    a, b = socket.socketpair()
    srv = _ProbeServer.__new__(_ProbeServer)
    srv._socket, srv.sock, srv.lock, srv.token = socket, a, threading.Lock(), TOKEN.encode()
    monkeypatch.setattr(_ProbeServer, "_reply", lambda self: (4242, None))
    try:
        with pytest.raises(EnvironmentProblem, match="pidfd_open"):
            srv.spawn_many([PROGRAM])
    finally:
        a.close()
        b.close()


def test_an_answer_out_of_step_is_refused():
    a, b = socket.socketpair()
    srv = _ProbeServer.__new__(_ProbeServer)
    srv._socket, srv.sock, srv.token = socket, a, TOKEN.encode()
    from ksmdiff.errors import EnvironmentProblem
    try:
        b.sendall(b"fedcba9876543210 %11d\n" % 77)
        with pytest.raises(EnvironmentProblem, match="out of step"):
            srv._reply()
    finally:
        a.close()
        b.close()
