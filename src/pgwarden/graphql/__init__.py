"""Strawberry DataLoaders made from SQLAlchemy relationships, one statement per level.

- :class:`Loaders`, :func:`get_loader`: a request's loaders, made on demand from
  relationships (many-to-one, one-to-many, many-to-many through a ``secondary`` table,
  and both halves of an association object), with per-parent ordering and limits;
- :func:`load_related`: the synchronous core, for any list of parents;
- :func:`relationship_plan`: how a relationship is batched, or why it cannot be.

Loads go through the request's session: its soft-delete filter, its row-level
security settings and its identity map apply. Needs the ``graphql`` extra
(``pip install 'pgwarden[graphql]'``). See docs/graphql.md.
"""

from __future__ import annotations

from pgwarden.graphql.batches import RelationshipPlan, load_related, relationship_plan
from pgwarden.graphql.errors import LoadersMissing, UnsupportedRelationship
from pgwarden.graphql.loaders import Loaders, get_loader

__all__ = [
    "Loaders",
    "LoadersMissing",
    "RelationshipPlan",
    "UnsupportedRelationship",
    "get_loader",
    "load_related",
    "relationship_plan",
]
