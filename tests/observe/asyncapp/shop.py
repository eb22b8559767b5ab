"""A small async app in the style FastAPI projects use: shelves and their tags (a
many-to-many through a secondary table), async SQLAlchemy with ``AsyncAttrs``, one
endpoint. Each way of reading the tags has an N+1 unless asked to load them eagerly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncSession, async_sessionmaker
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
)

from pgwarden.observe import ObserveMiddleware


class Base(AsyncAttrs, DeclarativeBase):
    pass


shelf_tag = sa.Table(
    "shelf_tag",
    Base.metadata,
    sa.Column("shelf_id", sa.ForeignKey("shelf.id"), primary_key=True),
    sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
)


class Shelf(Base):
    __tablename__ = "shelf"
    id: Mapped[int] = mapped_column(primary_key=True)
    tags: Mapped[list[Tag]] = relationship(secondary=shelf_tag, order_by="Tag.id")


class Tag(Base):
    __tablename__ = "tag"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


# What every way of reading returns: each shelf's tag names.
SHELF_TAGS = [["a", "b"], ["b", "c"], ["a", "c"]]


def fill(engine: sa.Engine) -> None:
    """Create the tables and the three shelves."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        tags = {name: Tag(name=name) for name in "abc"}
        for names in SHELF_TAGS:
            session.add(Shelf(tags=[tags[name] for name in names]))
        session.commit()


def shelves_query(eager: bool) -> sa.Select[tuple[Shelf]]:
    query = sa.select(Shelf).order_by(Shelf.id)
    return query.options(selectinload(Shelf.tags)) if eager else query


async def shelf_tags(session: AsyncSession, eager: bool) -> list[list[str]]:
    """Return each shelf's tag names, reading the tags through ``awaitable_attrs``."""
    shelves = (await session.scalars(shelves_query(eager))).all()  # async parent query
    names = []
    for shelf in shelves:
        tags = await shelf.awaitable_attrs.tags  # async lazy load
        names.append([tag.name for tag in tags])
    return names


def shelf_tags_sync(session: Session, eager: bool) -> list[list[str]]:
    """Return each shelf's tag names with a sync session (``run_sync``, a thread)."""
    shelves = session.scalars(shelves_query(eager)).all()  # sync parent query
    return [[tag.name for tag in shelf.tags] for shelf in shelves]  # sync lazy load


def shelf_tags_in_thread(engine: sa.Engine, eager: bool) -> list[list[str]]:
    """Return each shelf's tag names from a session of its own on a sync engine."""
    with Session(engine) as session:
        return shelf_tags_sync(session, eager)


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


def create_app(sessions: async_sessionmaker[AsyncSession]) -> FastAPI:
    """Return the app: ``GET /shelves?eager=true`` reads the tags with the shelves."""
    app = FastAPI()
    app.state.sessions = sessions
    app.add_middleware(ObserveMiddleware)

    @app.get("/shelves")
    async def shelves(
        session: Annotated[AsyncSession, Depends(_session)], eager: bool = False
    ) -> list[list[str]]:
        return await shelf_tags(session, eager)

    return app
