"""N+1s and slow statements of an instrumented application, read through the admin API.

A tiny application with a real N+1 (each book's author lazy-loaded in a loop) runs
against the test database. Mounted in the same app, the router reads what the process
saw; with ``store_reports=True`` the application, run as a separate process, stores its
reports in its database and a separate API reads them there.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import auth
from sqlalchemy import ForeignKey, create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from pgwarden.api import create_app, router
from pgwarden.config import Settings
from pgwarden.observe import ObserveMiddleware, instrument, uninstrument
from pgwarden.observe.reports import forget_reports

fastapi = pytest.importorskip("fastapi")
testclient = pytest.importorskip("fastapi.testclient")
PREFIX = "/v1/database"


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


class Book(Base):
    __tablename__ = "book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
    author: Mapped[Author] = relationship()


def _line_of(marker: str, source: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if marker in line)


@pytest.fixture(autouse=True)
def nothing_pending() -> Iterator[None]:
    forget_reports()  # what earlier tests of this process saw is not this test's
    yield
    forget_reports()


@pytest.fixture
def app_engine(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        authors = [Author(id=i, name=f"author {i}") for i in range(1, 6)]
        session.add_all(authors)
        session.flush()
        session.add_all(Book(id=i, title=f"book {i}", author_id=1 + i % 5) for i in range(1, 21))
    yield engine
    uninstrument(engine)
    engine.dispose()


def _application(engine: Engine, settings: Settings) -> Any:
    """Return the application: an N+1 route, a slow route, and the admin router mounted."""
    app = fastapi.FastAPI()
    app.add_middleware(ObserveMiddleware)

    @app.get("/books")
    def books() -> list[str]:
        with Session(engine) as session:
            found = session.query(Book).order_by(Book.id).all()
            return [f"{b.title} by {b.author.name}" for b in found]  # the N+1

    @app.get("/slow")
    def slow() -> int:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(0.03), 'hunter2-literal'"))  # slow
        return 1

    admin = router(settings)
    app.include_router(admin)
    app.state.admin = admin
    return app


def test_a_mounted_router_reports_the_applications_n_plus_one_and_slow_statements(
    app_engine: Engine, api_settings: Settings, tokens: dict[str, str]
) -> None:
    instrument(app_engine, slow_ms=20, metrics=False, sentry=False, leak_seconds=None)
    app = _application(app_engine, api_settings)
    with testclient.TestClient(app) as client:
        for _ in range(3):
            assert client.get("/books").status_code == 200
        for _ in range(3):
            assert client.get("/slow").status_code == 200
        assert client.get(f"{PREFIX}/observe/nplusone").status_code == 401
        answer = client.get(f"{PREFIX}/observe/nplusone", headers=auth(tokens["read"]))
        slow = client.get(f"{PREFIX}/observe/slow", headers=auth(tokens["read"]))
    app.state.admin.runtime.dispose()
    assert answer.status_code == 200, answer.text
    [finding] = [f for f in answer.json() if f["kind"] == "lazy_load"]
    line = _line_of("# the N+1", Path(__file__).read_text())
    assert (Path(finding["file"]).name, finding["line"]) == (Path(__file__).name, line)
    assert finding["location"].endswith(f"test_api_observe.py:{line}")
    assert finding["relationship"] == "Book.author"
    assert finding["fix"] == ".options(joinedload(Book.author))"
    assert finding["count"] == 3  # three requests had it
    assert finding["queries"] == 3 * 5  # five authors lazy-loaded in each
    assert finding["last_seen"] >= finding["first_seen"]
    assert slow.status_code == 200, slow.text
    [statement] = [s for s in slow.json() if "pg_sleep" in s["statement"]]
    assert statement["count"] == 3
    assert 30 <= statement["p50_ms"] <= statement["p95_ms"] <= statement["max_ms"]
    assert "hunter2" not in slow.text  # literals never leave the application
    slow_line = _line_of("# slow", Path(__file__).read_text())
    assert statement["location"].endswith(f"test_api_observe.py:{slow_line}")


APP = textwrap.dedent(
    """
    import sys
    from sqlalchemy import ForeignKey, create_engine, text
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
    from pgwarden.observe import instrument, watch

    class Base(DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = "author"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    class Book(Base):
        __tablename__ = "book"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str]
        author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
        author: Mapped[Author] = relationship()

    engine = create_engine(sys.argv[1])
    instrument(engine, slow_ms=20, store_reports=True, metrics=False, sentry=False)
    for request in range(2):
        with watch("GET /books", mode="log"), Session(engine) as session:
            books = session.query(Book).all()
            names = [book.author.name for book in books]  # lazy load per book
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_sleep(0.03)"))
    """
)


def test_a_separate_api_reads_what_the_application_stored(
    app_engine: Engine, api_settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP)
    url = app_engine.url.render_as_string(hide_password=False)
    done = subprocess.run(  # the application, in its own process; it stores as it exits
        [sys.executable, str(script), url], capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    app = create_app(api_settings)  # pgwarden serve, in effect: nothing pending here
    with testclient.TestClient(app) as client:
        nplusone = client.get(f"{PREFIX}/observe/nplusone", headers=auth(tokens["read"]))
        slow = client.get(f"{PREFIX}/observe/slow", headers=auth(tokens["read"]))
    assert nplusone.status_code == 200, nplusone.text
    [finding] = [f for f in nplusone.json() if f["kind"] == "lazy_load"]
    line = _line_of("# lazy load per book", APP)
    assert (finding["file"], finding["line"]) == ("app.py", line)
    assert (finding["relationship"], finding["count"], finding["queries"]) == (
        "Book.author", 2, 10,
    )  # fmt: skip
    assert finding["fix"] == ".options(joinedload(Book.author))"
    [statement] = [s for s in slow.json() if "pg_sleep" in s["statement"]]
    assert statement["count"] == 2 and statement["location"] == f"app.py:{line + 2}"
    password = app_engine.url.password
    assert not password or password not in nplusone.text + slow.text


def test_stored_reports_add_up_across_flushes(app_engine: Engine) -> None:
    from pgwarden.observe.report_store import stored_statements, write_reports
    from pgwarden.observe.reports import _Pending, slow_statement_reports

    first, second = _Pending(), _Pending()
    for ms in (10.0, 20.0, 30.0):
        first.add_slow("SELECT * FROM book WHERE id = 1", ms / 1000, None)
    second.add_slow("SELECT * FROM book WHERE id = 99", 0.5, None)
    with app_engine.begin() as conn:
        write_reports(conn, *first.drain())
        write_reports(conn, *second.drain())
    with app_engine.connect() as conn:
        [stored] = stored_statements(conn)
        [merged] = slow_statement_reports(conn)
    assert stored.count == 4 and stored.max_ms == 500.0
    assert stored.samples_ms == (10.0, 20.0, 30.0, 500.0)
    assert (stored.p50_ms, stored.p95_ms) == (20.0, 500.0)
    assert merged == stored  # nothing pending in this process
    assert stored.statement == "SELECT * FROM book WHERE id = $1"
