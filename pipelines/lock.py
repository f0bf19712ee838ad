"""One run per output folder at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from lenghu.errors import LenghuError


class OutputBusyError(LenghuError):
    """Another lenghu run holds the output folder."""


class RunLock:
    """An exclusive ``flock`` on ``OUT/.lenghu.lock`` for the duration of a run.

    The kernel drops the lock when the process dies (even by SIGKILL), so a
    crashed run never leaves the folder locked.
    """

    def __init__(self, out: str | Path):
        self.path = Path(out) / ".lenghu.lock"
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputBusyError(
                f"{self.path.parent}: another lenghu run (pid {holder}) is using this output folder; "
                "wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
