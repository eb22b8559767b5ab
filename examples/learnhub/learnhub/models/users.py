"""People: organisations, users, profiles, roles and permissions, sessions and tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from learnhub.db import keyring
from learnhub.models.base import Base
from pgwarden.orm import EncryptedString, IdPrimaryKey, SoftDelete, Timestamps

user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
)

role_permissions = Table(
    "role_permissions",
    Base.metadata,
    Column("role_id", ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True),
    Column("permission_id", ForeignKey("permissions.id", ondelete="CASCADE"), primary_key=True),
)


class Organization(IdPrimaryKey, Timestamps, Base):
    """A school or company; content belongs to one, and row-level security keys on it."""

    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100), unique=True)


class Permission(IdPrimaryKey, Base):
    """Something a role allows, such as ``content.publish``."""

    __tablename__ = "permissions"

    code: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")


class Role(IdPrimaryKey, Base):
    """A named set of permissions: learner, author, editor, admin."""

    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(50), unique=True)
    permissions: Mapped[list[Permission]] = relationship(secondary=role_permissions)


class User(IdPrimaryKey, Timestamps, SoftDelete, Base):
    """Someone who reads, writes or runs learnhub."""

    __tablename__ = "users"

    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    # Deferred: the API's role may not read it (migration 0002 grants the other columns).
    password_hash: Mapped[str] = mapped_column(String(200), deferred=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    email_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    organization: Mapped[Organization] = relationship()
    profile: Mapped[Profile | None] = relationship(back_populates="user", uselist=False)
    roles: Mapped[list[Role]] = relationship(secondary=user_roles)
    sessions: Mapped[list[UserSession]] = relationship(back_populates="user")


class Profile(Base):
    """What a user tells about themselves; the phone number is stored encrypted."""

    __tablename__ = "profiles"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    bio: Mapped[str] = mapped_column(Text, default="", server_default="")
    avatar_url: Mapped[str | None] = mapped_column(String(500))
    phone: Mapped[str | None] = mapped_column(EncryptedString(keyring=keyring))
    interests: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    preferences: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")

    user: Mapped[User] = relationship(back_populates="profile")


class UserSession(IdPrimaryKey, Base):
    """A signed-in browser or device."""

    __tablename__ = "user_sessions"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    ip_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(back_populates="sessions")


class _Token:
    """Columns shared by the one-time tokens sent by e-mail."""

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EmailVerificationToken(IdPrimaryKey, _Token, Base):
    """A link sent to confirm an e-mail address."""

    __tablename__ = "email_verification_tokens"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )


class PasswordResetToken(IdPrimaryKey, _Token, Base):
    """A link sent to choose a new password."""

    __tablename__ = "password_reset_tokens"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
