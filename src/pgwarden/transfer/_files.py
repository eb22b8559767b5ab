"""Open the files of a bundle: written private (0600 in 0700), read as regular files only.

A bundle holds personal data, so the export writes it as backups are written: readable by
its owner alone. A bundle read back is untrusted (a shared disk is writable by more people
than the host that imports from it): a file is opened only as a regular file inside the
directory given, never through a symbolic link, never a FIFO or a device.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

__all__ = ["NotRegular", "create_private", "open_regular", "private_directory"]

# os.open makes descriptors non-inheritable: no O_CLOEXEC needed. O_NONBLOCK: a FIFO
# does not block the open (it is refused after).
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
_WRITE = os.O_WRONLY | os.O_CREAT


class NotRegular(OSError):
    """Raise when a path is a symbolic link, a directory, a FIFO or a device, not a file."""


def private_directory(path: Path) -> None:
    """Create ``path`` (and missing parents) if needed, and make it 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def create_private(path: Path, *, exclusive: bool = True) -> BinaryIO:
    """Open ``path`` for writing as a new 0600 file (``exclusive``), or truncate it.

    ``exclusive`` fails on any existing name, a link included. A file that exists
    already keeps its mode when truncated: it is the user's.
    """
    flags = _WRITE | (os.O_EXCL if exclusive else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), "wb")


def open_regular(directory: Path, relative: str) -> BinaryIO:
    """Open ``directory/relative`` for reading, following no symbolic link on the way.

    ``relative`` is a checked name of one or two parts (``manifest.json``,
    ``data/public.users.copy``). Raises :class:`FileNotFoundError` when it is missing,
    :class:`NotRegular` when a part is a link or the file is not a regular file.
    """
    parent, _, name = relative.rpartition("/")
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if parent:
            inner = _open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, descriptor)
            os.close(descriptor)
            descriptor = inner
        handle = _open(name, _READ, descriptor)
    finally:
        os.close(descriptor)
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise NotRegular(f"{relative} is not a regular file")
    os.set_blocking(handle, True)
    return os.fdopen(handle, "rb")


def _open(name: str, flags: int, directory: int) -> int:
    try:
        return os.open(name, flags, dir_fd=directory)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) or _is_link(name, directory):
            raise NotRegular(f"{name} is a symbolic link or not a regular file") from exc
        raise


def _is_link(name: str, directory: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=directory).st_mode)
    except OSError:
        return False
