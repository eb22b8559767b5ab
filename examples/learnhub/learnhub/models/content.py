"""Learning content: categories, tags, versions, attachments, comments, ratings, workflow."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, TSTZRANGE, Range
from sqlalchemy.orm import Mapped, mapped_column, relationship

from learnhub.models.base import Base
from learnhub.models.users import User
from pgwarden.orm import IdPrimaryKey, SoftDelete, Timestamps, tsvector_column

content_tags = Table(
    "content_tags",
    Base.metadata,
    Column("content_id", ForeignKey("content.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
)


def _stored_by_value(kinds: type[enum.StrEnum], name: str) -> Enum:
    """Return a PostgreSQL enum type ``name`` that stores ``kinds`` by their values."""
    return Enum(kinds, name=name, values_callable=lambda members: [m.value for m in members])


class WorkflowState(enum.StrEnum):
    """Where a piece of content is on its way to readers."""

    DRAFT = "draft"
    IN_REVIEW = "in_review"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class Visibility(enum.StrEnum):
    """Who may read a piece of content: its organisation, or anyone, signed in or not."""

    ORGANIZATION = "organization"
    PUBLIC = "public"


workflow_state = _stored_by_value(WorkflowState, "workflow_state")
content_visibility = _stored_by_value(Visibility, "content_visibility")


class Category(IdPrimaryKey, Base):
    """A node of the category tree (Programming > Python > Async)."""

    __tablename__ = "categories"

    name: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)

    parent: Mapped[Category | None] = relationship(
        remote_side="Category.id", back_populates="children"
    )
    children: Mapped[list[Category]] = relationship(back_populates="parent")


class Tag(IdPrimaryKey, Base):
    """A free label on content."""

    __tablename__ = "tags"

    name: Mapped[str] = mapped_column(String(60), unique=True)


class Content(IdPrimaryKey, Timestamps, SoftDelete, Base):
    """A lesson, article or course page."""

    __tablename__ = "content"

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    # Deliberately left without an index: the workload looks content up by slug often,
    # so the doctor and the index advisor have a real missing index to find.
    slug: Mapped[str] = mapped_column(String(300))
    summary: Mapped[str] = mapped_column(Text, default="", server_default="")
    body: Mapped[str] = mapped_column(Text, default="", server_default="")
    state: Mapped[WorkflowState] = mapped_column(
        workflow_state, default=WorkflowState.DRAFT, server_default=WorkflowState.DRAFT.value
    )
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the content may be shown: an enrolment window, say.
    available_during: Mapped[Range[datetime] | None] = mapped_column(TSTZRANGE)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    # Row-level security enforces it (migration 0002).
    visibility: Mapped[Visibility] = mapped_column(
        content_visibility,
        default=Visibility.ORGANIZATION,
        server_default=Visibility.ORGANIZATION.value,
    )
    search_vector: Mapped[Any] = tsvector_column(("title", "A"), ("summary", "B"), ("body", "C"))

    author: Mapped[User] = relationship()
    category: Mapped[Category | None] = relationship()
    tags: Mapped[list[Tag]] = relationship(secondary=content_tags)
    versions: Mapped[list[ContentVersion]] = relationship(
        back_populates="content", order_by="ContentVersion.version"
    )
    attachments: Mapped[list[Attachment]] = relationship(back_populates="content")
    comments: Mapped[list[Comment]] = relationship(back_populates="content", order_by="Comment.id")
    ratings: Mapped[list[Rating]] = relationship(back_populates="content")

    __table_args__ = (
        Index("ix_content_search_vector", "search_vector", postgresql_using="gin"),
        Index("ix_content_state_published_at", "state", "published_at"),
    )


class ContentVersion(IdPrimaryKey, Base):
    """A saved revision of a piece of content."""

    __tablename__ = "content_versions"

    content_id: Mapped[int] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    editor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    content: Mapped[Content] = relationship(back_populates="versions")

    __table_args__ = (UniqueConstraint("content_id", "version"),)


class Attachment(IdPrimaryKey, Base):
    """A file attached to content (the bytes live in object storage)."""

    __tablename__ = "attachments"

    content_id: Mapped[int] = mapped_column(
        ForeignKey("content.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    content: Mapped[Content] = relationship(back_populates="attachments")


class Comment(IdPrimaryKey, Timestamps, SoftDelete, Base):
    """A reader's comment, possibly a reply to another."""

    __tablename__ = "comments"

    content_id: Mapped[int] = mapped_column(
        ForeignKey("content.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id"), index=True)
    body: Mapped[str] = mapped_column(Text)

    content: Mapped[Content] = relationship(back_populates="comments")
    author: Mapped[User] = relationship()


class Rating(IdPrimaryKey, Base):
    """A reader's score of 1 to 5 for a piece of content."""

    __tablename__ = "ratings"

    content_id: Mapped[int] = mapped_column(ForeignKey("content.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    score: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    content: Mapped[Content] = relationship(back_populates="ratings")

    __table_args__ = (
        UniqueConstraint("content_id", "user_id"),
        CheckConstraint("score BETWEEN 1 AND 5", name="score_range"),
    )


class WorkflowTransition(IdPrimaryKey, Base):
    """A move of content from one workflow state to another, and who made it."""

    __tablename__ = "workflow_transitions"

    content_id: Mapped[int] = mapped_column(
        ForeignKey("content.id", ondelete="CASCADE"), index=True
    )
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    from_state: Mapped[WorkflowState | None] = mapped_column(workflow_state)
    to_state: Mapped[WorkflowState] = mapped_column(workflow_state)
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


__all__ = [
    "Attachment",
    "Category",
    "Comment",
    "Content",
    "ContentVersion",
    "Rating",
    "Tag",
    "Visibility",
    "WorkflowState",
    "WorkflowTransition",
    "content_tags",
]
