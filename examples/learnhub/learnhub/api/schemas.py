"""What the REST API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Visibility = Literal["organization", "public"]


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
    visibility: str
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


class ContentIn(BaseModel):
    """A new draft; its organisation and author are the signed-in user's, never the body's."""

    title: str = Field(min_length=1, max_length=300)
    summary: str = Field(default="", max_length=2000)
    body: str = Field(default="", max_length=200_000)
    visibility: Visibility = "organization"


class ContentPatch(BaseModel):
    """The fields of a piece of content an edit may change; those left out stay."""

    title: str | None = Field(default=None, min_length=1, max_length=300)
    summary: str | None = Field(default=None, max_length=2000)
    body: str | None = Field(default=None, max_length=200_000)
    visibility: Visibility | None = None
