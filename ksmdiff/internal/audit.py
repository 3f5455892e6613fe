"""An audit hook that keeps pure code (scenario, model, judge, kspec, gen) off the system.

Inside ``with pure():`` any attempt to open, list or stat something under ``/sys`` or
``/proc``, to start a process, or to load a shared library through ctypes raises
:class:`SystemAccessError`.  The CLI runs the model and the judge inside it, and the tests
wrap every pure test in it (tests/conftest.py), so a model that reads the host's KSM
counters, say, fails loudly instead of quietly agreeing with the kernel.

Audit hooks cannot be removed (PEP 578); the hook is installed once and does nothing
outside a ``pure()`` block of the same thread.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

FORBIDDEN_ROOTS = ("/sys", "/proc", "/dev")
_PATH_EVENTS = {"open", "os.listdir", "os.scandir", "os.chdir", "os.remove", "os.rename",
                "os.mkdir", "os.rmdir", "os.truncate", "os.chmod", "os.chown", "os.utime",
                "shutil.copyfile", "shutil.rmtree", "os.symlink", "os.link"}
_PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                   "os.fork", "os.forkpty", "pty.spawn", "ctypes.dlopen", "os.kill",
                   "os.killpg", "socket.connect"}

_state = threading.local()
_installed = False
_lock = threading.Lock()


class SystemAccessError(PermissionError):
    """Pure code tried to touch the system."""


def _forbidden(path: object) -> str | None:
    if isinstance(path, int):          # an fd: opened elsewhere, already checked
        return None
    try:
        text = os.fsdecode(path)  # type: ignore[arg-type]
    except TypeError:
        return None
    full = os.path.normpath(os.path.join(os.getcwd(), text)) if not text.startswith("/") \
        else os.path.normpath(text)
    for root in FORBIDDEN_ROOTS:
        if full == root or full.startswith(root + "/"):
            return full
    return None


def _hook(event: str, args: tuple) -> None:
    if not getattr(_state, "depth", 0):
        return
    if event in _PATH_EVENTS and args:
        bad = _forbidden(args[0])
        if bad is not None:
            raise SystemAccessError(f"pure code may not touch {bad} ({event})")
    elif event in _PROCESS_EVENTS:
        raise SystemAccessError(f"pure code may not {event}")


def install() -> None:
    global _installed
    with _lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


@contextlib.contextmanager
def pure():
    """Forbid system access in this thread for the duration of the block."""
    install()
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def is_pure() -> bool:
    return bool(getattr(_state, "depth", 0))
