"""Files written whole or not at all: a temporary file beside the target, renamed over it.

A killed run leaves either the old file or the new one, never half of one (the run record,
``format --in-place``, the reports).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(path: str | os.PathLike, text: str, *,
                          keep_mode: bool = False) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory.

    ``keep_mode``: an existing file keeps its permission bits (``format --in-place``);
    otherwise the file is 0644."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        mode = target.stat().st_mode & 0o7777 if keep_mode and target.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
