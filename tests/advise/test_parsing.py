"""Reading queries: splitting SQL text, parsing what a query compares and sorts on, and
resolving it against the catalog into candidate indexes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from pgwarden.advise.candidates import IndexKey, candidates_for, covering_index, resolve
from pgwarden.advise.catalog import load_catalog
from pgwarden.advise.parsing import Condition, Expression, SortKey, UnusableQuery, parse_query
from pgwarden.advise.queries import Query, read_queries, split_queries
from pgwarden.errors import UserError


def test_split_uses_the_parser_and_keeps_semicolons_inside_strings() -> None:
    text = "SELECT ';' AS x;\n-- a comment; still a comment\nSELECT $$a;b$$ ;\n\n"
    assert split_queries(text) == ["SELECT ';' AS x", "SELECT $$a;b$$"]


def test_split_keeps_a_statement_that_does_not_parse_for_its_note() -> None:
    text = "SELECT 1; SELEC broken FROM; SELECT ';'; -- only a comment;"
    assert split_queries(text) == ["SELECT 1", "SELEC broken FROM", "SELECT ';'"]


def test_read_queries_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "slow.sql"
    path.write_text("SELECT * FROM t WHERE a = $1;\nSELECT * FROM t ORDER BY b LIMIT 5;\n")
    assert [q.sql for q in read_queries(path)] == [
        "SELECT * FROM t WHERE a = $1",
        "SELECT * FROM t ORDER BY b LIMIT 5",
    ]
    with pytest.raises(UserError, match="cannot read the queries file"):
        read_queries(tmp_path / "missing.sql")


def test_parse_finds_comparisons_joins_constants_and_order() -> None:
    parsed = parse_query(
        Query(
            "SELECT c.id FROM content AS c JOIN users u ON u.id = c.author_id"
            " WHERE c.slug = $1::varchar AND status = 'active' AND c.n > $2"
            " AND c.k IN (1, 2) AND c.tags = ANY($3) AND c.d BETWEEN $4 AND $5"
            " AND (c.x = 1 OR c.y = 2) AND lower(c.email) = $6"
            " ORDER BY c.published_at DESC, c.id LIMIT 5"
        )
    )
    (scope,) = parsed.scopes
    assert parsed.params == 6 and scope.limited
    assert scope.conditions == [
        Condition(("u", "id"), "eq", other=("c", "author_id")),
        Condition(("c", "author_id"), "eq", other=("u", "id")),
        Condition(("c", "slug"), "eq"),
        Condition(("status",), "eq", constant="'active'"),
        Condition(("c", "n"), "range"),
        Condition(("c", "k"), "eq"),
        Condition(("c", "tags"), "eq"),
        Condition(("c", "d"), "range"),
        Condition(
            ("c", "email"), "eq", expression=Expression("lower(email)", (("f", "lower", 1, 0),))
        ),
    ]  # the OR is for no single index; the expression is for an expression index
    assert scope.sort == [SortKey(("c", "published_at"), True), SortKey(("c", "id"))]


def test_parse_walks_ctes_subqueries_and_set_operations() -> None:
    parsed = parse_query(
        Query(
            "WITH recent AS (SELECT * FROM orders WHERE created_at > $1)"
            " SELECT * FROM recent r WHERE EXISTS"
            " (SELECT 1 FROM items i WHERE i.order_id = r.id)"
            " UNION ALL SELECT * FROM archive WHERE archived_at > $2"
        )
    )
    tables = [[t.name for t in scope.tables] for scope in parsed.scopes]
    assert tables == [["orders"], ["recent"], ["items"], ["archive"]]
    assert parsed.scopes[1].tables[0].virtual  # a CTE, not a table
    assert parsed.scopes[2].parent == 1


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELEC 1", 'does not parse: syntax error at or near "SELEC"'),
        ("INSERT INTO t VALUES (1)", "not a SELECT, UPDATE or DELETE"),
        ("UPDATE t SET a = 1", "UPDATE without WHERE"),
        ("SELECT 1; SELECT 2", "not one statement"),
        ("SELECT a FROM t", "no column comparison or ORDER BY that an index could serve"),
    ],
)
def test_parse_refuses_what_no_index_serves(sql: str, reason: str) -> None:
    with pytest.raises(UnusableQuery) as refused:
        parse_query(Query(sql))
    assert refused.value.reason.startswith(reason)


def test_candidates_resolve_aliases_and_unqualified_columns(shop: Engine) -> None:
    parsed = parse_query(
        Query(
            "SELECT * FROM orders o JOIN customers ON customers.id = o.customer_id"
            " WHERE region = $1 AND status = 'pending' AND o.created_at > $2"
            " ORDER BY total DESC LIMIT 5"
        )
    )
    with shop.connect() as conn:
        catalog = load_catalog(conn, [(None, "orders"), (None, "customers")])
    uses = {use.table.name: use for use in resolve(parsed, catalog)}
    assert uses["customers"].equality == [IndexKey("region")]
    assert uses["customers"].joins == ["id"]
    orders = uses["orders"]
    assert (orders.equality, orders.ranges, orders.joins) == (
        [IndexKey("status")],
        [IndexKey("created_at")],
        ["customer_id"],
    )
    assert orders.constants == {"status": "'pending'"}
    assert [k.sql for k in orders.sort] == ["total"]  # DESC alone: read the index backwards
    found = {c.definition() for c in candidates_for(uses.values())}
    assert "CREATE INDEX ON public.orders (status, created_at)" in found
    assert "CREATE INDEX ON public.orders (customer_id, status)" in found
    assert "CREATE INDEX ON public.orders (status, total)" in found
    assert "CREATE INDEX ON public.orders (created_at) WHERE status = 'pending'" in found
    assert "CREATE INDEX ON public.orders (total) WHERE status = 'pending'" in found
    # customers.id leads the primary key: that candidate is already served
    (by_id,) = [c for c in candidates_for(uses.values()) if c.columns == ["id"]]
    assert covering_index(by_id, catalog.tables[by_id.table_oid]) is not None


def test_ambiguous_and_unknown_columns_make_no_candidate(shop: Engine) -> None:
    parsed = parse_query(
        Query("SELECT * FROM orders, customers WHERE id = $1 AND nothing = $2 AND region = $3")
    )
    with shop.connect() as conn:
        catalog = load_catalog(conn, [(None, "orders"), (None, "customers")])
    uses = resolve(parsed, catalog)
    assert [(u.table.name, u.equality) for u in uses] == [("customers", [IndexKey("region")])]


def test_parse_finds_expressions_and_search_operators() -> None:
    parsed = parse_query(
        Query(
            "SELECT * FROM t AS s WHERE date_trunc('day', s.at) >= $1 AND (s.body ->> 'k') = 'x'"
            " AND s.tags && $2 AND to_tsvector('english', s.note) @@ to_tsquery($3)"
            " AND s.during @> now() AND random() > 0.5 AND lower(s.a) = lower(s.b)"
            " ORDER BY lower(s.email) DESC LIMIT 3"
        )
    )
    (scope,) = parsed.scopes
    found = [
        (c.column, c.kind, c.expression.sql if c.expression else None, c.operator)
        for c in scope.conditions
    ]
    assert found == [
        (("s", "at"), "range", "date_trunc('day', at)", None),
        (("s", "body"), "eq", "body ->> 'k'", None),
        (("s", "tags"), "search", None, "&&"),
        (("s", "note"), "search", "to_tsvector('english', note)", "@@"),
        (("s", "during"), "search", None, "@>"),
    ]  # random() reads no column; lower(a) = lower(b) compares two columns
    (sort,) = scope.sort
    assert (sort.column, sort.descending, sort.expression and sort.expression.sql) == (
        ("s", "email"),
        True,
        "lower(email)",
    )
