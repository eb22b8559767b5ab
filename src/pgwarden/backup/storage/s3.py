"""Store backups in an S3 bucket (AWS or any S3-compatible server), streamed both ways.

Writes of more than one part are multipart uploads: one part at a time is held in
memory, each part is sent with its Content-MD5 (the server rejects a damaged one) and
retried with backoff, and the upload is aborted if anything fails, so no object and no
orphaned parts are left. Parts start at ``part_size`` (8 MiB or more) and double every
1,000 parts, so one upload can reach S3's limit of 5 TiB within its 10,000 parts while
an ordinary one never holds more than ``part_size`` in memory.

Credentials come from boto3's usual chain (environment, profile, instance or task
role); they never appear in a URL, a message or a log.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, TypeVar, cast

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
)

from pgwarden.backup.errors import (
    ObjectChanged,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StorageUnusable,
)
from pgwarden.backup.storage._base import (
    CHUNK_SIZE,
    ObjectInfo,
    Storage,
    check_key,
    check_prefix,
    chunks_of,
)
from pgwarden.backup.storage._retry import Backoff, retry
from pgwarden.backup.storage._s3_errors import error_code, is_transient, translate
from pgwarden.backup.storage._s3_reader import S3Reader
from pgwarden.errors import ConfigError

__all__ = ["MIN_PART_SIZE", "S3Storage", "part_size_for"]

T = TypeVar("T")
log = logging.getLogger("pgwarden.backup.storage")

# botocore logs each request's headers at DEBUG, the access key id among them; keep its
# loggers above DEBUG unless the application set their levels itself.
for _name in ("botocore", "boto3", "s3transfer"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.INFO)

MiB = 1024 * 1024
MIN_PART_SIZE = 8 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
PARTS_PER_DOUBLING = 1_000
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def part_size_for(number: int, base: int = MIN_PART_SIZE) -> int:
    """Return the size of part ``number`` (from 1) of an upload whose parts start at ``base``."""
    return min(MAX_PART_SIZE, base << ((number - 1) // PARTS_PER_DOUBLING))


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


class S3Storage(Storage):
    """Hold objects in ``bucket`` under ``prefix``, at AWS or at ``endpoint_url``.

    ``max_attempts`` is botocore's own budget of attempts per request, the first
    included ("standard" mode: backoff with jitter on throttling, 5xx and network
    errors); ``backoff`` adds
    pgwarden's retries around each part of an upload and each resumed read.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        part_size: int = MIN_PART_SIZE,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        backoff: Backoff | None = None,
    ) -> None:
        if not bucket:
            raise ConfigError("an S3 storage needs a bucket name.", hint="Use s3://bucket/prefix.")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ConfigError(
                f"the S3 part size must be between {MIN_PART_SIZE // MiB} MiB and "
                f"{MAX_PART_SIZE // MiB} MiB, not {part_size} bytes."
            )
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = check_prefix(f"{prefix}/" if prefix else "")
        self.endpoint_url = endpoint_url
        self.part_size = part_size
        self.backoff = backoff or Backoff()
        config = Config(
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # S3-compatible servers commonly lack the newer default CRC checksums;
            # integrity is Content-MD5 per request and the manifest's SHA-256.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            user_agent_extra="pgwarden",
        )
        try:
            self._session = boto3.session.Session(profile_name=profile, region_name=region)
            self._client: Any = self._session.client("s3", endpoint_url=endpoint_url, config=config)
        except ValueError:
            raise ConfigError(
                f"the S3 endpoint URL {endpoint_url!r} is not a URL.",
                hint="Give one such as https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000.",
            ) from None
        except BotoCoreError as exc:
            raise self._translate(exc, "connect to", self.url) from None

    @property
    def url(self) -> str:
        """Return ``s3://bucket/prefix/``."""
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def endpoint(self) -> str:
        """Return the URL of the S3 server in use."""
        return str(self._client.meta.endpoint_url)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _secrets(self) -> tuple[str, ...]:
        try:
            credentials = self._session.get_credentials()
            if credentials is None:
                return ()
            frozen = credentials.get_frozen_credentials()
        except Exception:  # any failure to look them up means there are none to hide
            return ()
        return tuple(s for s in (frozen.access_key, frozen.secret_key, frozen.token) if s)

    def _translate(self, exc: BaseException, action: str, where: str) -> Exception:
        return translate(
            exc,
            action=action,
            where=where,
            endpoint=self.endpoint if hasattr(self, "_client") else str(self.endpoint_url),
            secrets=self._secrets() if hasattr(self, "_session") else (),
        )

    def _call(
        self,
        action: str,
        key: str,
        operation: Callable[[], T],
        *,
        conflict: Exception | None = None,
    ) -> T:
        """Return ``operation()``, its botocore errors turned into pgwarden's.

        For a conditional request, ``conflict`` is raised when its precondition fails
        (or the object it names is gone).
        """
        try:
            return operation()
        except (BotoCoreError, ClientError) as exc:
            code = error_code(exc)
            if conflict is not None and (code in CONFLICT or code in _NOT_FOUND):
                raise conflict from None
            if code in _NOT_FOUND:
                raise self._not_found(key) from None
            raise self._translate(exc, action, f"s3://{self.bucket}/{self.prefix}{key}") from None

    def _not_found(self, key: str) -> Exception:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            if error_code(exc) in ("404", "NoSuchBucket"):
                return StorageUnusable(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint}.",
                    hint="Create the bucket, or fix its name in the storage URL.",
                )
        return ObjectNotFound(
            f"there is no object {key!r} in {self.url}.",
            hint="List what the storage holds with `pgwarden backup list`.",
        )

    # -- streaming writes --------------------------------------------------------------

    def write(self, key: str, data: Iterable[bytes] | BinaryIO) -> ObjectInfo:
        """Upload ``data`` to ``key``: one PUT if it fits in a part, else multipart."""
        full = self._key(key)
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            for chunk in chunks_of(data):
                buffer += chunk
                while len(buffer) >= (size := part_size_for(len(parts) + 1, self.part_size)):
                    if upload_id is None:
                        upload_id = self._call(
                            "start an upload to",
                            key,
                            lambda: self._client.create_multipart_upload(
                                Bucket=self.bucket, Key=full
                            )["UploadId"],
                        )
                    part = bytes(buffer[:size])
                    del buffer[:size]
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, part))
            if upload_id is None:
                body = bytes(buffer)
                self._call(
                    "upload",
                    key,
                    lambda: self._client.put_object(
                        Bucket=self.bucket, Key=full, Body=body, ContentMD5=_md5(body)
                    ),
                )
            else:
                if buffer:
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, bytes(buffer)))
                finished = upload_id
                self._call(
                    "complete the upload of",
                    key,
                    lambda: self._client.complete_multipart_upload(
                        Bucket=self.bucket,
                        Key=full,
                        UploadId=finished,
                        MultipartUpload={"Parts": parts},
                    ),
                )
        except BaseException:
            if upload_id is not None:
                self._abort(key, full, upload_id)
            raise
        return self.stat(key)

    def _upload_part(self, key: str, upload_id: str, number: int, part: bytes) -> dict[str, Any]:
        if number > MAX_PARTS:
            raise StorageError(
                f"cannot upload {self.url}{key}: it needs more than {MAX_PARTS} parts.",
                hint="Raise the part size of the S3 storage.",
            )
        digest = _md5(part)

        def send() -> Any:
            return self._client.upload_part(
                Bucket=self.bucket,
                Key=self.prefix + key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
                ContentMD5=digest,
            )

        response = self._call(
            f"upload part {number} of",
            key,
            lambda: retry(
                send,
                transient=is_transient,
                backoff=self.backoff,
                describe=f"upload of part {number} of {self.url}{key}",
            ),
        )
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _abort(self, key: str, full: str, upload_id: str) -> None:
        try:
            retry(
                lambda: self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id
                ),
                transient=is_transient,
                backoff=self.backoff,
                describe=f"abort of the upload of {self.url}{key}",
            )
        except (BotoCoreError, ClientError) as exc:
            log.warning(
                "could not abort the multipart upload of %s%s (%s); its parts stay until a "
                "lifecycle rule (AbortIncompleteMultipartUpload) removes them",
                self.url,
                key,
                error_code(exc) or type(exc).__name__,
            )

    # -- reads, listings, deletes -------------------------------------------------------

    def open(self, key: str) -> BinaryIO:
        """Open ``key`` for streaming reads that resume where they broke off."""
        info = self.stat(key)
        reader = S3Reader(self, key, info)
        return cast(BinaryIO, io.BufferedReader(reader, buffer_size=CHUNK_SIZE))

    def stat(self, key: str) -> ObjectInfo:
        """Describe ``key`` with a HEAD request."""
        full = self._key(key)
        head = self._call(
            "read", key, lambda: self._client.head_object(Bucket=self.bucket, Key=full)
        )
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            modified=head["LastModified"],
            etag=str(head["ETag"]).strip('"'),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield the objects under ``prefix``, fetched a page of 1,000 at a time."""
        check_prefix(prefix)
        pages = iter(
            self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
        )
        return self._list(prefix, pages)

    def _list(self, prefix: str, pages: Iterator[Any]) -> Iterator[ObjectInfo]:
        while True:
            page = self._call("list", prefix, lambda: next(pages, None))
            if page is None:
                return
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=str(item["Key"])[len(self.prefix) :],
                    size=int(item["Size"]),
                    modified=item["LastModified"],
                    etag=str(item["ETag"]).strip('"'),
                )

    def delete(self, key: str) -> None:
        """Delete ``key``; S3 deletes are idempotent."""
        full = self._key(key)
        self._call("delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=full))

    def check(self) -> None:
        """List one key, which proves the bucket exists and the credentials may list it."""
        self._call(
            "list",
            "",
            lambda: self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1),
        )

    # -- compare-and-swap for small control objects -------------------------------------

    def create(self, key: str, data: bytes) -> str:
        """PUT ``key`` with ``If-None-Match: *``; return its ETag."""
        full = self._key(key)
        response = self._call(
            "create",
            key,
            lambda: self._client.put_object(
                Bucket=self.bucket, Key=full, Body=data, ContentMD5=_md5(data), IfNoneMatch="*"
            ),
            conflict=ObjectExists(f"object {key!r} already exists in {self.url}."),
        )
        return str(response["ETag"])

    def read_versioned(self, key: str) -> tuple[bytes, str]:
        """GET ``key``; its version is its ETag."""
        full = self._key(key)

        def get() -> tuple[bytes, str]:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            with response["Body"] as body:
                return body.read(), str(response["ETag"])

        return self._call("read", key, get)

    def replace(self, key: str, data: bytes, *, version: str) -> str:
        """PUT ``key`` with ``If-Match: version``; return the new ETag."""
        full = self._key(key)
        response = self._call(
            "replace",
            key,
            lambda: self._client.put_object(
                Bucket=self.bucket, Key=full, Body=data, ContentMD5=_md5(data), IfMatch=version
            ),
            conflict=ObjectChanged(f"object {key!r} changed in {self.url}."),
        )
        return str(response["ETag"])

    def delete_version(self, key: str, *, version: str) -> None:
        """DELETE ``key`` with ``If-Match: version``."""
        full = self._key(key)
        try:
            self._call(
                "delete",
                key,
                lambda: self._client.delete_object(Bucket=self.bucket, Key=full, IfMatch=version),
                conflict=ObjectChanged(f"object {key!r} changed in {self.url}."),
            )
        except ObjectChanged:
            if self.exists(key):
                raise
