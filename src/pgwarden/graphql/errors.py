"""Errors of the GraphQL loaders, all within pgwarden's one tree."""

from __future__ import annotations

from pgwarden.errors import UserError

__all__ = ["LoadersMissing", "UnsupportedRelationship"]


class UnsupportedRelationship(UserError):
    """Raise when a relationship cannot be loaded in batches: the message names it."""


class LoadersMissing(UserError):
    """Raise when a resolver asks for a loader and the request's context holds none."""
