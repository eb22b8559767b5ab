"""A many-to-one level loads in one statement when its targets sit expired in the session."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from pgwarden.graphql.batches import load_related


class Base(DeclarativeBase):
    pass


class Writer(Base):
    __tablename__ = "loaded_writers"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Note(Base):
    __tablename__ = "loaded_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    writer_id: Mapped[int] = mapped_column(sa.ForeignKey("loaded_writers.id"))
    writer: Mapped[Writer] = relationship()


@pytest.fixture
def session(pg_engine: Engine) -> Any:
    Base.metadata.drop_all(pg_engine)
    Base.metadata.create_all(pg_engine)
    with Session(pg_engine) as s:
        s.add_all([Writer(id=i, name=f"w{i}") for i in range(1, 11)])
        s.add_all([Note(id=i, writer_id=i) for i in range(1, 11)])
        s.commit()
        yield s
    Base.metadata.drop_all(pg_engine)


def test_authors_in_the_identity_map_after_a_commit_load_in_one_statement(
    session: Session, pg_engine: Engine
) -> None:
    notes = list(session.scalars(sa.select(Note).order_by(Note.id)))
    held = list(session.scalars(sa.select(Writer)))  # noqa: F841  the writers are in the identity map...
    session.commit()  # ...and expired, as after any commit (expire_on_commit=True)
    notes = list(session.scalars(sa.select(Note).order_by(Note.id)))
    statements: list[str] = []
    sa.event.listen(pg_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    writers = load_related(session, Note.writer, notes)
    names = [w.name for w in writers]
    assert names == [f"w{i}" for i in range(1, 11)]
    # One statement for the level, as the loader promises; not one per writer.
    assert len(statements) <= 1, statements
