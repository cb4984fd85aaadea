"""Single-owner lock for a store directory.

An embedded Qdrant Edge store may be opened by one process only (a second opener fails on the
WAL lock and can disturb the owner's flushes), so ragtune takes an exclusive ``flock`` first and
writes who holds it. The kernel drops the lock when the holder dies, even on ``kill -9``, so a
crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from ragtune.index.base import StoreBusyError


class OwnerLock:
    def __init__(self, directory: Path, name: str = "owner.lock"):
        self.path = Path(directory) / name
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StoreBusyError(
                f"store {self.path.parent} is in use by {holder}; wait for it to finish, stop it, "
                "or send the request through the process that owns it"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv)[:200],
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']} on {info['host']} ({info['command']!r}, since {info['since']})"
    except (ValueError, KeyError, OSError):
        return "another process"
