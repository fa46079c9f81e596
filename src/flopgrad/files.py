"""Atomic file writes: a reader sees the old file or the new one, never half of one.

What a write does (`fg.save`, `Bill.to_json/to_csv/to_chrome_trace`):

- a symlink is followed: the file it points to is replaced, the link stays a link;
- an existing path that is not a regular file (a directory, a device, a FIFO, a socket) is
  refused with a clear error before anything is written;
- a new file gets mode 0666 & ~umask, like `open(path, "w")` and `torch.save`; a file that
  is replaced keeps its mode (and, where allowed, its owner and group);
- the data goes to a temporary `.{name}.flopgrad-tmp-{pid}-{random}` next to the target
  and is renamed over it; temporaries of the same name left by a process that died mid-write
  (a SIGKILL, a power cut) are removed by the next write of that name.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import threading

_TMP_TAG = ".flopgrad-tmp-"
_TMP_REST = re.compile(r"(\d+)-[0-9a-f]{8}")
_NAME_BYTES = 160  # the target's name in a temporary's name is cut to this many bytes
_in_flight: set[str] = set()  # temporaries this process is writing now (never stale)
_in_flight_lock = threading.Lock()

_KINDS = ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"))


def writable_target(path: str | os.PathLike) -> str:
    """The regular file a write to `path` would replace or create, symlinks resolved.

    Raises before anything is written: ValueError for an empty path or an existing path
    that is not a regular file, IsADirectoryError for a directory, FileNotFoundError when
    the folder does not exist, PermissionError when it is not writable.

    >>> import os, tempfile
    >>> from flopgrad.files import writable_target
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     os.symlink("real.bin", os.path.join(tmp, "link.bin"))
    ...     os.path.basename(writable_target(os.path.join(tmp, "link.bin")))
    'real.bin'
    """
    raw = os.fsdecode(os.fspath(path))
    if raw == "":
        raise ValueError("cannot write to an empty path")
    target = os.path.realpath(raw)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"cannot write {raw}: it is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "special file")
        raise ValueError(f"cannot write {raw}: it is a {kind}, not a regular file")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {raw}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"cannot write {raw}: folder {folder} is not "
                                            "writable")
    return target


def _tmp_prefix(name: str) -> str:
    cut = os.fsdecode(os.fsencode(name)[:_NAME_BYTES])
    return f".{cut}{_TMP_TAG}"


def _process_alive(pid: int) -> bool:
    if pid <= 0 or os.name != "posix":
        return True  # not ours to judge: leave the file alone
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False  # no such process (or no process can have that id)
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temporaries(folder: str, name: str) -> list[str]:
    """Delete the temporaries of `name` in `folder` whose writer has died; returns them.

    >>> import os, tempfile
    >>> from flopgrad.files import remove_stale_temporaries
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     open(os.path.join(tmp, ".w.bin.flopgrad-tmp-999999999-0123abcd"), "w").close()
    ...     remove_stale_temporaries(tmp, "w.bin"), os.listdir(tmp)
    (['.w.bin.flopgrad-tmp-999999999-0123abcd'], [])
    """
    prefix = _tmp_prefix(name)
    removed = []
    try:
        entries = [e.name for e in os.scandir(folder) if e.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_REST.fullmatch(entry[len(prefix):])
        if m is None:
            continue
        pid = int(m.group(1))
        full = os.path.join(folder, entry)
        with _in_flight_lock:
            ours = full in _in_flight
        if ours or (pid != os.getpid() and _process_alive(pid)):
            continue
        try:
            os.unlink(full)
            removed.append(entry)
        except OSError:
            pass
    return removed


def _open_temporary(folder: str, name: str) -> tuple[int, str]:
    prefix = _tmp_prefix(name)
    while True:
        tmp = os.path.join(folder, f"{prefix}{os.getpid()}-{secrets.token_hex(4)}")
        with _in_flight_lock:  # registered first: another thread's cleanup never takes it
            _in_flight.add(tmp)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                         0o666)  # the umask applies, as for any new file
        except BaseException as err:
            with _in_flight_lock:
                _in_flight.discard(tmp)
            if isinstance(err, FileExistsError):
                continue
            raise
        return fd, tmp


def _keep_mode_and_owner(fd: int, old: os.stat_result) -> None:
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)
    if hasattr(os, "fchown") and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)
        except OSError:
            pass  # not allowed (not root): the new file is ours, as after `cp`


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write data to path so that readers see the old file or the new one, never half.

    >>> import os, tempfile
    >>> from flopgrad.files import write_atomic_bytes
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_atomic_bytes(os.path.join(tmp, "b.bin"), b"flop")
    ...     os.path.getsize(os.path.join(tmp, "b.bin")), os.listdir(tmp)
    (4, ['b.bin'])
    """
    target = writable_target(path)
    folder, name = os.path.split(target)
    remove_stale_temporaries(folder, name)
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    fd, tmp = _open_temporary(folder, name)
    try:
        with os.fdopen(fd, "wb") as f:
            if old is not None:
                _keep_mode_and_owner(f.fileno(), old)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        with _in_flight_lock:
            _in_flight.discard(tmp)
    _fsync_folder(folder)


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
