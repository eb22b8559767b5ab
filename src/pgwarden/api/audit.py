"""Record every changing call of the admin API, and list the record.

Each entry says which token called which route with which arguments, what came of it
(``ok``, ``refused``, ``failed``, or ``started`` for a job) and when. Entries live in the
``pgwarden.api_audit`` table of the database the API serves. Arguments are stored as
given to the route, with anything that looks like a secret in a URL redacted first.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.urls import redact_text

__all__ = ["AuditEntry", "audit_entries", "record_call"]

# Serialized by a transaction lock (one for the API's tables): two sessions creating them at once
# would otherwise collide on the catalog, IF NOT EXISTS notwithstanding.
_DDL = (
    "SELECT pg_advisory_xact_lock(hashtext('pgwarden.api'))",
    "CREATE SCHEMA IF NOT EXISTS pgwarden",
    """
CREATE TABLE IF NOT EXISTS pgwarden.api_audit (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  token_id bigint,
  method text NOT NULL,
  route text NOT NULL,
  arguments jsonb NOT NULL,
  outcome text NOT NULL,
  status integer NOT NULL,
  detail text
)
""",
)

_INSERT = text(
    """
INSERT INTO pgwarden.api_audit (token_id, method, route, arguments, outcome, status, detail)
VALUES (:token_id, :method, :route, CAST(:arguments AS jsonb), :outcome, :status, :detail)
"""
)

_LIST = text(
    """
SELECT id, at, token_id, method, route, arguments, outcome, status, detail
FROM pgwarden.api_audit
ORDER BY id DESC
LIMIT :limit
"""
)

_HAS_TABLE = text("SELECT to_regclass('pgwarden.api_audit') IS NOT NULL")


@dataclass(frozen=True)
class AuditEntry:
    """One changing call: who, what, with what, and what came of it."""

    id: int
    at: dt.datetime
    token_id: int | None
    method: str
    route: str
    arguments: dict[str, Any]
    outcome: str
    status: int
    detail: str | None


def record_call(
    conn: Connection,
    *,
    token_id: int | None,
    method: str,
    route: str,
    arguments: dict[str, Any],
    outcome: str,
    status: int,
    detail: str | None = None,
) -> None:
    """Append one entry to the audit record, in the caller's transaction."""
    if not conn.execute(_HAS_TABLE).scalar_one():
        for statement in _DDL:
            conn.execute(text(statement))
    shown = redact_text(json.dumps(_storable(arguments), sort_keys=True, default=str))
    conn.execute(
        _INSERT,
        {
            "token_id": token_id,
            "method": method,
            "route": route,
            "arguments": shown,
            "outcome": outcome,
            "status": status,
            "detail": None if detail is None else _storable(redact_text(detail))[:2000],
        },
    )


def _storable(value: Any) -> Any:
    """Return ``value`` with what jsonb cannot hold replaced: NUL and lone surrogates.

    Arguments are whatever a caller sent; the record keeps them readable, not exact.
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_storable(str(key)): _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    return value


def audit_entries(conn: Connection, *, limit: int = 100) -> list[AuditEntry]:
    """Return the latest ``limit`` entries of the audit record, newest first."""
    if not conn.execute(_HAS_TABLE).scalar_one():
        return []
    return [AuditEntry(**row._mapping) for row in conn.execute(_LIST, {"limit": limit})]
