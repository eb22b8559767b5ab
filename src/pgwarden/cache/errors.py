"""Errors of the query cache, all within pgwarden's one tree."""

from __future__ import annotations

from pgwarden.errors import PgwardenError, UserError

__all__ = ["CacheError", "NotCacheable", "UnserializableValue"]


class CacheError(PgwardenError):
    """Raise when the cache cannot do what was asked for a reason other than the input."""


class NotCacheable(UserError):
    """Raise when a statement marked for the cache is not a plain read (a SELECT)."""


class UnserializableValue(UserError):
    """Raise when a result holds a value the cache cannot store and give back unchanged."""
