"""Read one version of an S3 object as a stream that resumes after a broken connection."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (  # type: ignore[import-untyped]
    ClientError,
    IncompleteReadError,
)

from pgwarden.backup.errors import StorageError
from pgwarden.backup.storage._base import ObjectInfo
from pgwarden.backup.storage._retry import retry
from pgwarden.backup.storage._s3_errors import error_code, is_transient

if TYPE_CHECKING:
    from pgwarden.backup.storage.s3 import S3Storage

__all__ = ["S3Reader"]

CONFLICT = {"PreconditionFailed", "412"}


class S3Reader(io.RawIOBase):
    """Read one version of an object, reopening at the current offset after a failure."""

    def __init__(self, storage: S3Storage, key: str, info: ObjectInfo) -> None:
        self._storage = storage
        self._key = key
        self._info = info
        self._position = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._position >= self._info.size or not len(view):
            return 0
        data: bytes = self._storage._call(
            "read",
            self._key,
            lambda: retry(
                lambda: self._read(len(view)),
                transient=is_transient,
                backoff=self._storage.backoff,
                describe=f"read of {self._storage.url}{self._key}",
            ),
        )
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _read(self, size: int) -> bytes:
        try:
            if self._body is None:
                self._body = self._open()
            data: bytes = self._body.read(size)
        except BaseException:
            self._drop()
            raise
        if not data:
            self._drop()
            raise IncompleteReadError(actual_bytes=self._position, expected_bytes=self._info.size)
        return data

    def _open(self) -> Any:
        storage = self._storage
        request: dict[str, Any] = {
            "Bucket": storage.bucket,
            "Key": storage.prefix + self._key,
            "IfMatch": f'"{self._info.etag}"',
        }
        if self._position:
            request["Range"] = f"bytes={self._position}-"
        try:
            return storage._client.get_object(**request)["Body"]
        except ClientError as exc:
            if error_code(exc) in CONFLICT:
                raise StorageError(
                    f"{storage.url}{self._key} was replaced while it was being read.",
                    hint="Read it again; if it keeps changing, something else writes it.",
                ) from None
            raise

    def _drop(self) -> None:
        if self._body is not None:
            body, self._body = self._body, None
            body.close()

    def close(self) -> None:
        self._drop()
        super().close()
