"""Referential closure on a schema made for it: self-references, a cycle, a partitioned table.

people manage people (self-reference), replies answer replies, categories nest, teams
and members reference each other (a cycle, deferrable), and visits are partitioned by
month, so row locations repeat across partitions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pgwarden.testing.servers import TestServer
from pgwarden.transfer import export_bundle, read_bundle
from pgwarden.transfer.catalog import load_catalog
from pgwarden.transfer.export.subset import Subset, select_subset, selection
from transfer_export_support import load_with_copy

SCHEMA = """
CREATE TABLE orgs (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE people (
    id int PRIMARY KEY, org_id int NOT NULL REFERENCES orgs,
    manager_id int REFERENCES people, name text NOT NULL);
CREATE TABLE categories (id int PRIMARY KEY, parent_id int REFERENCES categories);
CREATE TABLE posts (
    id int PRIMARY KEY, author_id int NOT NULL REFERENCES people,
    category_id int REFERENCES categories, status text NOT NULL);
CREATE TABLE replies (
    id int PRIMARY KEY, post_id int NOT NULL REFERENCES posts,
    parent_id int REFERENCES replies, author_id int NOT NULL REFERENCES people);
CREATE TABLE teams (id int PRIMARY KEY, lead_id int);
CREATE TABLE members (id int PRIMARY KEY, team_id int NOT NULL REFERENCES teams);
ALTER TABLE teams ADD FOREIGN KEY (lead_id) REFERENCES members DEFERRABLE INITIALLY DEFERRED;
CREATE TABLE visits (
    id int, at date NOT NULL, person_id int NOT NULL REFERENCES people,
    PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE visits_jan PARTITION OF visits FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE visits_feb PARTITION OF visits FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
"""

DATA = """
INSERT INTO orgs VALUES (1, 'one'), (2, 'two'), (3, 'unused');
INSERT INTO people VALUES
    (1, 1, NULL, 'ceo'), (2, 1, 1, 'vp'), (3, 2, 2, 'lead'), (4, 2, 3, 'dev'),
    (5, 2, 3, 'dev2'), (6, 1, NULL, 'loner');
INSERT INTO categories VALUES (1, NULL), (2, 1), (3, 2), (4, NULL);
INSERT INTO posts VALUES
    (10, 4, 3, 'published'), (11, 5, NULL, 'draft'), (12, 6, 4, 'published');
INSERT INTO replies VALUES
    (100, 10, NULL, 5), (101, 10, 100, 4), (102, 10, 101, 6), (103, 11, NULL, 4);
INSERT INTO teams VALUES (1, 2), (2, NULL);
INSERT INTO members VALUES (1, 1), (2, 2), (3, 2);
INSERT INTO visits VALUES (1, '2026-01-05', 4), (2, '2026-01-06', 5), (1, '2026-02-05', 6),
    (2, '2026-02-06', 4);
ANALYZE;
"""


@pytest.fixture
def db(pg_engine: Engine) -> Engine:
    with pg_engine.begin() as conn:
        conn.execute(sa.text(SCHEMA))
        conn.execute(sa.text(DATA))
    return pg_engine


def closure(engine: Engine, table: str, *, where: str | None = None, **options: object) -> dict:
    """Return the ids chosen per table, and the direct/added counts, for one selection."""
    with engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            catalog = load_catalog(conn)
            chosen = selection(catalog, table, where=[where] if where else [])
            subset = select_subset(conn, catalog, [chosen], **options)  # type: ignore[arg-type]
            return {
                "ids": ids(conn, subset),
                "counts": {n: (p.direct, p.added) for n, p in subset.tables.items()},
                "order": subset.order(),
            }


def ids(conn: Connection, subset: Subset) -> dict[str, list[int]]:
    found = {}
    for name, part in subset.tables.items():
        rows = conn.execute(sa.text(f"SELECT t.id {part.source()} ORDER BY 1")).scalars().all()
        found[name.removeprefix("public.")] = list(rows)
    return found


def test_parents_follow_self_references_to_the_top(db: Engine) -> None:
    got = closure(db, "public.replies", where="id = 102")
    assert got["ids"] == {
        "replies": [100, 101, 102],  # the thread up to its first reply
        "posts": [10],
        "people": [1, 2, 3, 4, 5, 6],  # repliers, the post's author, and their managers
        "orgs": [1, 2],
        "categories": [1, 2, 3],  # the post's category and its ancestors
    }
    assert got["counts"]["public.replies"] == (1, 2)
    assert got["counts"]["public.people"] == (0, 6)


def test_a_null_foreign_key_needs_no_parent(db: Engine) -> None:
    got = closure(db, "public.posts", where="id = 11")
    assert got["ids"].get("categories", []) == []
    assert got["ids"]["people"] == [1, 2, 3, 5]


def test_children_go_as_deep_as_asked(db: Engine) -> None:
    one = closure(db, "public.people", where="id = 3", children=1)["ids"]
    assert one["people"] == [1, 2, 3, 4, 5]  # the two reports (children), managers (parents)
    assert one.get("posts", []) == []  # nothing references person 3 but the reports
    two = closure(db, "public.people", where="id = 3", children=2)["ids"]
    assert two["posts"] == [10, 11]  # written by the reports
    assert two["replies"] == [100, 101, 103]  # written by the reports
    assert two["visits"] == [1, 2, 2]  # of the reports, in both partitions
    every = closure(db, "public.people", where="id = 3", children=None)["ids"]
    assert every["replies"] == [100, 101, 102, 103]  # and the replies to those, all levels


def test_cycles_end_and_are_reported(db: Engine) -> None:
    got = closure(db, "public.members", where="id = 3")
    assert got["ids"] == {"members": [3], "teams": [2]}  # team 2 has no lead
    got = closure(db, "public.teams", where="id = 1")
    assert got["ids"] == {"teams": [1, 2], "members": [2]}  # its lead, and the lead's team
    order, cycles = got["order"]
    assert cycles == [["public.members", "public.teams"]]
    assert sorted(order) == ["public.members", "public.teams"]


def test_partitions_keep_their_rows_apart(db: Engine) -> None:
    # (1, jan) and (1, feb) may sit at the same location in two partitions
    got = closure(db, "public.visits", where="at >= '2026-02-01'")
    assert got["counts"]["public.visits"] == (2, 0)
    assert got["ids"]["people"] == [1, 2, 3, 4, 6]


def test_a_whole_table_is_taken_without_an_id_table(db: Engine) -> None:
    got = closure(db, "public.posts")
    assert got["ids"]["posts"] == [10, 11, 12]
    assert got["ids"]["people"] == [1, 2, 3, 4, 5, 6]
    assert got["ids"]["categories"] == [1, 2, 3, 4]
    assert got["ids"]["orgs"] == [1, 2]  # the unused org stays out
    assert got["counts"]["public.posts"][1] == 0


def test_a_subset_with_cycles_and_self_references_loads_into_an_empty_copy(
    db: Engine, pg_server: TestServer, tmp_path: Path
) -> None:
    with db.connect() as conn:
        export_bundle(conn, tmp_path / "out", tables=["public.replies", "public.teams"],
                      where=["replies: id = 102", "teams: id = 1"])  # fmt: skip
    bundle = read_bundle(tmp_path / "out", verify=True)
    assert bundle.cycles == (("public.members", "public.teams"),)
    name = pg_server.create_database()
    target = sa.create_engine(
        pg_server.url(name).replace("postgresql://", "postgresql+psycopg://", 1),
        poolclass=sa.pool.NullPool,
    )
    try:
        with target.begin() as conn:
            conn.execute(sa.text(SCHEMA))
        loaded = load_with_copy(target, bundle)
    finally:
        target.dispose()
        pg_server.drop_database(name)
    assert loaded == {t.qualified: t.rows for t in bundle.tables}
    assert loaded["public.replies"] == 3 and loaded["public.people"] == 6


def test_nullable_keys_can_be_written_as_null_instead_of_followed(
    db: Engine, pg_server: TestServer, tmp_path: Path
) -> None:
    got = closure(db, "public.posts", where="id = 10", nullable="null")
    assert got["ids"]["people"] == [4]  # the author; their manager (nullable) is not followed
    assert "categories" not in got["ids"]  # nor the post's category
    with db.connect() as conn:
        export_bundle(conn, tmp_path / "out", tables=["public.posts", "public.replies"],
                      where=["posts: id = 10", "replies: id = 101"], nullable="null")  # fmt: skip
    bundle = read_bundle(tmp_path / "out", verify=True)

    def rows(name: str) -> list[list[str]]:
        text = (tmp_path / "out" / bundle.table(name).file).read_text()
        return sorted(line.split("\t") for line in text.splitlines())

    assert rows("public.posts") == [["10", "4", "\\N", "published"]]  # category nulled
    # reply 101 answers reply 100, not exported: NULL; person 4's manager 3 is not either
    assert rows("public.replies") == [["101", "10", "\\N", "4"]]
    assert rows("public.people") == [["4", "2", "\\N", "dev"]]
    name = pg_server.create_database()
    target = sa.create_engine(
        pg_server.url(name).replace("postgresql://", "postgresql+psycopg://", 1),
        poolclass=sa.pool.NullPool,
    )
    try:
        with target.begin() as conn:
            conn.execute(sa.text(SCHEMA))
        assert load_with_copy(target, bundle)["public.people"] == 1
    finally:
        target.dispose()
        pg_server.drop_database(name)
