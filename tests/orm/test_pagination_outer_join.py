"""Keyset pages over an outer join: a NOT NULL column there can be NULL, and no row is skipped."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.orm import keyset_page

SECRET = "a secret of more than sixteen bytes"
metadata = sa.MetaData()
owners = sa.Table("paged_owners", metadata, sa.Column("id", sa.Integer, primary_key=True))
pets = sa.Table(
    "paged_pets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("paged_owners.id"), nullable=False),
    sa.Column("born", sa.Integer, nullable=False),
)


@pytest.fixture
def conn(pg_engine: Engine) -> Any:
    metadata.create_all(pg_engine)
    with pg_engine.connect() as connection:
        connection.execute(owners.insert(), [{"id": i} for i in range(1, 7)])
        # Owners 4, 5 and 6 have no pet: the outer join gives them a NULL "born".
        connection.execute(
            pets.insert(), [{"id": i, "owner_id": i, "born": 2000 + i} for i in range(1, 4)]
        )
        yield connection
        connection.rollback()


def test_an_outer_joined_not_null_column_pages_through_its_nulls(conn: Any) -> None:
    stmt = (
        sa.select(owners.c.id, pets.c.born)
        .select_from(owners.outerjoin(pets, pets.c.owner_id == owners.c.id))
        .order_by(pets.c.born, owners.c.id)
    )
    everything = conn.execute(stmt).all()
    seen: list[Any] = []
    after = None
    while True:
        page = keyset_page(conn, stmt, secret=SECRET, per_page=2, after=after, unique=True)
        seen += page.items
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert [tuple(r) for r in seen] == [tuple(r) for r in everything]
