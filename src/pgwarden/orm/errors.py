"""Errors of the ORM patterns' pagination, all within pgwarden's one tree."""

from __future__ import annotations

from pgwarden.errors import UserError

__all__ = ["InvalidCursor", "UnpageableQuery"]


class InvalidCursor(UserError):
    """Raise when a page cursor was changed, signed with another secret, or made for
    another listing."""


class UnpageableQuery(UserError):
    """Raise when a query cannot be paged as asked: no ORDER BY, a LIMIT of its own, an
    ordering value a cursor cannot hold."""
