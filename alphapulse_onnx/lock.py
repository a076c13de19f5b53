"""One apo writer per output folder: an OS-level lock that dies with its process."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from types import TracebackType

from alphapulse_onnx.errors import LockError

LOCK_NAME = ".apo.lock"
# What _fsutil.atomic_file (every atomic write) leaves behind when its process is killed between
# mkstemp and rename:
# ".NAME.<8 random characters>.tmp", as mkstemp names them.
STALE_TEMP_GLOB = ".*.tmp"
_STALE_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


class OutputLock:
    """``flock`` on ``OUT/.apo.lock``: released by the kernel even when apo is killed.

    The lock file itself stays (an empty file, or the holder's pid while held); what matters is
    the kernel lock on it, so a killed run never blocks the next one. Whoever takes the lock is the
    only writer, so it also removes temp files that a killed writer left behind.
    """

    def __init__(self, folder: Path, *, shared: bool = False) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self.shared = shared  # readers (apo validate) share it; only a writer excludes them
        self._fd: int | None = None
        self.removed_temp_files = 0

    def __enter__(self) -> OutputLock:
        if self.shared:
            return self._enter_shared()
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockError(
                f"another apo run{holder} is writing to this folder",
                path=self.folder,
                hint="wait for it to finish, or use a different --out",
            ) from None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        self.removed_temp_files = remove_stale_temp_files(self.folder)
        return self

    def _enter_shared(self) -> OutputLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return self  # a folder we cannot write to has no writer to wait for either
        try:
            _lock(fd, shared=True)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockError(
                f"an apo run{holder} is writing to this folder right now",
                path=self.folder,
                hint="validate once it has finished",
            ) from None
        self._fd = fd
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        if self._fd is not None:
            if not self.shared:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def remove_stale_temp_files(folder: Path) -> int:
    """Delete half-written ``.NAME.<random>.tmp`` files below ``folder``; only under the lock."""
    removed = 0
    for path in folder.rglob(STALE_TEMP_GLOB):
        if _STALE_TEMP_NAME.match(path.name) and path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed


def _lock(fd: int, *, shared: bool = False) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        if not shared:  # msvcrt has no shared locks: readers do not lock there
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        pid = int(os.read(fd, 32).decode().strip() or "0")
        if pid:
            return f" (pid {pid})"
    return ""
