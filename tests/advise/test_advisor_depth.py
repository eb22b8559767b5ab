"""The advisor beyond plain B-trees, on a freight ledger built for real: a range-partitioned
table, expression and partial indexes, column order, GIN, GiST and BRIN. Each
recommendation's migration is run through Alembic and the planner then reads the index."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.engine import Engine

from pgwarden.advise import IndexAdvice, IndexRecommendation, advise_indexes, alembic_migration
from pgwarden.advise.evaluate import explain

FREIGHT = [
    "CREATE TABLE shipper (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL)",
    "INSERT INTO shipper SELECT g, 'Shipper' || g || '@Example.org', 'shipper ' || g"
    " FROM generate_series(1, 5000) AS g",
    "CREATE TABLE consignment (id bigint PRIMARY KEY, shipper_id bigint NOT NULL,"
    " dest text NOT NULL, weight int NOT NULL, state text NOT NULL,"
    " booked timestamp NOT NULL, booked_tz timestamptz NOT NULL, doc jsonb NOT NULL,"
    " tags int[] NOT NULL, slot tstzrange NOT NULL)",
    # 40 destinations; one consignment in 100 lost; booked in the order rows arrive
    "INSERT INTO consignment SELECT g, 1 + g % 5000, 'D' || lpad((g % 40)::text, 3, '0'),"
    " (g * 7919) % 5000, CASE WHEN g % 100 = 0 THEN 'lost' ELSE 'delivered' END,"
    " timestamp '2026-01-01' + g * interval '1 minute',"
    " timestamptz '2026-01-01' + g * interval '1 minute',"
    " jsonb_build_object('ref', 'R' || g, 'kind', g % 500), ARRAY[g % 700, g % 37],"
    " tstzrange(timestamptz '2026-01-01' + g * interval '1 minute',"
    " timestamptz '2026-01-01' + g * interval '1 minute' + interval '30 minutes')"
    " FROM generate_series(1, 40000) AS g",
    "CREATE TABLE scan_event (consignment_id bigint NOT NULL, at timestamp NOT NULL,"
    " kind text NOT NULL) PARTITION BY RANGE (at)",
    "CREATE TABLE scan_event_2026_01 PARTITION OF scan_event"
    " FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
    "CREATE TABLE scan_event_2026_02 PARTITION OF scan_event"
    " FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')",
    "CREATE TABLE scan_event_2026_03 PARTITION OF scan_event"
    " FOR VALUES FROM ('2026-03-01') TO ('2026-04-01')",
    "INSERT INTO scan_event SELECT 1 + (g * 7919) % 20000,"
    " timestamp '2026-01-01' + (g % 85) * interval '1 day' + g * interval '1 second', 'scan'"
    " FROM generate_series(1, 30000) AS g",
    "ANALYZE shipper, consignment, scan_event",
]


@pytest.fixture
def freight(pg_engine: Engine) -> Engine:
    """Return an engine on a new database holding the freight ledger, analysed."""
    with pg_engine.begin() as conn:
        for statement in FREIGHT:
            conn.execute(sa.text(statement))
    return pg_engine


def advise(engine: Engine, queries: list[Any], **options: Any) -> IndexAdvice:
    # the ledger was just loaded, so its tables count as written more than read: keep
    # the bar at min_factor (the written-table bar has its own test)
    options.setdefault("write_heavy_factor", 2.0)
    with engine.connect() as conn:
        return advise_indexes(conn, queries=queries, **options)


def apply(engine: Engine, recommendations: list[IndexRecommendation]) -> None:
    """Run the advisor's Alembic migration for ``recommendations`` on the database."""
    body = alembic_migration(recommendations, revision="r1")
    module: dict[str, Any] = {}
    exec(compile(body, "migration.py", "exec"), module)  # noqa: S102 - the text under test
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        with context.begin_transaction(), Operations.context(context):
            module["upgrade"]()
        conn.execute(sa.text("ANALYZE"))
        conn.commit()


def indexes_read(engine: Engine, sql: str, params: int = 0) -> frozenset[str]:
    """Return the indexes the planner reads for ``sql`` (its generic plan with ``$n``)."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        return explain(raw, sql, params=params).indexes  # type: ignore[arg-type]


def assert_each_query_reads_its_index(engine: Engine, advice: IndexAdvice) -> None:
    """Run the migration, then check every served query's plan reads its index."""
    apply(engine, advice.recommendations)
    for index in advice.recommendations:
        names = {index.name} | {p.name for p in index.partitions}
        for query in index.queries:
            assert indexes_read(engine, query.sql, query.sql.count("$")) & names, query.sql


def test_a_partitioned_table_gets_an_index_on_the_parent_built_safely(
    freight: Engine, method: str
) -> None:
    query = "SELECT count(*) FROM scan_event WHERE consignment_id = $1"
    advice = advise(freight, [query], method=method)
    (index,) = advice.recommendations
    assert (index.table, index.columns, index.on_parent) == ("scan_event", ["consignment_id"], True)
    assert [p.table for p in index.partitions] == [
        "scan_event_2026_01", "scan_event_2026_02", "scan_event_2026_03",
    ]  # fmt: skip
    assert index.statements == [
        "CREATE INDEX ix_scan_event_consignment_id ON ONLY public.scan_event (consignment_id)",
        *[
            f"CREATE INDEX CONCURRENTLY ix_scan_event_2026_0{m}_consignment_id"
            f" ON public.scan_event_2026_0{m} (consignment_id)"
            for m in (1, 2, 3)
        ],
        *[
            "ALTER INDEX public.ix_scan_event_consignment_id"
            f" ATTACH PARTITION public.ix_scan_event_2026_0{m}_consignment_id"
            for m in (3, 2, 1)
        ],
    ]
    assert index.queries[0].factor >= 2
    apply(freight, advice.recommendations)
    with freight.connect() as conn:
        valid = conn.execute(
            sa.text(
                "SELECT indisvalid FROM pg_index"
                " WHERE indexrelid = 'ix_scan_event_consignment_id'::regclass"
            )
        ).scalar()
    assert valid  # every partition's index attached
    assert indexes_read(freight, query, 1) >= {
        f"ix_scan_event_2026_0{m}_consignment_id" for m in (1, 2, 3)
    }


def test_only_the_partitions_queries_read_get_an_index(freight: Engine, method: str) -> None:
    query = (
        "SELECT * FROM scan_event WHERE consignment_id = $1"
        " AND at >= '2026-03-01' AND at < '2026-03-20'"
    )
    (index,) = advise(freight, [query], method=method).recommendations
    assert not index.on_parent
    assert [(p.table, p.parent) for p in index.partitions] == [("scan_event_2026_03", None)]
    assert index.statements[0].startswith("CREATE INDEX CONCURRENTLY ix_scan_event_2026_03_")
    apply(freight, [index])
    assert indexes_read(freight, query, 1) == {index.partitions[0].name}


def test_an_immutable_expression_gets_an_expression_index(freight: Engine, method: str) -> None:
    queries = [
        "SELECT * FROM shipper WHERE lower(email) = $1",
        "SELECT id FROM consignment WHERE (doc ->> 'ref') = $1",
        "SELECT count(*) FROM consignment WHERE date_trunc('day', booked) = $1",
    ]
    advice = advise(freight, queries, method=method, brin_min_rows=10**9)
    found = {(r.table, tuple(k.sql for k in r.keys)) for r in advice.recommendations}
    assert found == {
        ("shipper", ("(lower(email))",)),
        ("consignment", ("(doc ->> 'ref')",)),
        ("consignment", ("(date_trunc('day', booked))",)),
    }
    assert {r.name for r in advice.recommendations} == {
        "ix_shipper_lower_email", "ix_consignment_expr_doc", "ix_consignment_date_trunc_booked",
    }  # fmt: skip
    assert {q.sql for r in advice.recommendations for q in r.queries} == set(queries)
    assert_each_query_reads_its_index(freight, advice)


def test_an_expression_that_is_not_immutable_is_skipped_with_the_reason(freight: Engine) -> None:
    query = "SELECT count(*) FROM consignment WHERE date_trunc('day', booked_tz) = $1"
    advice = advise(freight, [query], method="scratch")
    assert advice.recommendations == []
    (skipped,) = advice.skipped
    assert "not IMMUTABLE" in skipped.reason


def test_a_shared_selective_constant_makes_a_partial_index_and_shows_the_size_saved(
    freight: Engine, method: str
) -> None:
    queries = [
        "SELECT * FROM consignment WHERE state = 'lost' ORDER BY booked DESC LIMIT 20",
        "SELECT count(*) FROM consignment WHERE state = 'lost' AND booked > $1",
    ]
    advice = advise(freight, queries, method=method, brin_min_rows=10**9)
    (index,) = advice.recommendations
    assert (index.columns, index.predicate) == (["booked"], "state = 'lost'")
    assert len(index.queries) == 2
    (note,) = [n for n in index.notes if n.startswith("partial:")]
    share = float(note.split("holds ", 1)[1].split("%", 1)[0])
    assert 0.5 <= share <= 2.0  # one in a hundred, as the planner estimates it
    apply(freight, [index])
    assert index.name in indexes_read(freight, queries[0])


def test_equality_columns_lead_and_the_report_says_why(freight: Engine, method: str) -> None:
    query = "SELECT * FROM consignment WHERE dest = $1 AND weight > $2 ORDER BY weight DESC LIMIT 5"
    advice = advise(freight, [query], method=method, brin_min_rows=10**9)
    (index,) = advice.recommendations
    assert index.columns == ["dest", "weight"]
    (why,) = [n for n in index.notes if n.startswith("chosen")]
    assert "over (weight" in why or "over (weight, dest)" in why
    apply(freight, [index])
    assert index.name in indexes_read(freight, query, 2)


def test_gin_for_containment_and_overlap_gist_for_ranges(freight: Engine, method: str) -> None:
    queries = [
        "SELECT id FROM consignment WHERE doc @> '{\"kind\": 7}'",
        "SELECT id FROM consignment WHERE tags && ARRAY[650]",
        "SELECT id FROM consignment WHERE slot && tstzrange('2026-01-05', '2026-01-05 01:00')",
    ]
    advice = advise(freight, queries, method=method, brin_min_rows=10**9)
    if method == "hypopg":  # hypopg makes no GIN or GiST index: the note says how to try them
        assert advice.recommendations == []
        assert any("hypopg cannot make gin" in n and "--method scratch" in n for n in advice.notes)
        reasons = {s.reason for s in advice.unserved}
        assert reasons == {
            "its candidates could not be tried: hypopg cannot make gin indexes",
            "its candidates could not be tried: hypopg cannot make gist indexes",
        }
        return
    found = {(r.using, tuple(r.columns)) for r in advice.recommendations}
    assert found == {("gin", ("doc",)), ("gin", ("tags",)), ("gist", ("slot",))}
    assert {q.sql for r in advice.recommendations for q in r.queries} == set(queries)
    assert_each_query_reads_its_index(freight, advice)


def test_brin_for_a_range_over_a_column_in_insertion_order(freight: Engine, method: str) -> None:
    if method == "hypopg":
        pytest.skip(
            "hypopg 1.3 costs a hypothetical BRIN index without block ranges to read, well "
            "above a real one: the scratch copy, which builds it, tries BRIN"
        )
    query = (
        "SELECT count(*) FROM consignment"
        " WHERE booked >= '2026-01-10' AND booked < '2026-01-10 02:00'"
    )
    advice = advise(freight, [query], method=method, brin_min_rows=10_000)
    (index,) = advice.recommendations
    assert (index.using, index.columns) == ("brin", ["booked"])
    (why,) = [n for n in index.notes if n.startswith("chosen")]
    assert "a B-tree over 20x the size" in why
    apply(freight, [index])
    assert index.name in indexes_read(freight, query)


def test_a_wider_index_names_the_one_it_makes_redundant(freight: Engine, method: str) -> None:
    with freight.begin() as conn:
        conn.execute(sa.text("CREATE INDEX consignment_dest ON consignment (dest)"))
        conn.execute(sa.text("ANALYZE consignment"))
    query = "SELECT * FROM consignment WHERE dest = $1 AND weight > $2 ORDER BY weight DESC LIMIT 5"
    (index,) = advise(freight, [query], method=method, brin_min_rows=10**9).recommendations
    assert index.columns == ["dest", "weight"]
    assert index.replaces == ["consignment_dest"]
    assert any("makes consignment_dest" in note and "redundant" in note for note in index.notes)


def test_the_freight_ledger_end_to_end(freight: Engine, method: str) -> None:
    from pgwarden.advise import Query

    queries = [
        Query("SELECT count(*) FROM scan_event WHERE consignment_id = $1", calls=30),
        Query("SELECT * FROM shipper WHERE lower(email) = $1", calls=30),
        Query(
            "SELECT * FROM consignment WHERE dest = 'D007' AND weight > 4990"
            " ORDER BY weight DESC LIMIT 5",
            calls=30,
        ),
        Query("SELECT * FROM consignment WHERE id = $1", calls=30),
        Query(
            "SELECT * FROM consignment WHERE state = 'lost' ORDER BY booked DESC LIMIT 20", calls=30
        ),
    ]
    advice = advise(freight, queries, method=method, brin_min_rows=10**9)
    shapes = {(r.table, r.candidate.shape) for r in advice.recommendations}
    assert ("scan_event", "(consignment_id)") in shapes
    assert ("shipper", "((lower(email)))") in shapes
    assert {("consignment", "(booked) WHERE state = 'lost'")} <= shapes
    assert any(t == "consignment" and s.startswith("(dest, weight") for t, s in shapes) or any(
        t == "consignment" and "weight" in s for t, s in shapes
    )
    # every query is served, or its reason given
    served = {q.sql for r in advice.recommendations for q in r.queries}
    reasons = {s.sql for s in [*advice.skipped, *advice.unserved]}
    assert served | reasons == {q.sql for q in queries}
    assert all(q.calls == 30 for r in advice.recommendations for q in r.queries)
    assert_each_query_reads_its_index(freight, advice)


def test_include_columns_when_an_index_only_scan_pays(freight: Engine, method: str) -> None:
    with freight.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("VACUUM ANALYZE consignment")
        )  # an index-only scan needs the visibility map
    query = "SELECT weight FROM consignment WHERE shipper_id = $1"
    (index,) = advise(freight, [query], method=method, brin_min_rows=10**9).recommendations
    assert (index.columns, index.include) == (["shipper_id"], ["weight"])
    assert index.statements == [
        "CREATE INDEX CONCURRENTLY ix_consignment_shipper_id ON public.consignment (shipper_id)"
        " INCLUDE (weight)"
    ]
    apply(freight, [index])
    assert index.name in indexes_read(freight, query, 1)


def test_a_size_budget_keeps_the_indexes_that_save_most_per_byte(freight: Engine) -> None:
    queries = [
        "SELECT count(*) FROM scan_event WHERE consignment_id = $1",
        "SELECT * FROM consignment WHERE state = 'lost' ORDER BY booked DESC LIMIT 20",
    ]
    whole = advise(freight, queries, method="scratch", brin_min_rows=10**9)
    sizes = {r.table: r.size_bytes for r in whole.recommendations}
    assert set(sizes) == {"scan_event", "consignment"}
    budget = sizes["consignment"]  # the small partial index fits, the other does not
    advice = advise(freight, queries, method="scratch", brin_min_rows=10**9, max_size_bytes=budget)
    assert [r.table for r in advice.recommendations] == ["consignment"]
    assert sum(r.size_bytes for r in advice.recommendations) <= budget
    (left,) = advice.unserved
    assert left.sql == queries[0] and "max_size_bytes" in left.reason
