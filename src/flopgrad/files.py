"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile


def write_atomic_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write data to path so that readers see the old file or the new one, never half.

    >>> import os, tempfile
    >>> from flopgrad.files import write_atomic_bytes
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_atomic_bytes(os.path.join(tmp, "b.bin"), b"flop")
    ...     os.path.getsize(os.path.join(tmp, "b.bin")), os.listdir(tmp)
    (4, ['b.bin'])
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text atomically (see write_atomic_bytes).

    >>> import os, tempfile
    >>> from flopgrad.files import write_atomic
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_atomic(os.path.join(tmp, "a.txt"), "héllo")
    ...     with open(os.path.join(tmp, "a.txt"), encoding="utf-8") as f:
    ...         f.read()
    'héllo'
    """
    write_atomic_bytes(path, text.encode("utf-8"))
