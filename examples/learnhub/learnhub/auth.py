"""Sessions: a bearer token names a signed-in user, and through them an organisation.

A token is 32 random bytes (URL-safe text) that only the client keeps; the database
keeps its SHA-256 (``user_sessions.token_hash``), so a leaked table signs no one in. A
request's ``Authorization: Bearer <token>`` is hashed, looked up, and compared again in
constant time; the session it finds gives the tenant that row-level security keys on
and the actor the audit log records. Nothing a client sends can choose either::

    token = await issue_session(session, user_id=42)      # at sign-in
    principal = await resolve_token(session, token)       # on each request
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from learnhub.models import User, UserSession

__all__ = [
    "SESSION_LIFETIME",
    "Principal",
    "hash_token",
    "issue_session",
    "parse_bearer",
    "resolve_token",
]

SESSION_LIFETIME = timedelta(days=30)
_TOKEN_BYTES = 32
# What issue_session makes: URL-safe base64 of 32 bytes is 43 characters. Anything else
# is refused before it costs a query.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_BEARER = re.compile(r"Bearer +(\S+) *", re.IGNORECASE)


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a user, and the organisation whose rows it may touch."""

    user_id: int
    org_id: int

    @property
    def actor(self) -> str:
        """Return the name the audit log records for this user's changes."""
        return f"user:{self.user_id}"


def hash_token(token: str) -> str:
    """Return the SHA-256 of ``token`` in hex, as ``user_sessions.token_hash`` holds it."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_bearer(header: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer`` header, ``None`` without a header.

    A header of another scheme or form raises ``ValueError``.
    """
    if header is None:
        return None
    match = _BEARER.fullmatch(header)
    if match is None:
        raise ValueError("the Authorization header is not 'Bearer <token>'")
    return match.group(1)


async def issue_session(
    session: AsyncSession,
    user_id: int,
    *,
    lifetime: timedelta = SESSION_LIFETIME,
    user_agent: str | None = None,
) -> str:
    """Start a session for ``user_id`` and return its token, which is stored only hashed.

    What a sign-in does once the password is checked; the caller commits.
    """
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    session.add(
        UserSession(
            user_id=user_id,
            token_hash=hash_token(token),
            user_agent=user_agent,
            expires_at=datetime.now(UTC) + lifetime,
        )
    )
    await session.flush()
    return token


async def resolve_token(session: AsyncSession, token: str) -> Principal | None:
    """Return who ``token`` signs in, or ``None`` if it is malformed, unknown or expired.

    The session must not have expired, and its user must be active and not deleted.
    """
    if not _TOKEN.fullmatch(token):
        return None
    digest = hash_token(token)
    stmt = (
        select(UserSession.token_hash, User.id, User.org_id)
        .join(User, User.id == UserSession.user_id)
        .where(
            UserSession.token_hash == digest,
            UserSession.expires_at > datetime.now(UTC),
            User.is_active,
            User.deleted_at.is_(None),
        )
    )
    row = (await session.execute(stmt)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return Principal(user_id=row.id, org_id=row.org_id)
