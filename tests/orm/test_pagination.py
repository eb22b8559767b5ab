"""Keyset and offset pagination on a real database: paging forwards then backwards
visits every row once, in the order a plain ORDER BY gives, whatever the mix of
directions, NULLs and duplicates; hostile column names; cursors that round-trip every
type exactly and refuse any change; totals exact or estimated, as said."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import sqlalchemy.orm
from fastapi import Depends, FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Connection, Engine

from pgwarden import InvalidCursor, UnpageableQuery
from pgwarden.orm import SoftDelete, enable_soft_delete_filter, keyset_page, offset_page
from pgwarden.orm._cursors import Cursor, decode_cursor, encode_cursor
from pgwarden.orm.pagination_fastapi import (
    KeysetParams,
    OffsetParams,
    keyset_params,
    offset_params,
)

SECRET = "a secret of more than sixteen bytes"
metadata = sa.MetaData()
# Every column but the key has a name that generated SQL must quote.
rows_table = sa.Table(
    'Mixed "Case" rows',
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("select", sa.Integer, nullable=True),
    sa.Column(":x", sa.Text, nullable=True),
    sa.Column("%s", sa.DateTime(timezone=True), nullable=True),
    sa.Column("a%b", sa.Numeric, nullable=True),
)
COLUMNS = ["select", ":x", "%s", "a%b"]
BASE = datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC)
POOLS: dict[str, list[Any]] = {
    "select": [None, -1, 0, 2],
    ":x": [None, "", "a", "B", "a b", "ä", "'; --"],
    "%s": [None, BASE, BASE + timedelta(microseconds=1), BASE - timedelta(days=400)],
    "a%b": [None, Decimal("0.1"), Decimal("0.10000000000000000001"), Decimal("-7")],
}


@pytest.fixture
def conn(pg_engine: Engine) -> Any:
    metadata.create_all(pg_engine)
    with pg_engine.connect() as connection:
        yield connection


row_values = st.fixed_dictionaries({name: st.sampled_from(pool) for name, pool in POOLS.items()})
orderings = st.lists(
    st.tuples(st.sampled_from(COLUMNS), st.booleans(), st.sampled_from([None, True, False])),
    min_size=1,
    max_size=3,
    unique_by=lambda key: key[0],
)


def _clause(name: str, descending: bool, nulls_first: bool | None) -> Any:
    column = rows_table.c[name]
    clause = column.desc() if descending else column.asc()
    if nulls_first is None:
        return clause
    return clause.nulls_first() if nulls_first else clause.nulls_last()


def _walk(conn: Connection, stmt: Any, per_page: int, *, backwards_from: str | None) -> list[Any]:
    pages: list[list[Any]] = []
    after: str | None = None
    before = backwards_from
    while True:
        page = keyset_page(conn, stmt, secret=SECRET, per_page=per_page, after=after, before=before)
        assert len(page.items) <= per_page
        pages.append(page.items)
        if backwards_from is None:
            if page.next_cursor is None:
                return [item for p in pages for item in p]
            after = page.next_cursor
        else:
            if page.previous_cursor is None:
                return [item for p in reversed(pages) for item in p]
            before = page.previous_cursor


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(row_values, max_size=24),
    ordering=orderings,
    per_page=st.integers(min_value=1, max_value=7),
)
def test_forwards_then_backwards_visits_every_row_once_in_order(
    conn: Connection, rows: list[dict[str, Any]], ordering: list[Any], per_page: int
) -> None:
    conn.execute(rows_table.delete())
    if rows:
        conn.execute(rows_table.insert(), [{"id": i, **row} for i, row in enumerate(rows)])
    stmt = sa.select(rows_table.c.id).order_by(*(_clause(*key) for key in ordering))
    expected = list(conn.execute(stmt.order_by(rows_table.c.id)).scalars())
    forwards = _walk(conn, stmt, per_page, backwards_from=None)
    assert forwards == expected
    # Back from the last page: the walk ends on the first page, every row seen once.
    last = keyset_page(conn, stmt, secret=SECRET, per_page=per_page)
    while last.next_cursor is not None:
        last = keyset_page(conn, stmt, secret=SECRET, per_page=per_page, after=last.next_cursor)
    if last.previous_cursor is None:
        assert last.items == expected
    else:
        before = _walk(conn, stmt, per_page, backwards_from=last.previous_cursor)
        assert before + last.items == expected
    conn.rollback()


offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
cursor_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.decimals(allow_nan=False),
    st.datetimes(timezones=offsets),
    st.datetimes(),
    st.times(timezones=offsets),
    st.dates(),
    st.uuids(),
    st.binary(),
    st.timedeltas(),
)


@given(values=st.lists(cursor_values, max_size=5), backwards=st.booleans())
def test_cursor_values_round_trip_exactly(values: list[Any], backwards: bool) -> None:
    key = SECRET.encode()
    back = decode_cursor(key, encode_cursor(key, Cursor(backwards, "o", tuple(values))))
    assert back == Cursor(backwards, "o", tuple(values))
    assert [type(v) for v in back.values] == [type(v) for v in values]
    for got, sent in zip(back.values, values, strict=True):
        if isinstance(sent, datetime | time):
            assert got.utcoffset() == sent.utcoffset()
        if isinstance(sent, Decimal):
            assert str(got) == str(sent)  # 0.10 stays 0.10


def test_typed_values_page_through_the_database(conn: Connection) -> None:
    table = sa.Table(
        "typed",
        sa.MetaData(),
        sa.Column("u", sa.Uuid, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True)),
        sa.Column("n", sa.Numeric),
    )
    table.create(conn)
    stamps = [BASE + timedelta(microseconds=i % 3) for i in range(9)]
    rows = [
        {"u": uuid.UUID(int=i * 7919), "at": stamps[i], "n": Decimal(f"1.{'0' * 30}{i % 2}")}
        for i in range(9)
    ]
    conn.execute(table.insert(), rows)
    stmt = sa.select(table.c.u).order_by(table.c.n.desc(), table.c.at)
    expected = list(conn.execute(stmt.order_by(table.c.u)).scalars())
    assert _walk(conn, stmt, 2, backwards_from=None) == expected
    # A labelled expression orders too; rows come back as tuples.
    twice = (table.c.n * 2).label("twice")
    labelled = sa.select(table.c.u, twice).order_by(twice.desc(), table.c.at.desc())
    want = [tuple(r) for r in conn.execute(labelled.order_by(table.c.u))]
    assert _walk(conn, labelled, 4, backwards_from=None) == want


def test_a_changed_or_foreign_cursor_is_refused(conn: Connection) -> None:
    conn.execute(rows_table.insert(), [{"id": i, "select": i % 3} for i in range(10)])
    stmt = sa.select(rows_table.c.id).order_by(rows_table.c["select"])
    page = keyset_page(conn, stmt, secret=SECRET, per_page=3)
    cursor = page.next_cursor
    assert cursor is not None
    payload, mac = cursor.split(".")
    changed = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + mac
    for bad in (changed, cursor[:-3], "garbage", "a.b", "", cursor + "x"):
        with pytest.raises(InvalidCursor) as info:
            keyset_page(conn, stmt, secret=SECRET, after=bad)
        assert info.value.hint
    with pytest.raises(InvalidCursor, match="changed"):
        keyset_page(conn, stmt, secret=SECRET + "-other", after=cursor)
    other = sa.select(rows_table.c.id).order_by(rows_table.c["select"].desc())
    with pytest.raises(InvalidCursor, match="another ordering"):
        keyset_page(conn, other, secret=SECRET, after=cursor)
    with pytest.raises(InvalidCursor, match="forwards"):
        keyset_page(conn, stmt, secret=SECRET, before=cursor)
    with pytest.raises(UnpageableQuery, match="no ORDER BY"):
        keyset_page(conn, sa.select(rows_table.c.id), secret=SECRET)
    with pytest.raises(UnpageableQuery, match="name or text"):
        keyset_page(conn, sa.select(rows_table.c.id).order_by(sa.text("1")), secret=SECRET)
    with pytest.raises(UnpageableQuery, match="16"):
        keyset_page(conn, stmt, secret="short")
    with pytest.raises(UnpageableQuery, match="LIMIT"):
        keyset_page(conn, stmt.limit(5), secret=SECRET)
    with pytest.raises(UnpageableQuery, match="both"):
        keyset_page(conn, stmt, secret=SECRET, after=cursor, before=cursor)


def test_offset_pages_say_whether_the_total_is_counted_or_estimated(conn: Connection) -> None:
    conn.execute(rows_table.insert(), [{"id": i, "select": i % 5} for i in range(500)])
    conn.execute(sa.text(f'ANALYZE "{rows_table.name.replace(chr(34), chr(34) * 2)}"'))
    stmt = sa.select(rows_table.c.id).where(rows_table.c["select"] < 3).order_by(rows_table.c.id)
    exact = offset_page(conn, stmt, page=2, per_page=10)
    assert exact.total == 300 and not exact.total_is_estimate
    kept = [i for i in range(500) if i % 5 < 3]
    assert exact.items == kept[10:20] and exact.pages == 30
    estimated = offset_page(conn, stmt, page=1, per_page=10, exact_below=50)
    assert estimated.total_is_estimate
    assert 150 <= estimated.total <= 600  # the planner's guess, from the statistics
    assert estimated.items == kept[:10]
    with pytest.raises(UnpageableQuery, match="start at 1"):
        offset_page(conn, stmt, page=0)


def test_fastapi_dependency_refuses_a_tampered_cursor_before_the_route(
    pg_engine: Engine,
) -> None:
    metadata.create_all(pg_engine)
    with pg_engine.begin() as connection:
        connection.execute(rows_table.insert(), [{"id": i} for i in range(7)])
    stmt = sa.select(rows_table.c.id).order_by(rows_table.c.id)
    app = FastAPI()
    keyset = keyset_params(secret=SECRET, max_per_page=5)

    numbering = offset_params(max_per_page=3)

    @app.get("/numbered")
    def numbered(params: OffsetParams = Depends(numbering)) -> Any:
        with pg_engine.connect() as connection:
            page = offset_page(connection, stmt, **params.options())
        return {"items": page.items, "total": page.total, "pages": page.pages}

    @app.get("/rows")
    def rows(params: KeysetParams = Depends(keyset)) -> dict[str, Any]:
        with pg_engine.connect() as connection:
            page = keyset_page(connection, stmt, secret=SECRET, **params.options())
        return {"items": page.items, "next": page.next_cursor}

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = (await client.get("/rows", params={"per_page": 4})).json()
            assert first["items"] == [0, 1, 2, 3]
            rest = (await client.get("/rows", params={"after": first["next"]})).json()
            assert rest == {"items": [4, 5, 6], "next": None}
            bad = await client.get("/rows", params={"after": first["next"][:-2] + "xx"})
            assert bad.status_code == 400 and "cursor" in bad.json()["detail"]
            too_many = await client.get("/rows", params={"per_page": 6})
            assert too_many.status_code == 422
            third = (await client.get("/numbered", params={"page": 3, "per_page": 3})).json()
            assert third == {"items": [6], "total": 7, "pages": 3}
            zero = await client.get("/numbered", params={"page": 0})
            assert zero.status_code == 422

    import asyncio

    asyncio.run(main())


class Base(sa.orm.DeclarativeBase):
    pass


class Lesson(SoftDelete, Base):
    __tablename__ = "lesson"
    id: sa.orm.Mapped[int] = sa.orm.mapped_column(primary_key=True)
    level: sa.orm.Mapped[int | None]


class LessonSession(sa.orm.Session):
    pass


enable_soft_delete_filter(LessonSession)


def test_orm_entities_and_rows_page_through_the_session_filters(pg_engine: Engine) -> None:
    Base.metadata.create_all(pg_engine)
    with LessonSession(pg_engine) as session:
        session.add_all(
            Lesson(
                id=i, level=None if i % 4 == 0 else i % 3, deleted_at=BASE if i % 5 == 0 else None
            )
            for i in range(1, 31)
        )
        session.commit()
        stmt = sa.select(Lesson).order_by(Lesson.level.desc().nulls_last())
        expected = list(session.scalars(stmt.order_by(Lesson.id)))
        assert all(lesson.deleted_at is None for lesson in expected)
        seen: list[Lesson] = []
        page = keyset_page(session, stmt, secret=SECRET, per_page=4)
        while True:
            seen += page.items
            if page.next_cursor is None:
                break
            page = keyset_page(session, stmt, secret=SECRET, per_page=4, after=page.next_cursor)
        assert seen == expected and all(a is b for a, b in zip(seen, expected, strict=True))
        pairs = sa.select(Lesson.id, Lesson.level).order_by(Lesson.level, Lesson.id)
        first = keyset_page(session, pairs, secret=SECRET, per_page=3, unique=True)
        assert first.items == [(row.id, row.level) for row in session.execute(pairs.limit(3))]
        counted = offset_page(session, stmt, per_page=5)
        assert counted.total == len(expected) and not counted.total_is_estimate
