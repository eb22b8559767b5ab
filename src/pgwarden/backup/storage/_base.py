"""The storage interface every backend implements, and the rules for object keys."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, cast

from pgwarden.backup.errors import InvalidKey, ObjectNotFound

__all__ = [
    "CHUNK_SIZE",
    "ObjectInfo",
    "Storage",
    "check_key",
    "check_prefix",
    "chunks_of",
    "iter_file",
]

#: Bytes read at a time when a storage streams an object.
CHUNK_SIZE = 1024 * 1024

# Names that backends keep for themselves next to objects (temporary files, guards).
RESERVED_PREFIX = ".pgwarden"
_BAD_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\\]")
_KEY_HINT = (
    "A key is a relative path such as backups/20261120T020000Z/data.dump: segments "
    "separated by single '/', none empty, '.' or '..', no leading '/', no backslash or "
    "control characters."
)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Describe one stored object: its key, its size in bytes and when it was written."""

    key: str
    size: int
    modified: datetime
    etag: str | None = None


def check_key(key: str) -> str:
    """Return ``key`` if it is a clean relative path, else raise :class:`InvalidKey`.

    Keys come from manifests and command lines; a key that could climb out of the
    storage's root (``../x``, ``/etc/x``) or mean two things (``a//b``, ``a/./b``) is
    refused before any file or request is made.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("an object key is empty.", hint=_KEY_HINT)
    if _BAD_CHARACTERS.search(key):
        raise InvalidKey(
            f"object key {key!r} holds a backslash or a control character.", hint=_KEY_HINT
        )
    if key.startswith("/"):
        raise InvalidKey(f"object key {key!r} is an absolute path.", hint=_KEY_HINT)
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            shown = "an empty" if not segment else f"a {segment!r}"
            raise InvalidKey(f"object key {key!r} has {shown} path segment.", hint=_KEY_HINT)
        if segment.startswith(RESERVED_PREFIX):
            raise InvalidKey(
                f"object key {key!r} uses the reserved name prefix {RESERVED_PREFIX!r}.",
                hint=_KEY_HINT,
            )
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is empty or a clean key, optionally ending in ``/``."""
    if prefix == "":
        return prefix
    check_key(prefix.removesuffix("/"))
    return prefix


def iter_file(handle: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the rest of ``handle`` in chunks of at most ``chunk_size`` bytes."""
    while chunk := handle.read(chunk_size):
        yield chunk


def chunks_of(data: Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    """Yield the non-empty chunks of an iterable of bytes or a binary file."""
    source = iter_file(cast(BinaryIO, data)) if hasattr(data, "read") else data
    for chunk in source:
        if chunk:
            yield bytes(chunk)


class Storage(ABC):
    """Hold objects under keys: a local directory or an S3 bucket and prefix.

    Objects of any size are streamed in both directions. A write is all or nothing: until
    it completes, no object (not a partial one) is visible under the key. The four
    ``*_versioned``-style methods (:meth:`create`, :meth:`read_versioned`,
    :meth:`replace`, :meth:`delete_version`) are atomic compare-and-swap primitives for
    small control objects such as locks.
    """

    @property
    @abstractmethod
    def url(self) -> str:
        """Return where this storage is, as a URL that holds no secret."""

    @abstractmethod
    def write(self, key: str, data: Iterable[bytes] | BinaryIO) -> ObjectInfo:
        """Stream ``data`` into the object ``key``, replacing any, and describe it.

        If ``data`` raises, or the write fails, no object is left under ``key`` (a
        previous one stays) and nothing partial is left behind.
        """

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open the object ``key`` for streaming reads; close it (``with``) when done."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the objects whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Describe the object ``key``; raise :class:`ObjectNotFound` if there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object ``key``; deleting a missing object is not an error."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`StorageUnusable` unless objects can be written here."""

    @abstractmethod
    def create(self, key: str, data: bytes) -> str:
        """Create ``key`` holding ``data`` if absent, atomically; return its version.

        Raise :class:`ObjectExists` if there is an object under ``key`` already.
        """

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes, str]:
        """Return the content of the small object ``key`` and its version."""

    @abstractmethod
    def replace(self, key: str, data: bytes, *, version: str) -> str:
        """Replace ``key`` with ``data`` if it is still at ``version``; return the new one.

        Raise :class:`ObjectChanged` if the object changed or disappeared meanwhile.
        """

    @abstractmethod
    def delete_version(self, key: str, *, version: str) -> None:
        """Delete ``key`` if it is still at ``version``, else raise :class:`ObjectChanged`.

        A missing object is not an error.
        """

    def exists(self, key: str) -> bool:
        """Return whether there is an object under ``key``."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def read_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Yield the content of ``key`` in chunks of at most ``chunk_size`` bytes."""
        with self.open(key) as handle:
            yield from iter_file(handle, chunk_size)

    def read_bytes(self, key: str) -> bytes:
        """Return the whole content of ``key``; for small objects only."""
        with self.open(key) as handle:
            return handle.read()

    def write_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Write the small object ``key`` holding ``data``."""
        return self.write(key, [data])

    def copy_to(self, key: str, target: Storage, target_key: str | None = None) -> ObjectInfo:
        """Stream the object ``key`` into ``target`` (off-site copy) and describe the copy.

        The object passes through this process a chunk at a time, so it can go between
        any two storages, of any size.
        """
        return target.write(target_key or key, self.read_chunks(key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
