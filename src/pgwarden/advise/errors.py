"""Errors of index advice.

Both are signals within the advice: :func:`~pgwarden.advise.indexes.advise_indexes`
catches them and reports the query as skipped, with the reason. They reach a caller
only of the lower-level :func:`~pgwarden.advise.parsing.parse_query` and planners.
"""

from __future__ import annotations

__all__ = ["PlanFailed", "UnusableQuery"]


class UnusableQuery(Exception):
    """Raised by :func:`~pgwarden.advise.parsing.parse_query` for a statement no index serves."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PlanFailed(Exception):
    """Raised when the server cannot plan a statement or build a candidate."""
