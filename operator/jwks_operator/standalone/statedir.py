"""The state directory: private keys on a local disk, guarded like ``~/.ssh``.

Standalone mode has no API server to enforce who may read a key, so the filesystem does:
the directory must be 0700 and owned by us, every state file 0600, and a second instance
on the same directory is refused (two planners racing on one ``keys.json`` could each
promote a different key). Refusing to start is better than quietly tightening modes: a
directory that was group-readable may already have leaked, and the operator of the
machine should know.

The lock is an ``flock`` on ``<dir>/lock``: the kernel drops it when the process dies,
however it dies, so a SIGKILLed instance never leaves a stale lock behind.
"""

import contextlib
import fcntl
import os
import stat
from pathlib import Path
from typing import Final

from jwks_operator.store.localdir import (
    PRIVATE_SUFFIX,
    PUBLIC_SUFFIX,
    fsync_directory,
    remove_stale_temp_files,
)

DIR_MODE: Final = 0o700
LOCK_NAME: Final = "lock"


class StateDirError(Exception):
    """The state directory cannot be used safely; the message says why and what to do."""


def prepare_state_dir(path: Path) -> Path:
    """Create the directory (0700) if needed, else check it is private; return it resolved."""
    try:
        return _prepare_state_dir(path)
    except OSError as error:  # unreadable parent, read-only filesystem, ...
        raise StateDirError(f"state directory {path}: {error.strerror or error}") from None


def check_state_dir(path: Path) -> Path:
    """The checks of ``prepare_state_dir`` for a reader (``sign``, ``status``): never creates.

    A reader of private keys holds them to the same rule as the writer: a directory that
    anyone else could read is refused, not used.
    """
    if not path.is_dir():
        raise StateDirError(f"state directory {path} does not exist")
    try:
        return _check(path)
    except OSError as error:
        raise StateDirError(f"state directory {path}: {error.strerror or error}") from None


def _prepare_state_dir(path: Path) -> Path:
    if not path.exists():
        try:
            path.mkdir(mode=DIR_MODE, parents=True)
            os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask
            fsync_directory(path.resolve().parent)
        except OSError as error:
            raise StateDirError(f"cannot create state directory {path}: {error.strerror}") from None
    return _check(path)


def _check(path: Path) -> Path:
    resolved = path.resolve()
    info = resolved.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(f"state directory {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise StateDirError(
            f"state directory {path} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.geteuid()}); private keys must live in a directory only we control"
        )
    if info.st_mode & 0o077:
        raise StateDirError(
            f"state directory {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); it holds private keys: "
            f"run `chmod 700 {path}` after checking who could read it"
        )
    for child in resolved.iterdir():
        if child.name.endswith((PRIVATE_SUFFIX, PUBLIC_SUFFIX, LOCK_NAME)):
            mode = child.lstat().st_mode
            if stat.S_ISLNK(mode) or not stat.S_ISREG(mode):
                raise StateDirError(f"state file {child} is not a regular file")
            if mode & 0o077:
                raise StateDirError(
                    f"state file {child} is accessible by group or others "
                    f"(mode {stat.S_IMODE(mode):04o}); run `chmod 600 {child}` after checking "
                    "who could read it"
                )
    return resolved


class StateDirLock:
    """An exclusive, non-blocking ``flock`` held for the life of the process."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise StateDirError(f"cannot open lock {self.path}: {error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StateDirError(
                f"state directory {self.path.parent} is in use by another jwks-operator "
                f"standalone{holder}; two instances must not share one state directory"
            ) from None
        except OSError as error:
            os.close(fd)
            raise StateDirError(f"cannot lock {self.path}: {error.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        # Only the lock holder may clean up after a writer that was killed mid-write.
        remove_stale_temp_files(self.path.parent)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
        return f" (pid {pid})"
    return ""
