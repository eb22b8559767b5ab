"""The GraphQL API (strawberry): content with its author and comments, users, search.

The caller is whoever the bearer token signs in (:mod:`learnhub.api.deps`): row-level
security shows them their organisation's content and public content; anonymous callers
see public content only, and ``users`` needs a signed-in caller.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import strawberry
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.types import Info

from learnhub.api.deps import MaybeUser, SessionDep
from learnhub.auth import Principal
from learnhub.models import Comment, Content, User, WorkflowState
from pgwarden.orm import search as ranked_search


@dataclass
class Context(BaseContext):
    """Per-request state: one session scoped to the caller (``principal``, ``None`` when
    anonymous), and a lock because an AsyncSession runs one statement at a time while
    strawberry resolves sibling fields concurrently."""

    session: AsyncSession
    principal: Principal | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@strawberry.type
class UserType:
    id: int
    display_name: str

    @classmethod
    def of(cls, user: User | None) -> UserType | None:
        # Soft-deleted users are hidden from every query, lazy loads included.
        return cls(id=user.id, display_name=user.display_name) if user else None


@strawberry.type
class CommentType:
    id: int
    body: str
    created_at: datetime
    model: strawberry.Private[Comment]

    @strawberry.field
    async def author(self, info: Info[Context, None]) -> UserType | None:
        async with info.context.lock:
            return UserType.of(await self.model.awaitable_attrs.author)


@strawberry.type
class ContentType:
    id: int
    title: str
    slug: str
    summary: str
    state: str
    published_at: datetime | None
    model: strawberry.Private[Content]

    @classmethod
    def of(cls, item: Content) -> ContentType:
        return cls(
            id=item.id,
            title=item.title,
            slug=item.slug,
            summary=item.summary,
            state=item.state.value,
            published_at=item.published_at,
            model=item,
        )

    @strawberry.field
    def author(self) -> UserType | None:
        return UserType.of(self.model.author)  # loaded with the list: see Query.contents

    @strawberry.field
    async def comments(self, info: Info[Context, None]) -> list[CommentType]:
        # DELIBERATE N+1: every content in a list lazy-loads its comments with one SELECT
        # each. A DataLoader, or selectinload(Content.comments) on the parent query, fixes it.
        async with info.context.lock:
            comments = await self.model.awaitable_attrs.comments
        return [
            CommentType(id=c.id, body=c.body, created_at=c.created_at, model=c) for c in comments
        ]


@strawberry.type
class SearchHitType:
    id: int
    title: str
    rank: float


def contents_query(limit: int, offset: int) -> Select[tuple[Content]]:
    """Return the query of the ``contents`` field: newest published first, with authors."""
    return (
        select(Content)
        .where(Content.state == WorkflowState.PUBLISHED)
        .order_by(Content.published_at.desc(), Content.id.desc())
        .limit(max(1, min(limit, 100)))
        .offset(max(0, offset))
        .options(selectinload(Content.author))
    )


@strawberry.type
class Query:
    @strawberry.field
    async def contents(
        self, info: Info[Context, None], limit: int = 10, offset: int = 0
    ) -> list[ContentType]:
        stmt = contents_query(limit, offset)
        async with info.context.lock:
            items = (await info.context.session.scalars(stmt)).all()
        return [ContentType.of(item) for item in items]

    @strawberry.field
    async def content(self, info: Info[Context, None], id: int) -> ContentType | None:
        stmt = select(Content).where(Content.id == id).options(selectinload(Content.author))
        async with info.context.lock:
            item = (await info.context.session.scalars(stmt)).first()
        return ContentType.of(item) if item else None

    @strawberry.field
    async def users(self, info: Info[Context, None], limit: int = 20) -> list[UserType]:
        principal = info.context.principal
        if principal is None:
            raise PermissionError("sign in to list users")
        stmt = (
            select(User)
            .where(User.org_id == principal.org_id)
            .order_by(User.id)
            .limit(max(1, min(limit, 100)))
        )
        async with info.context.lock:
            users = (await info.context.session.scalars(stmt)).all()
        return [UserType(id=user.id, display_name=user.display_name) for user in users]

    @strawberry.field
    async def search(
        self, info: Info[Context, None], q: str, limit: int = 10
    ) -> list[SearchHitType]:
        stmt = ranked_search(
            select(Content.id, Content.title).where(Content.state == WorkflowState.PUBLISHED),
            Content.search_vector,
            q,
        ).limit(max(1, min(limit, 50)))
        async with info.context.lock:
            rows = (await info.context.session.execute(stmt)).all()
        return [SearchHitType(id=r.id, title=r.title, rank=float(r.rank)) for r in rows]


schema = strawberry.Schema(query=Query)


def graphql_router() -> GraphQLRouter[Context, None]:
    """Return the router serving ``/graphql``, one session per request."""

    async def context_getter(session: SessionDep, principal: MaybeUser) -> Context:
        return Context(session=session, principal=principal)

    return GraphQLRouter(schema, context_getter=context_getter)
