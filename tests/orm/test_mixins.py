from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
)

from pgwarden.db.engines import create_async_engine
from pgwarden.errors import UserError
from pgwarden.orm import (
    IdPrimaryKey,
    SoftDelete,
    Timestamps,
    enable_soft_delete_filter,
    include_deleted,
    install_updated_at_triggers,
    updated_at_trigger_sql,
)


class Base(DeclarativeBase):
    pass


class AppSession(Session):
    """The application's sessions: only these hide soft-deleted rows."""


enable_soft_delete_filter(AppSession)


class Author(IdPrimaryKey, Base):
    __tablename__ = "author"
    name: Mapped[str]
    posts: Mapped[list[Post]] = relationship(back_populates="author", order_by="Post.id")


class Post(IdPrimaryKey, Timestamps, SoftDelete, Base):
    __tablename__ = "post"
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": True}
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("author.id"))
    title: Mapped[str]
    author: Mapped[Author] = relationship(back_populates="posts")


class Tag(IdPrimaryKey, Timestamps, Base):
    __tablename__ = "tag"
    label: Mapped[str]


install_updated_at_triggers(Base.metadata)
install_updated_at_triggers(Base.metadata)  # a second call changes nothing


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    Base.metadata.create_all(pg_engine)
    return pg_engine


@pytest.fixture
def blog(engine: Engine) -> Iterator[int]:
    """Yield the id of an author with posts one, two and three; two is soft-deleted."""
    with AppSession(engine) as session, session.begin():
        author = Author(name="ada", posts=[Post(title=t) for t in ("one", "two", "three")])
        session.add(author)
        session.flush()
        author.posts[1].soft_delete()
        return author.id


def titles(posts: list[Post]) -> list[str]:
    return [post.title for post in posts]


def test_id_is_a_bigint_identity(engine: Engine) -> None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT data_type, is_identity FROM information_schema.columns"
                " WHERE table_name = 'author' AND column_name = 'id'"
            )
        ).one()
    assert tuple(row) == ("bigint", "YES")


def test_timestamps_are_set_by_the_server_on_insert(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        tag = Tag(label="sql")
        session.add(tag)
        session.flush()
        assert isinstance(tag.created_at, datetime) and tag.created_at.tzinfo is not None
        assert tag.updated_at == tag.created_at


def test_updated_at_moves_on_an_orm_update(engine: Engine) -> None:
    with Session(engine, expire_on_commit=False) as session:
        tag = Tag(label="sql")
        session.add(tag)
        session.commit()
        created, first = tag.created_at, tag.updated_at
        tag.label = "postgres"
        session.commit()
        assert tag.updated_at > first
        assert tag.created_at == created


def test_updated_at_moves_on_a_raw_update_even_within_one_transaction(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(Tag(label="sql"))
    stamp = sa.text("SELECT updated_at FROM tag")
    with engine.begin() as conn:
        before = conn.execute(stamp).scalar_one()
        conn.execute(sa.text("UPDATE tag SET label = 'a'"))
        first = conn.execute(stamp).scalar_one()
        conn.execute(sa.text("UPDATE tag SET label = 'b'"))
        second = conn.execute(stamp).scalar_one()
    assert before < first < second


def test_eager_defaults_bring_updated_at_back_without_a_second_query(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        post = Post(author=Author(name="ada"), title="one")
        session.add(post)
        session.flush()
        first = post.updated_at
        post.title = "uno"
        session.flush()
        assert "updated_at" in post.__dict__  # fetched by RETURNING, not expired
        assert post.updated_at > first


def test_the_trigger_is_created_on_every_table_with_updated_at(engine: Engine) -> None:
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT tgrelid::regclass::text FROM pg_trigger"
                " WHERE tgname = 'pgwarden_updated_at' ORDER BY 1"
            )
        ).scalars()
        assert list(tables) == ["post", "tag"]


def test_trigger_sql_runs_as_a_migration_would_and_runs_again(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        conn.execute(sa.text('CREATE SCHEMA "Sales Data"'))
        conn.execute(
            sa.text(
                'CREATE TABLE "Sales Data"."order""s" (id int PRIMARY KEY, note text,'
                " updated_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        conn.execute(sa.text('INSERT INTO "Sales Data"."order""s" VALUES (1, \'x\')'))
        for _ in range(2):
            for statement in updated_at_trigger_sql('order"s', schema="Sales Data"):
                conn.execute(sa.text(statement))
    with pg_engine.begin() as conn:
        before = conn.execute(sa.text('SELECT updated_at FROM "Sales Data"."order""s"')).scalar()
        conn.execute(sa.text('UPDATE "Sales Data"."order""s" SET note = \'y\''))
        after = conn.execute(sa.text('SELECT updated_at FROM "Sales Data"."order""s"')).scalar()
    assert after > before


def test_soft_deleted_rows_are_hidden_from_queries_and_get(engine: Engine, blog: int) -> None:
    with AppSession(engine) as session:
        assert titles(list(session.scalars(sa.select(Post).order_by(Post.id)))) == [
            "one",
            "three",
        ]
        deleted_id = session.scalars(
            include_deleted(sa.select(Post.id).where(Post.title == "two"))
        ).one()
        assert session.get(Post, deleted_id) is None
        joined = sa.select(sa.func.count()).select_from(Author).join(Author.posts)
        assert session.scalar(joined) == 2


def test_soft_deleted_rows_are_hidden_from_relationship_loads(engine: Engine, blog: int) -> None:
    with AppSession(engine) as session:
        author = session.get(Author, blog)
        assert author is not None
        assert titles(author.posts) == ["one", "three"]  # lazy load
    with AppSession(engine) as session:
        eager = session.scalars(sa.select(Author).options(selectinload(Author.posts))).one()
        assert titles(eager.posts) == ["one", "three"]


def test_include_deleted_shows_them_and_restore_brings_them_back(engine: Engine, blog: int) -> None:
    with AppSession(engine) as session, session.begin():
        everything = list(session.scalars(include_deleted(sa.select(Post).order_by(Post.id))))
        assert titles(everything) == ["one", "two", "three"]
        deleted = everything[1]
        assert deleted.is_deleted and not everything[0].is_deleted
        deleted.restore()
    with AppSession(engine) as session:
        assert titles(list(session.scalars(sa.select(Post).order_by(Post.id)))) == [
            "one",
            "two",
            "three",
        ]


def test_execution_options_of_the_call_or_the_session_show_deleted_rows(
    engine: Engine, blog: int
) -> None:
    everything = sa.select(Post).order_by(Post.id)
    with AppSession(engine) as session:
        found = session.scalars(everything, execution_options={"include_deleted": True})
        assert len(list(found)) == 3
    with AppSession(engine, execution_options={"include_deleted": True}) as session:
        assert len(list(session.scalars(everything))) == 3


def test_sessions_not_enabled_are_left_alone(engine: Engine, blog: int) -> None:
    with Session(engine) as session:
        assert len(list(session.scalars(sa.select(Post)))) == 3


def test_an_object_soft_deleted_in_the_session_can_still_be_refreshed(
    engine: Engine, blog: int
) -> None:
    with AppSession(engine) as session:
        post = session.scalars(sa.select(Post).where(Post.title == "one")).one()
        post.soft_delete()
        session.commit()  # expires post; reading it reloads by primary key
        assert post.is_deleted
        assert post.title == "one"
        assert titles(list(session.scalars(sa.select(Post)))) == ["three"]


def test_async_sessions_hide_soft_deleted_rows(pg_url: str, engine: Engine, blog: int) -> None:
    class AsyncAppSession(Session):
        pass

    async def run() -> tuple[list[str], list[str], int]:
        aengine = create_async_engine(pg_url)
        try:
            maker = async_sessionmaker(
                aengine, sync_session_class=AsyncAppSession, expire_on_commit=False
            )
            enable_soft_delete_filter(maker)
            async with maker() as session:
                posts = list(await session.scalars(sa.select(Post).order_by(Post.id)))
                author = await session.scalar(sa.select(Author).options(selectinload(Author.posts)))
                assert author is not None
                hidden = await session.scalar(
                    include_deleted(sa.select(sa.func.count()).select_from(Post))
                )
                return titles(posts), titles(author.posts), hidden or 0
        finally:
            await aengine.dispose()

    assert asyncio.run(run()) == (["one", "three"], ["one", "three"], 3)


def test_an_async_sessionmaker_on_the_plain_session_class_is_refused() -> None:
    with pytest.raises(UserError, match="plain Session class") as info:
        enable_soft_delete_filter(async_sessionmaker(class_=AsyncSession))
    assert info.value.hint is not None and "sync_session_class" in info.value.hint
