"""Where backups live: a local directory or an S3 bucket, behind one interface.

:func:`open_storage` turns a URL into a :class:`Storage`::

    /var/backups/pgwarden                    a local directory
    file:///var/backups/pgwarden             the same
    s3://bucket/pgwarden/prod                an S3 bucket and a prefix
    s3://bucket/prod?endpoint_url=http://127.0.0.1:9000&region=eu-west-1&profile=backup
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pgwarden._extras import importing_extra
from pgwarden._units import parse_size
from pgwarden.backup.storage._base import (
    CHUNK_SIZE,
    ObjectInfo,
    Storage,
    check_key,
    check_prefix,
    iter_file,
)
from pgwarden.backup.storage.local import LocalStorage
from pgwarden.errors import ConfigError
from pgwarden.urls import redact_text

if TYPE_CHECKING:
    from pgwarden.backup.storage.s3 import S3Storage
    from pgwarden.config import Settings

__all__ = [
    "CHUNK_SIZE",
    "LocalStorage",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "check_key",
    "check_prefix",
    "iter_file",
    "open_storage",
]

_S3_OPTIONS = {"endpoint_url", "region", "profile", "part_size"}
_URL_HINT = (
    "Give a directory, file:///path, or s3://bucket/prefix (with ?endpoint_url=...&region=... "
    "for an S3-compatible server); credentials come from the AWS environment, profile or "
    "instance role, never from the URL."
)


def __getattr__(name: str) -> Any:
    if name == "S3Storage":  # imported on use, so local storage works without boto3
        return _s3_class()
    raise AttributeError(name)


def _s3_class() -> type[S3Storage]:
    boto = {"boto3": "boto3", "botocore": "boto3"}
    with importing_extra("s3", "S3 storage needs {package}", boto):
        from pgwarden.backup.storage.s3 import S3Storage
    return S3Storage


def open_storage(
    target: str | os.PathLike[str] | Settings,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    part_size: int | None = None,
) -> Storage:
    """Return the storage that ``target`` names: a path, a ``file://`` or ``s3://`` URL.

    ``target`` may also be :class:`~pgwarden.config.Settings`, whose ``backup_storage``,
    ``s3_endpoint_url`` and ``s3_region`` are used. Keyword arguments win over the
    URL's query (``?endpoint_url=...&region=...&profile=...&part_size=...``), which wins
    over the settings; what none of them gives comes from boto3's own configuration
    (``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, ``AWS_PROFILE``, ``~/.aws/config``).
    """
    defaults: dict[str, Any] = {}
    if isinstance(target, str | os.PathLike):
        text = os.fspath(target)
    else:
        setting = getattr(target, "backup_storage", None)
        if not setting:
            raise ConfigError(
                "PGWARDEN_BACKUP_STORAGE is not set; there is nowhere to keep backups.",
                hint=_URL_HINT,
            )
        text = str(setting)
        defaults = {
            "endpoint_url": getattr(target, "s3_endpoint_url", None),
            "region": getattr(target, "s3_region", None),
        }
    given: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "region": region,
        "profile": profile,
        "part_size": part_size,
    }
    if "://" not in text:
        if not text.strip():
            raise ConfigError("the backup storage is empty.", hint=_URL_HINT)
        return LocalStorage(text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or parts.query:
            raise ConfigError(
                f"the storage URL {redact_text(text)!r} names a host or a query; a file URL "
                "is file:///absolute/path.",
                hint=_URL_HINT,
            )
        return LocalStorage(unquote(parts.path))
    if scheme == "s3":
        return _open_s3(text, parts.netloc, parts.path, parts.query, defaults, given)
    raise ConfigError(
        f"the storage URL {redact_text(text)!r} has the scheme {scheme!r}; pgwarden stores "
        "backups in a directory or in S3.",
        hint=_URL_HINT,
    )


def _open_s3(
    text: str,
    netloc: str,
    path: str,
    query: str,
    defaults: dict[str, Any],
    given: dict[str, Any],
) -> Storage:
    shown = redact_text(text).partition("?")[0]
    if "@" in netloc:
        raise ConfigError(
            f"the storage URL of bucket {netloc.rpartition('@')[2]!r} holds credentials "
            "before '@'; pgwarden does not read them from a URL.",
            hint=_URL_HINT,
        )
    if not netloc:
        raise ConfigError(f"the storage URL {shown!r} names no bucket.", hint=_URL_HINT)
    options: dict[str, Any] = {k: v for k, v in defaults.items() if v}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _S3_OPTIONS:
            raise ConfigError(
                f"the storage URL {shown!r} has the unknown option {name!r}.",
                hint=f"Known options: {', '.join(sorted(_S3_OPTIONS))}.",
            )
        options[name] = value
    options.update({k: v for k, v in given.items() if v is not None})
    if "part_size" in options:
        options["part_size"] = _size(str(options["part_size"]))
    return _s3_class()(netloc, unquote(path), **options)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError:
        raise ConfigError(f"the S3 part size {text!r} is not a size such as 8MiB or 16M.") from None
