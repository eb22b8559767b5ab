"""Give each GraphQL request DataLoaders for SQLAlchemy relationships, made on demand.

Put one :class:`Loaders` on the request's context and ask it for a relationship's
loader in a resolver::

    @strawberry.field
    async def comments(self, info: Info[Context, None]) -> list[CommentType]:
        comments = await get_loader(info, Content.comments).load(self.model)
        return [CommentType.of(c) for c in comments]

Every ``load`` of one loader made while strawberry resolves a level of the query is
answered by one statement (:func:`~pgwarden.graphql.batches.load_related`), whatever
the number of parents. A loader lives as long as its :class:`Loaders`, that is one
request: it caches what it loaded, and never sees another request's session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any

from sqlalchemy import ColumnElement, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, Session

from pgwarden._extras import importing_extra
from pgwarden.graphql.batches import load_related, relationship_plan
from pgwarden.graphql.errors import LoadersMissing

with importing_extra(
    "graphql", "GraphQL loaders need {package}", {"strawberry": "strawberry-graphql"}
):
    from strawberry.dataloader import DataLoader

__all__ = ["Loaders", "get_loader"]


def _cache_key(parent: object) -> Hashable:
    # The identity key outlives a garbage-collected object whose id() could be reused.
    state = inspect(parent)
    return state.identity_key if state.identity_key is not None else ("pending", id(parent))


class Loaders:
    """Hold the DataLoaders of one request, all loading through ``session``.

    ``session`` is a :class:`~sqlalchemy.orm.Session` or an
    :class:`~sqlalchemy.ext.asyncio.AsyncSession` (loaded through ``run_sync``). An
    ``AsyncSession`` runs one statement at a time: when other resolvers share it, pass
    the ``lock`` they hold around their own statements.
    """

    def __init__(self, session: Session | AsyncSession, *, lock: asyncio.Lock | None = None):
        self.session = session
        self.lock = lock
        self._loaders: dict[Hashable, DataLoader[Any, Any]] = {}

    def get(
        self,
        attribute: InstrumentedAttribute[Any],
        *,
        order_by: Sequence[ColumnElement[Any]] | None = None,
        limit: int | None = None,
    ) -> DataLoader[Any, Any]:
        """Return the loader of ``attribute`` (keyed by parent object) for this request.

        ``order_by`` and ``limit`` apply per parent (see
        :func:`~pgwarden.graphql.batches.load_related`); each combination has its own
        loader. A relationship that cannot be batched raises
        :class:`~pgwarden.graphql.UnsupportedRelationship` here, naming it.
        """
        plan = relationship_plan(attribute)
        ordering = None if order_by is None else tuple(order_by)
        # Order clauses are new objects on every call: key them by their SQL and values.
        key = (
            plan.relationship,
            None if ordering is None else tuple(map(_ordering_key, ordering)),
            limit,
        )
        loader = self._loaders.get(key)
        if loader is None:
            loader = DataLoader(self._batch(attribute, ordering, limit), cache_key_fn=_cache_key)
            self._loaders[key] = loader
        return loader

    def _batch(
        self,
        attribute: InstrumentedAttribute[Any],
        order_by: Sequence[ColumnElement[Any]] | None,
        limit: int | None,
    ) -> Any:
        async def batch(parents: list[Any]) -> list[Any]:
            guard: AbstractAsyncContextManager[Any] = self.lock or nullcontext()
            async with guard:
                if isinstance(self.session, AsyncSession):
                    return await self.session.run_sync(
                        load_related, attribute, parents, order_by=order_by, limit=limit
                    )
                return load_related(
                    self.session, attribute, parents, order_by=order_by, limit=limit
                )

        return batch


def get_loader(
    info: Any,
    attribute: InstrumentedAttribute[Any],
    *,
    order_by: Sequence[ColumnElement[Any]] | None = None,
    limit: int | None = None,
) -> DataLoader[Any, Any]:
    """Return the request's loader of ``attribute`` from ``info.context``.

    The context holds a :class:`Loaders` as its ``loaders`` attribute (a dataclass or
    strawberry's ``BaseContext``) or its ``"loaders"`` key (a dict).
    """
    context = info.context
    loaders = (
        context.get("loaders") if isinstance(context, dict) else getattr(context, "loaders", None)
    )
    if not isinstance(loaders, Loaders):
        raise LoadersMissing(
            f"the GraphQL context holds no Loaders, so there is nothing to load {attribute} with.",
            hint="Make the context getter put Loaders(session) on the context as "
            "'loaders', one per request.",
        )
    return loaders.get(attribute, order_by=order_by, limit=limit)


def _ordering_key(clause: ColumnElement[Any]) -> str:
    """Return ``clause``'s SQL with its bound values: ``coalesce(x, 0)`` is not ``(x, 1)``."""
    compiled = clause.compile()
    return f"{compiled} {sorted(compiled.params.items())!r}"
