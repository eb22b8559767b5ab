"""The pytest plugin fails (or warns about) a test that triggers an N+1."""

from __future__ import annotations

import pytest

from pgwarden.testing.servers import TestServer

pytest_plugins = ["pytester"]

TEST_FILE = """
import sqlalchemy as sa
import pytest
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

class Base(DeclarativeBase):
    pass

class Shelf(Base):
    __tablename__ = "shelf"
    id: Mapped[int] = mapped_column(primary_key=True)
    books: Mapped[list["Book"]] = relationship()

class Book(Base):
    __tablename__ = "book"
    id: Mapped[int] = mapped_column(primary_key=True)
    shelf_id: Mapped[int] = mapped_column(sa.ForeignKey("shelf.id"))

def _fill(engine):
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Shelf(id=i, books=[Book(), Book()]) for i in range(1, 4)])
        session.commit()

def test_lazy(pg_engine):
    _fill(pg_engine)
    with Session(pg_engine) as session:
        shelves = session.scalars(sa.select(Shelf)).all()
        assert sum(len(shelf.books) for shelf in shelves) == 6

@pytest.mark.nplusone_allow("Shelf.books")
def test_allowed(pg_engine):
    test_lazy(pg_engine)

def test_eager(pg_engine):
    _fill(pg_engine)
    with Session(pg_engine) as session:
        query = sa.select(Shelf).options(sa.orm.selectinload(Shelf.books))
        assert sum(len(s.books) for s in session.scalars(query).all()) == 6
"""


@pytest.fixture
def inner(
    pytester: pytest.Pytester, pg_server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    # The inner session reuses this session's server rather than starting its own.
    monkeypatch.setenv("PGWARDEN_TEST_DSN", pg_server.url("postgres"))
    pytester.makepyfile(test_shelves=TEST_FILE)
    return pytester


def test_raise_fails_the_test_with_the_report(inner: pytest.Pytester) -> None:
    result = inner.runpytest_subprocess("--pgwarden-nplusone=raise", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*N+1 queries in test_shelves.py::test_lazy*",
            "*Shelf.books lazy-loaded 3 times at test_shelves.py:*selectinload(Shelf.books)*",
        ]
    )


def test_warn_reports_and_passes(inner: pytest.Pytester) -> None:
    result = inner.runpytest_subprocess("--pgwarden-nplusone=warn", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, warnings=1)
    result.stdout.fnmatch_lines(["*Shelf.books lazy-loaded 3 times*"])


def test_off_by_default(inner: pytest.Pytester) -> None:
    inner.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)
