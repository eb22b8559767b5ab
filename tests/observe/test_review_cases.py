"""Edge cases: secrets, failing hooks, mapper-level eager loads, lazy iteration, call-site
attribution, option engines, dropped engines, foreign wrappers, nested watches."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
)

from pgwarden import observe
from pgwarden.db.engines import create_engine
from pgwarden.observe.relationships import audit_relationships


class Base(DeclarativeBase):
    pass


class Team(Base):
    __tablename__ = "team"
    id: Mapped[int] = mapped_column(primary_key=True)
    members: Mapped[list[Member]] = relationship(lazy="selectin")
    projects: Mapped[list[Project]] = relationship()


class Member(Base):
    __tablename__ = "member"
    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("team.id"))


class Project(Base):
    __tablename__ = "project"
    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("team.id"))


@pytest.fixture
def engine(pg_engine: Engine) -> Iterator[Engine]:
    Base.metadata.create_all(pg_engine)
    with Session(pg_engine) as session:
        for i in range(1, 4):
            session.add(Team(id=i, members=[Member(), Member()], projects=[Project()]))
        session.commit()
    observe.instrument(pg_engine, metrics=False)
    yield pg_engine
    observe.uninstrument(pg_engine)


def test_secret_parameters_and_statement_text_are_scrubbed(
    pg_engine: Engine, records: list[logging.LogRecord]
) -> None:
    observe.instrument(pg_engine, metrics=False, log_parameters=True)
    try:
        with pg_engine.connect() as conn:
            conn.execute(
                sa.text("SELECT :password, :api_token"),
                {"password": "hunter2", "api_token": "tok_9"},
            )
            conn.execute(sa.text("SELECT 'postgresql://u:hunter2@h/d'"))
    finally:
        observe.uninstrument(pg_engine)
    text = " ".join(f"{r.getMessage()} {vars(r)}" for r in records)
    assert "hunter2" not in text and "tok_9" not in text


def test_a_failing_slow_query_hook_does_not_change_the_result(pg_engine: Engine) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("hook is broken")

    observe.instrument(pg_engine, metrics=False, slow_ms=0)
    observe.on_slow_query(broken)
    try:
        with pg_engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 41 + 1")).scalar_one() == 42
            with pytest.raises(sa.exc.ProgrammingError):  # the real error, not the hook's
                conn.execute(sa.text("SELECT * FROM no_such_table"))
    finally:
        observe.remove_slow_query_hook(broken)
        observe.uninstrument(pg_engine)


def test_a_mapper_level_selectin_is_not_an_unused_eager_load(engine: Engine) -> None:
    with Session(engine) as session, observe.watch(mode="raise") as watch:
        assert [team.id for team in session.scalars(sa.select(Team)).all()] == [1, 2, 3]
    assert watch.findings() == []


def test_an_eager_load_read_while_iterating_on_another_line_counts_as_read(engine: Engine) -> None:
    with Session(engine) as session, observe.watch(mode="raise") as watch:
        result = session.scalars(sa.select(Team).options(selectinload(Team.projects)))
        counts = [len(team.projects) for team in result]
    assert counts == [1, 1, 1]
    assert watch.findings() == []


def test_one_get_from_each_of_many_lines_is_not_a_repeated_statement(engine: Engine) -> None:
    with Session(engine) as session, observe.watch(mode="raise") as watch:
        session.execute(sa.text("SELECT id FROM team WHERE id = :id"), {"id": 1})
        session.execute(sa.text("SELECT id FROM team WHERE id = :id"), {"id": 2})
        session.execute(sa.text("SELECT id FROM team WHERE id = :id"), {"id": 3})
        session.execute(sa.text("SELECT id FROM team WHERE id = :id"), {"id": 1})
        session.execute(sa.text("SELECT id FROM team WHERE id = :id"), {"id": 2})
        session.execute(sa.text("SELECT id FROM team WHERE id = :id"), {"id": 3})
        session.execute(sa.text("SELECT id FROM team WHERE id = :id"), {"id": 1})
        session.execute(sa.text("SELECT id FROM team WHERE id = :id"), {"id": 2})
        session.execute(sa.text("SELECT id FROM team WHERE id = :id"), {"id": 3})
        session.execute(sa.text("SELECT id FROM team WHERE id = :id"), {"id": 1})
    assert watch.findings() == []


def test_an_option_engine_shares_the_instrumentation(engine: Engine) -> None:
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    assert observe.instrument(autocommit) is observe.instrumentation(engine)
    with observe.watch(mode="raise") as watch, autocommit.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert watch.statements == 1


def test_a_dropped_engine_is_collected(pg_url: str) -> None:
    engine = create_engine(pg_url)
    observe.instrument(engine)  # metrics on, pool monitor thread on
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    ref = weakref.ref(engine)
    engine.dispose()
    del engine, conn
    gc.collect()
    assert ref() is None


def test_uninstrument_leaves_a_later_wrapper_working(pg_engine: Engine) -> None:
    calls: list[str] = []
    observe.instrument(pg_engine, metrics=False)
    ours = pg_engine.dialect.do_execute

    def theirs(cursor: object, statement: str, parameters: object, context: object = None) -> None:
        calls.append(statement)
        ours(cursor, statement, parameters, context)

    pg_engine.dialect.do_execute = theirs  # type: ignore[method-assign]
    observe.uninstrument(pg_engine)
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT :x"), {"x": 5}).scalar_one() == 5
    assert calls  # still called, and ours passes straight through


def test_nested_watches_report_once(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="pgwarden.observe.nplusone"),
        observe.watch("outer", mode="log") as outer,
        Session(engine) as session,
        observe.watch("inner", mode="log"),
    ):
        for team in session.scalars(sa.select(Team)).all():
            _ = team.projects
    assert len(outer.findings()) == 1
    assert len([r for r in caplog.records if "Team.projects" in r.getMessage()]) == 1


def test_audit_of_chosen_classes_stays_with_them() -> None:
    names = [r.relationship for r in audit_relationships([Member])]
    assert names == []
    names = [r.relationship for r in audit_relationships([Team])]
    assert sorted(names) == ["Team.members", "Team.projects"]
