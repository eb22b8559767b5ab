"""The GraphQL API (strawberry): content with its author, comments and tags, users,
search.

Related objects come through pgwarden's DataLoaders (:mod:`pgwarden.graphql`): a list of
any length costs one statement per level of the query. ``commentsOneByOne`` is kept as
the deliberate N+1 that pgwarden's N+1 detection and the demo find.

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
from learnhub.models import Comment, Content, Tag, User, WorkflowState
from pgwarden.graphql import Loaders, get_loader
from pgwarden.orm import search as ranked_search

# The most a list field returns, and what the loaders' tests page through.
MAX_PAGE = 200


@dataclass
class Context(BaseContext):
    """Per-request state: one session scoped to the caller (``principal``, ``None`` when
    anonymous), a lock because an AsyncSession runs one statement at a time while
    strawberry resolves sibling fields concurrently, and the request's loaders."""

    session: AsyncSession
    principal: Principal | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.session, lock=self.lock)


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

    @classmethod
    def of(cls, comment: Comment) -> CommentType:
        return cls(id=comment.id, body=comment.body, created_at=comment.created_at, model=comment)

    @strawberry.field
    async def author(self, info: Info[Context, None]) -> UserType | None:
        return UserType.of(await get_loader(info, Comment.author).load(self.model))


@strawberry.type
class TagType:
    id: int
    name: str


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
    async def comments(
        self, info: Info[Context, None], limit: int | None = None
    ) -> list[CommentType]:
        """The comments, oldest first; ``limit`` keeps the first few of each content."""
        if limit is not None:
            limit = max(0, min(limit, MAX_PAGE))
        comments = await get_loader(info, Content.comments, limit=limit).load(self.model)
        return [CommentType.of(c) for c in comments]

    @strawberry.field
    async def comments_one_by_one(self, info: Info[Context, None]) -> list[CommentType]:
        # DELIBERATE N+1: every content in a list lazy-loads its comments with one SELECT
        # each, for pgwarden's N+1 detection to find. ``comments`` is the fixed field.
        async with info.context.lock:
            comments = await self.model.awaitable_attrs.comments
        return [CommentType.of(c) for c in comments]

    @strawberry.field
    async def tags(self, info: Info[Context, None]) -> list[TagType]:
        tags: list[Tag] = await get_loader(info, Content.tags, order_by=[Tag.name]).load(self.model)
        return [TagType(id=tag.id, name=tag.name) for tag in tags]


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
        .limit(max(1, min(limit, MAX_PAGE)))
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
