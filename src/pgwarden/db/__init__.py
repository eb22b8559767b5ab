"""Engines, URLs, the embedded server and the PostgreSQL programs pgwarden runs."""

from __future__ import annotations

from pgwarden.db.binaries import Binary, find_binary
from pgwarden.db.embedded import EmbeddedServer, ServerStatus, default_data_dir
from pgwarden.db.engines import connect, create_async_engine, create_engine
from pgwarden.db.ping import Extension, PingResult, ping
from pgwarden.urls import parse_database_url, redact_text, redact_url

__all__ = [
    "Binary",
    "EmbeddedServer",
    "Extension",
    "PingResult",
    "ServerStatus",
    "connect",
    "create_async_engine",
    "create_engine",
    "default_data_dir",
    "find_binary",
    "parse_database_url",
    "ping",
    "redact_text",
    "redact_url",
]
