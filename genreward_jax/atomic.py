"""Atomic file writes for the whole tree: a crash or a kill never leaves a half-written file.

Every file that is (re)written whole — goals, checkpoints' side files, flags, videos, curves,
benchmark JSON — goes to a temporary file in the same folder (same filesystem, so the rename is
atomic), is flushed, and only then replaces the target; on any error the temporary file goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any


def readable_mode() -> int:
    """The mode a plainly created file would get (mkstemp makes 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path in `path`'s folder with the same extension (writers that pick a
    format by extension still work); moves it onto `path` when the block succeeds."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, readable_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str, data: bytes | str) -> None:
    """Writes bytes, or text as UTF-8, atomically (fsync before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: str, payload: Any, indent: int = 1) -> None:
    atomic_write(path, json.dumps(payload, indent=indent) + "\n")
