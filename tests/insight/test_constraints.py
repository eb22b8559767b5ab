"""Constraints added NOT VALID over rows that break them, then fixed and validated."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.insight.constraints import (
    check_constraints,
    invalid_constraint_findings,
    invalid_constraints,
)


def rows(engine: Engine, query: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(query))]


def server_version(engine: Engine) -> tuple[int, ...]:
    with engine.connect() as conn:
        return conn.dialect.server_version_info or (0,)


def test_not_valid_check_is_reported_until_fixed_and_validated(run, pg_engine: Engine) -> None:
    run(
        "CREATE TABLE product (id int PRIMARY KEY, price numeric)",
        "INSERT INTO product VALUES (1, 10), (2, -5), (3, NULL)",
        "ALTER TABLE product ADD CONSTRAINT price_positive CHECK (price > 0) NOT VALID",
    )
    with pg_engine.connect() as conn:
        [constraint] = invalid_constraints(conn)

    assert (constraint.schema, constraint.table, constraint.constraint) == (
        "public",
        "product",
        "price_positive",
    )
    assert (constraint.kind, constraint.on_domain) == ("check", False)
    assert constraint.definition == "CHECK ((price > (0)::numeric)) NOT VALID"
    assert constraint.violations
    assert rows(pg_engine, constraint.violations) == [(2, -5)]  # NULL passes a check

    [finding] = invalid_constraint_findings([constraint])
    assert finding.check == "invalid_constraints"
    assert finding.severity == "warning"
    assert finding.subject == "public.product"
    assert finding.fix == "ALTER TABLE public.product VALIDATE CONSTRAINT price_positive;"
    assert "SHARE UPDATE EXCLUSIVE" in finding.why
    assert finding.details["violations"] == constraint.violations

    with pytest.raises(sa.exc.IntegrityError, match="violated by some row"):
        run(finding.fix)
    run("UPDATE product SET price = 5 WHERE price <= 0", finding.fix)
    with pg_engine.connect() as conn:
        assert invalid_constraints(conn) == []


def test_not_valid_foreign_keys_and_their_orphans(run, pg_engine: Engine) -> None:
    run(
        "CREATE TABLE customer (id int PRIMARY KEY)",
        "INSERT INTO customer VALUES (1)",
        "CREATE TABLE purchase (id int, customer_id int)",
        "INSERT INTO purchase VALUES (10, 1), (11, 2), (12, NULL)",
        "ALTER TABLE purchase ADD CONSTRAINT purchase_customer "
        "FOREIGN KEY (customer_id) REFERENCES customer NOT VALID",
        "CREATE TABLE region (country text, code text, PRIMARY KEY (country, code))",
        "INSERT INTO region VALUES ('nl', 'nh')",
        "CREATE TABLE office (id int, country text, code text)",
        "INSERT INTO office VALUES (1, 'nl', 'nh'), (2, 'nl', NULL), (3, NULL, NULL), "
        "(4, 'de', 'be')",
        "ALTER TABLE office ADD CONSTRAINT office_region FOREIGN KEY (country, code) "
        "REFERENCES region MATCH FULL NOT VALID",
    )
    with pg_engine.connect() as conn:
        office, purchase = invalid_constraints(conn)

    assert (purchase.kind, purchase.columns, purchase.match_full) == (
        "foreign key",
        ["customer_id"],
        False,
    )
    assert (purchase.referenced_schema, purchase.referenced_table) == ("public", "customer")
    assert purchase.referenced_columns == ["id"]
    assert purchase.violations
    assert rows(pg_engine, purchase.violations) == [(11, 2)]  # a NULL key references nothing
    assert (office.columns, office.referenced_columns, office.match_full) == (
        ["country", "code"],
        ["country", "code"],
        True,
    )
    assert office.violations
    # MATCH FULL: a partly null key breaks it, an all-null one does not.
    assert sorted(rows(pg_engine, office.violations)) == [(2, "nl", None), (4, "de", "be")]

    findings = {f.details["constraint"]: f for f in invalid_constraint_findings([purchase])}
    finding = findings["purchase_customer"]
    assert "foreign key constraint purchase_customer" in finding.what
    assert "ROW SHARE" in finding.why
    assert finding.fix
    run("DELETE FROM purchase WHERE id = 11", finding.fix)
    with pg_engine.connect() as conn:
        assert [c.constraint for c in invalid_constraints(conn)] == ["office_region"]


def test_quoted_names_in_the_fix(run, pg_engine: Engine) -> None:
    run(
        'CREATE TABLE "Order Lines" ("Qty" int)',
        'ALTER TABLE "Order Lines" ADD CONSTRAINT "Qty Positive" CHECK ("Qty" > 0) NOT VALID',
    )
    with pg_engine.connect() as conn:
        result = check_constraints(conn)

    [finding] = result.findings
    assert finding.fix == 'ALTER TABLE public."Order Lines" VALIDATE CONSTRAINT "Qty Positive";'
    assert finding.details["violations"] == (
        'SELECT c.* FROM public."Order Lines" AS c WHERE NOT (("Qty" > 0));'
    )
    assert rows(pg_engine, finding.details["violations"]) == []
    run(finding.fix)
    with pg_engine.connect() as conn:
        assert check_constraints(conn).findings == []


def test_an_inherited_constraint_is_reported_once_on_its_parent(run, pg_engine: Engine) -> None:
    run(
        "CREATE TABLE event (id int, at date)",
        "CREATE TABLE event_2024 () INHERITS (event)",
        "ALTER TABLE event ADD CONSTRAINT event_dated CHECK (at IS NOT NULL) NOT VALID",
    )
    with pg_engine.connect() as conn:
        [constraint] = invalid_constraints(conn)
        children = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_constraint "
                "WHERE conname = 'event_dated' AND NOT convalidated"
            )
        ).scalar_one()

    assert children == 2
    assert (constraint.table, constraint.constraint) == ("event", "event_dated")


def test_domain_constraint(run, pg_engine: Engine) -> None:
    run(
        "CREATE DOMAIN quantity AS int",
        "CREATE TABLE stock (amount quantity)",
        "INSERT INTO stock VALUES (-1)",
        "ALTER DOMAIN quantity ADD CONSTRAINT quantity_positive CHECK (VALUE > 0) NOT VALID",
    )
    with pg_engine.connect() as conn:
        [constraint] = invalid_constraints(conn)

    assert (constraint.table, constraint.on_domain, constraint.violations) == (
        "quantity",
        True,
        None,
    )
    [finding] = invalid_constraint_findings([constraint])
    assert finding.fix == "ALTER DOMAIN public.quantity VALIDATE CONSTRAINT quantity_positive;"
    assert "on domain public.quantity" in finding.what
    run("UPDATE stock SET amount = 1", finding.fix)
    with pg_engine.connect() as conn:
        assert invalid_constraints(conn) == []


def test_not_null_not_valid_and_not_enforced_on_postgresql_18(run, pg_engine: Engine) -> None:
    if server_version(pg_engine) < (18,):
        pytest.skip("NOT NULL … NOT VALID and NOT ENFORCED need PostgreSQL 18")
    run(
        "CREATE TABLE account (id int, email text, age int)",
        "INSERT INTO account VALUES (1, NULL, 5)",
        "ALTER TABLE account ADD CONSTRAINT email_required NOT NULL email NOT VALID",
        # Not enforced on purpose: never validated, and nothing to report.
        "ALTER TABLE account ADD CONSTRAINT adult CHECK (age >= 18) NOT ENFORCED",
    )
    with pg_engine.connect() as conn:
        [constraint] = invalid_constraints(conn)

    assert (constraint.constraint, constraint.kind) == ("email_required", "not null")
    assert constraint.violations == "SELECT c.* FROM public.account AS c WHERE c.email IS NULL;"
    assert rows(pg_engine, constraint.violations) == [(1, None, 5)]


def test_constraints_as_a_pg_monitor_role(run, pg_engine: Engine, monitor_role: str) -> None:
    run(
        "CREATE TABLE product (id int, price numeric)",
        "ALTER TABLE product ADD CONSTRAINT price_positive CHECK (price > 0) NOT VALID",
    )
    with pg_engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL ROLE {monitor_role}"))
        result = check_constraints(conn)

    assert result.skipped is None
    assert [f.fix for f in result.findings] == [
        "ALTER TABLE public.product VALIDATE CONSTRAINT price_positive;"
    ]
