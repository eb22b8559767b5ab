"""Models and a worker process for the query cache tests."""

from __future__ import annotations

import enum
from multiprocessing.connection import Connection as Pipe
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)


class Base(DeclarativeBase):
    pass


class Mood(enum.Enum):
    calm = "calm"
    busy = "busy"


tagging = sa.Table(
    "tagging",
    Base.metadata,
    sa.Column("course_id", sa.ForeignKey("course.id"), primary_key=True),
    sa.Column("label_id", sa.ForeignKey("label.id"), primary_key=True),
)


class Course(Base):
    __tablename__ = "course"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    mood: Mapped[Mood] = mapped_column(default=Mood.calm)
    lessons: Mapped[list[Lesson]] = relationship(back_populates="course", order_by="Lesson.id")
    labels: Mapped[list[Label]] = relationship(secondary=tagging, order_by="Label.id")


class Lesson(Base):
    __tablename__ = "lesson"
    id: Mapped[int] = mapped_column(primary_key=True)
    course_id: Mapped[int] = mapped_column(sa.ForeignKey("course.id"))
    title: Mapped[str]
    course: Mapped[Course] = relationship(back_populates="lessons")


class Label(Base):
    __tablename__ = "label"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Counter(Base):
    __tablename__ = "counter"
    key: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int]


def read_counter(sessions: Any, key: int) -> int | None:
    """Return a counter's value, read through the cache (an ORM query)."""
    from pgwarden.cache import cached

    with sessions() as session:
        row = session.scalars(
            sa.select(Counter).where(Counter.key == key).options(cached(ttl=60))
        ).one_or_none()
        return None if row is None else row.value


def write_counter(engine: sa.Engine, key: int, value: int, how: str) -> None:
    """Set a counter, by an ORM flush, Core DML or SQL text, and commit."""
    if how == "orm":
        with Session(engine) as session:
            session.merge(Counter(key=key, value=value))
            session.commit()
    elif how == "core":
        with engine.begin() as conn:
            conn.execute(sa.update(Counter).where(Counter.key == key).values(value=value))
    else:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE counter SET value = :value WHERE key = :key"),
                {"key": key, "value": value},
            )


def worker(url: str, redis_url: str, namespace: str, pipe: Pipe) -> None:
    """Serve reads and writes asked through ``pipe`` until told to stop (another process)."""
    from pgwarden.cache import QueryCache

    engine = sa.create_engine(url, pool_size=1)
    cache = QueryCache(redis_url, namespace=namespace)
    cache.instrument(engine)
    sessions = sessionmaker(engine)
    cache.attach(sessions)
    pipe.send("ready")
    while True:
        command, *args = pipe.recv()
        if command == "stop":
            break
        if command == "read":
            pipe.send(read_counter(sessions, *args))
        elif command == "write":
            write_counter(engine, *args)
            pipe.send("committed")
        elif command == "stats":
            pipe.send(cache.stats())
    engine.dispose()
