"""What readers do: activity, page views (partitioned by month) and an event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from learnhub.models.base import Base
from pgwarden.orm import IdPrimaryKey


class UserActivity(IdPrimaryKey, Base):
    """A meaningful action of a user: signed in, finished a lesson, rated."""

    __tablename__ = "user_activity"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(50))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PageView(Base):
    """One page shown; partitioned by month on ``viewed_at``, so old months drop cheaply.

    The primary key must include the partition key, hence ``(id, viewed_at)``. Foreign
    keys are left out on purpose: analytics rows outlive what they point at.
    """

    __tablename__ = "page_views"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    viewed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), primary_key=True, server_default=func.now()
    )
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    content_id: Mapped[int | None] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(500))
    referrer: Mapped[str | None] = mapped_column(String(500))
    session_key: Mapped[Any] = mapped_column(UUID(as_uuid=True), nullable=True)

    __table_args__ = (
        Index("ix_page_views_content_id_viewed_at", "content_id", "viewed_at"),
        {"postgresql_partition_by": "RANGE (viewed_at)"},
    )


class Event(IdPrimaryKey, Base):
    """An entry of the application's event log."""

    __tablename__ = "events"

    name: Mapped[str] = mapped_column(String(100), index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    note: Mapped[str | None] = mapped_column(Text)
