"""The REST API: list, read, write and search content; read users and comments.

Reads are open to anonymous callers, who see public content only; writes and users
need a signed-in user (401 otherwise). What a signed-in user sees and changes is
decided by row-level security in the database, keyed on their organisation
(:mod:`learnhub.api.deps`): another organisation's content is simply not there, so a
read of it is a 404 and so is an edit.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import Select, select, update
from sqlalchemy.orm import selectinload

from learnhub.api.deps import SessionDep, SignedIn
from learnhub.api.schemas import (
    AuthorOut,
    CommentOut,
    ContentDetail,
    ContentIn,
    ContentPatch,
    ContentSummary,
    ProfileOut,
    SearchHit,
    UserOut,
)
from learnhub.models import Comment, Content, User, Visibility, WorkflowState
from pgwarden.orm import search

router = APIRouter(prefix="/api")


def _author(user: User | None) -> AuthorOut | None:
    # Soft-deleted users are hidden from every query, lazy loads included.
    return AuthorOut(id=user.id, display_name=user.display_name) if user else None


def _summary(item: Content, author: User | None) -> ContentSummary:
    return ContentSummary(
        id=item.id,
        title=item.title,
        slug=item.slug,
        summary=item.summary,
        state=item.state.value,
        published_at=item.published_at,
        visibility=str(item.visibility),
        author=_author(author),
    )


def published_content(limit: int, offset: int) -> Select[tuple[Content]]:
    """Return the query of the content list: newest published first."""
    return (
        select(Content)
        .where(Content.state == WorkflowState.PUBLISHED)
        .order_by(Content.published_at.desc(), Content.id.desc())
        .limit(limit)
        .offset(offset)
    )


@router.get("/content")
async def list_content(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ContentSummary]:
    """List published content, newest first."""
    items = (await session.scalars(published_content(limit, offset))).all()  # parent query
    result = []
    for item in items:
        # DELIBERATE N+1: each item lazy-loads its author, one SELECT per row.
        # The fix is .options(selectinload(Content.author)) on the query above.
        author = await item.awaitable_attrs.author
        result.append(_summary(item, author))
    return result


@router.post("/content", status_code=201)
async def create_content(draft: ContentIn, session: SessionDep, user: SignedIn) -> ContentSummary:
    """Create a draft in the caller's organisation, written by the caller."""
    item = Content(
        org_id=user.org_id,
        author_id=user.user_id,
        title=draft.title,
        slug="-".join(draft.title.lower().split())[:280] + "-" + secrets.token_hex(4),
        summary=draft.summary,
        body=draft.body,
        visibility=Visibility(draft.visibility),
    )
    session.add(item)
    await session.flush()
    summary = _summary(item, await session.get(User, user.user_id))
    await session.commit()
    return summary


@router.patch("/content/{content_id}")
async def edit_content(
    content_id: int, edit: ContentPatch, session: SessionDep, user: SignedIn
) -> ContentSummary:
    """Change a piece of content of the caller's organisation; 404 for any other."""
    changes = edit.model_dump(exclude_none=True)
    if not changes:
        raise HTTPException(422, "nothing to change: give title, summary, body or visibility")
    # Row-level security lets the UPDATE reach only the caller's organisation's rows:
    # another's content, public or not, matches nothing here.
    stmt = (
        update(Content)
        .where(Content.id == content_id, Content.deleted_at.is_(None))
        .values(**changes)
        .returning(Content)
    )
    item = (await session.scalars(stmt)).first()
    if item is None:
        raise HTTPException(404, f"no content {content_id} that you may change")
    summary = _summary(item, await session.get(User, item.author_id))
    await session.commit()
    return summary


@router.get("/content/by-slug/{slug}")
async def content_by_slug(slug: str, session: SessionDep) -> ContentSummary:
    """Read one piece of content by its slug."""
    # DELIBERATE: content.slug has no index, so this frequent lookup scans the table.
    stmt = select(Content).where(Content.slug == slug).options(selectinload(Content.author))
    item = (await session.scalars(stmt)).first()
    if item is None:
        raise HTTPException(404, f"no content with slug {slug!r}")
    return _summary(item, item.author)


@router.get("/content/{content_id}")
async def read_content(content_id: int, session: SessionDep) -> ContentDetail:
    """Read one piece of content with its category, tags and comments."""
    stmt = (
        select(Content)
        .where(Content.id == content_id)
        .options(
            selectinload(Content.author),
            selectinload(Content.category),
            selectinload(Content.tags),
            selectinload(Content.comments).selectinload(Comment.author),
        )
    )
    item = (await session.scalars(stmt)).first()
    if item is None:
        raise HTTPException(404, f"no content {content_id}")
    summary = _summary(item, item.author)
    return ContentDetail(
        **summary.model_dump(),
        body=item.body,
        category=item.category.name if item.category else None,
        tags=sorted(tag.name for tag in item.tags),
        comments=[_comment(comment) for comment in item.comments],
    )


def _comment(comment: Comment) -> CommentOut:
    return CommentOut(
        id=comment.id,
        body=comment.body,
        created_at=comment.created_at,
        author=_author(comment.author),
    )


@router.get("/content/{content_id}/comments")
async def list_comments(
    content_id: int,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[CommentOut]:
    """List the comments on one piece of content, oldest first."""
    stmt = (
        select(Comment)
        .where(Comment.content_id == content_id)
        .order_by(Comment.id)
        .limit(limit)
        .options(selectinload(Comment.author))
    )
    return [_comment(comment) for comment in (await session.scalars(stmt)).all()]


@router.get("/users")
async def list_users(
    session: SessionDep,
    user: SignedIn,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[UserOut]:
    """List the users of the caller's organisation, oldest first."""
    stmt = (
        select(User).where(User.org_id == user.org_id).order_by(User.id).limit(limit).offset(offset)
    )
    return [
        UserOut(id=u.id, display_name=u.display_name, email=u.email, created_at=u.created_at)
        for u in (await session.scalars(stmt)).all()
    ]


@router.get("/users/{user_id}")
async def read_user(user_id: int, session: SessionDep, user: SignedIn) -> UserOut:
    """Read one user of the caller's organisation, with their profile."""
    stmt = (
        select(User)
        .where(User.id == user_id, User.org_id == user.org_id)
        .options(selectinload(User.profile))
    )
    found = (await session.scalars(stmt)).first()
    if found is None:
        raise HTTPException(404, f"no user {user_id}")
    profile = found.profile
    return UserOut(
        id=found.id,
        display_name=found.display_name,
        email=found.email,
        created_at=found.created_at,
        profile=ProfileOut(bio=profile.bio, interests=profile.interests, phone=profile.phone)
        if profile
        else None,
    )


@router.get("/search")
async def search_content(
    session: SessionDep,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[SearchHit]:
    """Search published content by words, best match first (titles weigh most)."""
    stmt = search(
        select(Content.id, Content.title).where(Content.state == WorkflowState.PUBLISHED),
        Content.search_vector,
        q,
    ).limit(limit)
    rows = (await session.execute(stmt)).all()
    return [SearchHit(id=row.id, title=row.title, rank=float(row.rank)) for row in rows]
