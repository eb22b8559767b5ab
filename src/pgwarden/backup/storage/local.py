"""Store backups in a local (or mounted) directory, crash-safe.

A key never leads out of the root directory: a symbolic link planted in the storage that
points elsewhere is refused (and not listed), for reads and writes alike.

Every write goes to a temporary file in the key's own directory (named
``.pgwarden-tmp-*``, never listed), is flushed to disk with fsync, and is then renamed
over the final name, and the directory is fsynced: after a crash the key holds either
the old object or the new one, never half of one. A temporary file can survive only a
crash of the process itself (SIGKILL, power loss); :meth:`LocalStorage.partials`
lists them.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NoReturn

from pgwarden.backup.errors import (
    InvalidKey,
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnusable,
)
from pgwarden.backup.storage._base import (
    RESERVED_PREFIX,
    ObjectInfo,
    Storage,
    check_key,
    check_prefix,
    chunks_of,
)

__all__ = ["LocalStorage"]

_TEMP_PREFIX = f"{RESERVED_PREFIX}-tmp-"
_GUARD_NAME = f"{RESERVED_PREFIX}-guard"
# link(2) is the atomic create-if-absent that publishes complete content; these say a
# filesystem has no hard links, and O_CREAT|O_EXCL is used instead.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK}


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage(Storage):
    """Hold objects as files under the directory ``root``, created when first written."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()

    @property
    def url(self) -> str:
        """Return the ``file://`` URL of the root directory."""
        return self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = self.root / check_key(key)
        if not self._inside(path):
            raise InvalidKey(
                f"object key {key!r} leads out of {self.url} through a symbolic link.",
                hint="Someone with write access to the storage planted the link: remove it, "
                "and check the storage's other objects.",
            )
        return path

    def _inside(self, path: Path) -> bool:
        """Return whether ``path``, its symbolic links followed, stays under the root."""
        return path.resolve().is_relative_to(self.root.resolve())

    def _fail(self, exc: OSError, action: str, path: Path) -> NoReturn:
        reason = exc.strerror or str(exc)
        if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
            raise StorageUnusable(
                f"cannot {action} {path}: {reason}.",
                hint=f"Give the user running pgwarden (uid {os.geteuid()}) write access to "
                f"{self.root}, or choose another backup storage.",
            ) from None
        if isinstance(exc, NotADirectoryError | FileExistsError):
            raise StorageUnusable(
                f"cannot {action} {path}: a file stands where a directory must be.",
                hint=f"Move the file away, or choose another backup storage than {self.root}.",
            ) from None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(
                f"cannot {action} {path}: {reason}.",
                hint=f"Free space on the filesystem of {self.root}, or expire old backups.",
            ) from None
        raise StorageError(f"cannot {action} {path}: {reason}.") from None

    def _makedirs(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._fail(exc, "create directory", directory)

    def _temp_file(self, path: Path) -> tuple[int, Path]:
        """Create a temporary file beside ``path``, making its directory if needed."""
        for _ in range(3):
            self._makedirs(path.parent)
            try:
                fd, name = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{path.name}.", dir=path.parent)
            except FileNotFoundError:
                continue  # a concurrent delete pruned the directory just made
            except OSError as exc:
                self._fail(exc, "write", path)
            return fd, Path(name)
        raise StorageError(f"cannot write {path}: its directory keeps disappearing.")

    def write(self, key: str, data: Iterable[bytes] | BinaryIO) -> ObjectInfo:
        """Stream ``data`` into a temporary file, fsync it and rename it to ``key``."""
        path = self._path(key)
        fd, temp = self._temp_file(path)
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks_of(data):
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
            _fsync_directory(path.parent)
        except OSError as exc:
            with suppress(OSError):
                temp.unlink()
            self._fail(exc, "write", path)
        except BaseException:
            with suppress(OSError):
                temp.unlink()
            raise
        return self.stat(key)

    def open(self, key: str) -> BinaryIO:
        """Open the file of ``key`` for reading."""
        path = self._path(key)
        try:
            if path.is_dir():
                raise FileNotFoundError(errno.ENOENT, "is a directory")
            return path.open("rb")
        except FileNotFoundError:
            raise self._not_found(key) from None
        except OSError as exc:
            self._fail(exc, "read", path)

    def _not_found(self, key: str) -> ObjectNotFound:
        return ObjectNotFound(
            f"there is no object {key!r} in {self.url}.",
            hint="List what the storage holds with `pgwarden backup list`.",
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the files whose key starts with ``prefix``, in key order."""
        check_prefix(prefix)
        base = self.root / prefix.rpartition("/")[0]
        found: list[ObjectInfo] = []

        def fail(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError):
                self._fail(exc, "list", Path(exc.filename or base))

        if not self._inside(base):
            return iter(found)
        for directory, _dirs, files in os.walk(base, onerror=fail):
            for name in files:
                if name.startswith(RESERVED_PREFIX):
                    continue
                path = Path(directory, name)
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix) or (path.is_symlink() and not self._inside(path)):
                    continue
                try:
                    found.append(self._info(key, path))
                except FileNotFoundError:
                    continue  # deleted while listing
        found.sort(key=lambda info: info.key)
        return iter(found)

    def partials(self) -> builtins.list[Path]:
        """Return the temporary files that crashed writes left behind."""
        return sorted(self.root.rglob(f"{_TEMP_PREFIX}*")) if self.root.is_dir() else []

    @staticmethod
    def _info(key: str, path: Path) -> ObjectInfo:
        status = path.stat()
        modified = datetime.fromtimestamp(status.st_mtime, UTC)
        return ObjectInfo(key=key, size=status.st_size, modified=modified)

    def stat(self, key: str) -> ObjectInfo:
        """Describe the file of ``key``."""
        path = self._path(key)
        try:
            if path.is_dir():
                raise FileNotFoundError(errno.ENOENT, "is a directory")
            return self._info(key, path)
        except FileNotFoundError:
            raise self._not_found(key) from None
        except OSError as exc:
            self._fail(exc, "read", path)

    def delete(self, key: str) -> None:
        """Delete the file of ``key`` and the directories it leaves empty."""
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._fail(exc, "delete", path)
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or not ours to remove): stop here
            directory = directory.parent

    def check(self) -> None:
        """Create the root directory if needed and prove a file can be written there."""
        self._makedirs(self.root)
        fd, temp = self._temp_file(self.root / "check")
        os.close(fd)
        temp.unlink()

    # -- compare-and-swap for small control objects ---------------------------------

    @contextmanager
    def _guard(self, path: Path) -> Iterator[None]:
        """Serialise the conditional operations on one directory, across processes.

        An flock on a guard file beside the objects: released by the kernel if the
        holder dies, and emulated with POSIX locks over NFS.
        """
        self._makedirs(path.parent)
        guard = path.parent / _GUARD_NAME
        try:
            fd = os.open(guard, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._fail(exc, "create", guard)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def create(self, key: str, data: bytes) -> str:
        """Create ``key`` if absent: a complete temporary file hard-linked to the name."""
        path = self._path(key)
        with self._guard(path):
            fd, temp = self._temp_file(path)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(temp, path)
                except FileExistsError:
                    raise ObjectExists(f"object {key!r} already exists in {self.url}.") from None
                except OSError as exc:
                    if exc.errno not in _NO_LINKS:
                        raise
                    self._create_exclusive(key, path, data)
                _fsync_directory(path.parent)
            except OSError as exc:
                self._fail(exc, "create", path)
            finally:
                with suppress(OSError):
                    temp.unlink()
        return _version(data)

    def _create_exclusive(self, key: str, path: Path, data: bytes) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ObjectExists(f"object {key!r} already exists in {self.url}.") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        """Return the content of ``key`` and its version (its SHA-256)."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise self._not_found(key) from None
        except OSError as exc:
            self._fail(exc, "read", path)
        return data, _version(data)

    def replace(self, key: str, data: bytes, *, version: str) -> str:
        """Replace ``key`` under the directory's guard if its content is unchanged."""
        path = self._path(key)
        with self._guard(path):
            current = self._current_version(path)
            if current != version:
                raise ObjectChanged(f"object {key!r} changed in {self.url}.")
            self.write(key, [data])
        return _version(data)

    def delete_version(self, key: str, *, version: str) -> None:
        """Delete ``key`` under the directory's guard if its content is unchanged."""
        path = self._path(key)
        with self._guard(path):
            current = self._current_version(path)
            if current is None:
                return
            if current != version:
                raise ObjectChanged(f"object {key!r} changed in {self.url}.")
            try:
                path.unlink()
            except OSError as exc:
                self._fail(exc, "delete", path)

    def _current_version(self, path: Path) -> str | None:
        try:
            return _version(path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._fail(exc, "read", path)
