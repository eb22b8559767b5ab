"""pgwarden keeps the PostgreSQL database behind a SQLAlchemy application fast,
observable and recoverable."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from pgwarden.errors import (
    BinaryNotFound,
    ConfigError,
    ConnectionFailed,
    NotEnabled,
    PgwardenError,
    ServerError,
    ServerUnusable,
    UserError,
)

try:
    __version__ = version("pgwarden")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "BinaryNotFound",
    "ConfigError",
    "ConnectionFailed",
    "NotEnabled",
    "PgwardenError",
    "ServerError",
    "ServerUnusable",
    "UserError",
    "__version__",
]
