"""What the REST API returns."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class AuthorOut(BaseModel):
    id: int
    display_name: str


class ContentSummary(BaseModel):
    id: int
    title: str
    slug: str
    summary: str
    state: str
    published_at: datetime | None
    author: AuthorOut | None  # None when the author's account was deleted


class CommentOut(BaseModel):
    id: int
    body: str
    created_at: datetime
    author: AuthorOut | None  # None when the author's account was deleted


class ContentDetail(ContentSummary):
    body: str
    category: str | None
    tags: list[str]
    comments: list[CommentOut]


class ProfileOut(BaseModel):
    bio: str
    interests: list[str]
    phone: str | None


class UserOut(BaseModel):
    id: int
    display_name: str
    email: str
    created_at: datetime
    profile: ProfileOut | None = None


class SearchHit(BaseModel):
    id: int
    title: str
    rank: float
