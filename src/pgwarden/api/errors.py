"""Errors of the admin API: tokens, scopes, rate limits and jobs.

The API turns each into its one JSON error shape with the status code named here; the
CLI (``pgwarden tokens``) into a message and an exit code, as for every other error.
"""

from __future__ import annotations

from pgwarden.errors import UserError

__all__ = [
    "JobNotFound",
    "MigrationRunning",
    "RateLimited",
    "ScopeMissing",
    "TokenNotFound",
    "TokenRequired",
]


class TokenRequired(UserError):
    """Raise when a request carries no token, or one that is unknown or revoked (401)."""

    status_code = 401


class ScopeMissing(UserError):
    """Raise when a request's token lacks the scope its route needs (403)."""

    status_code = 403


class RateLimited(UserError):
    """Raise when a token has made more changing calls than the limit allows (429)."""

    status_code = 429

    def __init__(self, message: str, *, retry_after_s: float, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class TokenNotFound(UserError):
    """Raise when a token id names no token of the catalogue (404)."""

    status_code = 404


class JobNotFound(UserError):
    """Raise when a job id names no job of this server process (404)."""

    status_code = 404


class MigrationRunning(UserError):
    """Raise when an upgrade is asked for while this server's last one still runs (409)."""

    status_code = 409
