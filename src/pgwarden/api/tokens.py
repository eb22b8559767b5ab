"""Create, list, revoke and check the admin API's bearer tokens.

A token is ``pgw_`` and 43 random URL-safe characters (256 bits). Only its SHA-256
digest is stored, in the ``pgwarden.api_token`` table of the database the API serves;
the secret is shown once, when it is created. A lookup hashes the presented secret and
compares digests with :func:`hmac.compare_digest`. Scopes are ranked: ``admin`` may do
what ``operate`` may, which may do what ``read`` may::

    with engine.begin() as conn:
        created = create_token(conn, scope="operate", name="on-call")
    print(created.secret)  # give it to the caller; it cannot be read again
    with engine.connect() as conn:
        token = find_token(conn, created.secret)
        assert token is not None and token.allows("read")
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.api.errors import TokenNotFound
from pgwarden.errors import UserError

__all__ = [
    "SCOPES",
    "ApiToken",
    "NewToken",
    "Scope",
    "create_token",
    "find_token",
    "list_tokens",
    "revoke_token",
    "token_digest",
]

Scope = Literal["read", "operate", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "operate", "admin")
"""The scopes, least first: each allows what the ones before it allow."""

_PREFIX = "pgw_"

# Serialized by a transaction lock (one for the API's tables): two sessions creating them at once
# would otherwise collide on the catalog, IF NOT EXISTS notwithstanding.
_DDL = (
    "SELECT pg_advisory_xact_lock(hashtext('pgwarden.api'))",
    "CREATE SCHEMA IF NOT EXISTS pgwarden",
    """
CREATE TABLE IF NOT EXISTS pgwarden.api_token (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL,
  scope text NOT NULL CHECK (scope IN ('read', 'operate', 'admin')),
  digest text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  revoked_at timestamptz
)
""",
)

_INSERT = text(
    """
INSERT INTO pgwarden.api_token (name, scope, digest)
VALUES (:name, :scope, :digest)
RETURNING id, name, scope, created_at, revoked_at
"""
)

_LIST = text(
    """
SELECT id, name, scope, created_at, revoked_at
FROM pgwarden.api_token
WHERE :revoked OR revoked_at IS NULL
ORDER BY id
"""
)

_BY_DIGEST = text(
    """
SELECT id, name, scope, created_at, revoked_at, digest
FROM pgwarden.api_token
WHERE digest = :digest
  AND revoked_at IS NULL
"""
)

_REVOKE = text(
    """
UPDATE pgwarden.api_token
SET revoked_at = COALESCE(revoked_at, clock_timestamp())
WHERE id = :id
RETURNING id, name, scope, created_at, revoked_at
"""
)

_HAS_TABLE = text("SELECT to_regclass('pgwarden.api_token') IS NOT NULL")


@dataclass(frozen=True)
class ApiToken:
    """A token as the catalogue holds it: never its secret."""

    id: int
    name: str
    scope: Scope
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    def allows(self, needed: Scope) -> bool:
        """Return whether this token may call a route that needs ``needed``."""
        return self.revoked_at is None and SCOPES.index(self.scope) >= SCOPES.index(needed)


@dataclass(frozen=True)
class NewToken:
    """A token just created, with its secret: the only time the secret is known."""

    token: ApiToken
    secret: str = ""

    def __repr__(self) -> str:  # never the secret, even in a traceback's locals
        return f"NewToken(token={self.token!r}, secret='***')"


def token_digest(secret: str) -> str:
    """Return the hex SHA-256 digest under which the token ``secret`` is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(conn: Connection, *, scope: str, name: str | None = None) -> NewToken:
    """Create a token with ``scope`` (read, operate or admin) and return it with its secret.

    Creates the catalogue table the first time. Runs in the caller's transaction.
    """
    if scope not in SCOPES:
        raise UserError(f"unknown scope {scope!r}.", hint=f"Use one of: {', '.join(SCOPES)}.")
    label = (name or f"{scope} token").strip()
    if not label or len(label) > 200:
        raise UserError("a token's name must be 1 to 200 characters.", hint="Pass --name.")
    for statement in _DDL:
        conn.execute(text(statement))
    secret = _PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(_INSERT, {"name": label, "scope": scope, "digest": token_digest(secret)})
    return NewToken(ApiToken(**row.one()._mapping), secret)


def list_tokens(conn: Connection, *, revoked: bool = False) -> list[ApiToken]:
    """Return the tokens (and the revoked ones too with ``revoked``), oldest first."""
    if not conn.execute(_HAS_TABLE).scalar_one():
        return []
    return [ApiToken(**row._mapping) for row in conn.execute(_LIST, {"revoked": revoked})]


def revoke_token(conn: Connection, token_id: int) -> ApiToken:
    """Revoke the token ``token_id``; revoking one already revoked changes nothing."""
    row = None
    if conn.execute(_HAS_TABLE).scalar_one():
        row = conn.execute(_REVOKE, {"id": token_id}).one_or_none()
    if row is None:
        raise TokenNotFound(
            f"there is no token {token_id}.", hint="`pgwarden tokens list` shows them."
        )
    return ApiToken(**row._mapping)


def find_token(conn: Connection, secret: str) -> ApiToken | None:
    """Return the live token whose secret is ``secret``, or None.

    The lookup is by digest; the digests are compared again in constant time, so the
    answer takes as long whether the token is close to a real one or not.
    """
    if not secret.startswith(_PREFIX) or len(secret) > 200:
        return None
    if not conn.execute(_HAS_TABLE).scalar_one():
        return None
    digest = token_digest(secret)
    row = conn.execute(_BY_DIGEST, {"digest": digest}).one_or_none()
    if row is None or not hmac.compare_digest(row.digest, digest):
        return None
    values = dict(row._mapping)
    values.pop("digest")
    return ApiToken(**values)
