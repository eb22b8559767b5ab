"""Every lint rule: a migration it flags, and the safe form of it that passes."""

from __future__ import annotations

import pytest

from pgwarden.schema.lint import RULES, LintConfig, LintFinding, lint_sql
from pgwarden.schema.lint._types import ColumnType, rewrites

OWN = LintConfig(squawk=False)
# (rule, a migration it flags, the same change written safely)
OWN_EXAMPLES = [
    ("require-concurrent-index-creation", "CREATE INDEX ix ON t (a);",
     "CREATE INDEX CONCURRENTLY ix ON t (a);"),
    ("require-concurrent-index-deletion", "DROP INDEX ix;", "DROP INDEX CONCURRENTLY ix;"),
    ("ban-concurrent-index-creation-in-transaction",
     "BEGIN;\nCREATE INDEX CONCURRENTLY ix ON t (a);\nCOMMIT;",
     "CREATE INDEX CONCURRENTLY ix ON t (a);"),
    ("require-concurrent-reindex", "REINDEX INDEX ix;", "REINDEX INDEX CONCURRENTLY ix;"),
    ("require-concurrent-partition-detach", "ALTER TABLE t DETACH PARTITION p;",
     "ALTER TABLE t DETACH PARTITION p CONCURRENTLY;"),
    ("constraint-missing-not-valid", "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);",
     "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\n"
     "ALTER TABLE t VALIDATE CONSTRAINT c;"),
    ("adding-foreign-key-constraint",
     "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (u_id) REFERENCES u (id);",
     "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (u_id) REFERENCES u (id) NOT VALID;"),
    ("adding-not-nullable-field", "ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
     "ALTER TABLE t ADD CONSTRAINT a_nn CHECK (a IS NOT NULL) NOT VALID;\n"
     "COMMIT;\nALTER TABLE t VALIDATE CONSTRAINT a_nn;\n"
     "ALTER TABLE t ALTER COLUMN a SET NOT NULL;\nALTER TABLE t DROP CONSTRAINT a_nn;"),
    ("adding-required-field", "ALTER TABLE t ADD COLUMN b bigint NOT NULL;",
     "ALTER TABLE t ADD COLUMN b bigint NOT NULL DEFAULT 0;"),
    ("adding-field-with-default", "ALTER TABLE t ADD COLUMN b uuid DEFAULT gen_random_uuid();",
     "ALTER TABLE t ADD COLUMN b timestamptz DEFAULT now();"),
    ("changing-column-type", "ALTER TABLE t ALTER COLUMN a TYPE bigint;",
     "CREATE TABLE t (a varchar(10));\nALTER TABLE t ALTER COLUMN a TYPE text;"),
    ("renaming-column", "ALTER TABLE t RENAME COLUMN a TO b;",
     "CREATE TABLE t (a text);\nALTER TABLE t RENAME COLUMN a TO b;"),
    ("renaming-table", "ALTER TABLE t RENAME TO t2;",
     "CREATE TABLE t (a text);\nALTER TABLE t RENAME TO t2;"),
    ("ban-drop-column", "ALTER TABLE t DROP COLUMN a;",
     "CREATE TABLE t (a text, b text);\nALTER TABLE t DROP COLUMN a;"),
    ("ban-drop-table", "DROP TABLE t;", "CREATE TABLE t (a text);\nDROP TABLE t;"),
    ("require-lock-timeout", "ALTER TABLE t ADD COLUMN b text;",
     "SET lock_timeout = '2s';\nALTER TABLE t ADD COLUMN b text;"),
    ("several-access-exclusive-locks",
     "BEGIN;\nALTER TABLE a ADD COLUMN x text;\nALTER TABLE b ADD COLUMN x text;\nCOMMIT;",
     "BEGIN;\nALTER TABLE a ADD COLUMN x text;\nCOMMIT;\n"
     "BEGIN;\nALTER TABLE b ADD COLUMN x text;\nCOMMIT;"),
    ("adding-serial-or-identity", "ALTER TABLE t ADD COLUMN n bigserial;",
     "ALTER TABLE t ADD COLUMN n bigint;"),
    ("adding-serial-primary-key-field", "ALTER TABLE t ADD PRIMARY KEY (id);",
     "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_pkey_idx;"),
    ("disallowed-unique-constraint", "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a);",
     "ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX u_idx;"),
    ("unbatched-backfill", "UPDATE orders SET region = 'eu';",
     "UPDATE orders SET region = 'eu' WHERE id BETWEEN 1 AND 5000;"),
    ("syntax-error", "CREATE INDEX ON ;", "SELECT 1;"),
]  # fmt: skip
# Rules squawk checks, reported through pgwarden under the same names.
SQUAWK_EXAMPLES = [
    ("require-statement-timeout", "ALTER TABLE t ADD COLUMN b text;",
     "SET lock_timeout = '1s';\nSET statement_timeout = '5s';\nALTER TABLE t ADD COLUMN b text;"),
    ("ban-drop-database", "DROP DATABASE d;", "SELECT 1;"),
    ("ban-drop-not-null", "ALTER TABLE t ALTER COLUMN a DROP NOT NULL;",
     "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1;"),
    ("ban-truncate-cascade", "TRUNCATE t CASCADE;", "TRUNCATE t;"),
    ("ban-create-domain-with-constraint", "CREATE DOMAIN d AS int CHECK (VALUE > 0);",
     "CREATE DOMAIN d AS int;"),
    ("ban-alter-domain-with-add-constraint",
     "ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0);", "ALTER DOMAIN d SET DEFAULT 1;"),
    ("ban-uncommitted-transaction", "BEGIN;\nSELECT 1;", "BEGIN;\nSELECT 1;\nCOMMIT;"),
    ("transaction-nesting", "BEGIN;\nBEGIN;\nSELECT 1;\nCOMMIT;\nCOMMIT;",
     "BEGIN;\nSELECT 1;\nCOMMIT;"),
    ("require-enum-value-ordering", "ALTER TYPE e ADD VALUE 'x';",
     "ALTER TYPE e ADD VALUE 'x' AFTER 'w';"),
    ("ban-duplicate-column-assignments", "UPDATE t SET a = 1, a = 2;", "UPDATE t SET a = 1;"),
    ("prefer-robust-stmts", "CREATE INDEX CONCURRENTLY ix ON t (a);",
     "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix ON t (a);"),
    ("prefer-bigint-over-int", "CREATE TABLE t (a int);", "CREATE TABLE t (a bigint);"),
    ("prefer-bigint-over-smallint", "CREATE TABLE t (a smallint);", "CREATE TABLE t (a bigint);"),
    ("prefer-identity", "CREATE TABLE t (id bigserial);",
     "CREATE TABLE t (id bigint GENERATED BY DEFAULT AS IDENTITY);"),
    ("prefer-text-field", "CREATE TABLE t (a varchar(10));", "CREATE TABLE t (a text);"),
    ("prefer-timestamp-tz", "CREATE TABLE t (a timestamp);", "CREATE TABLE t (a timestamptz);"),
    ("ban-char-field", "CREATE TABLE t (a char(10));", "CREATE TABLE t (a text);"),
    ("identifier-too-long", "CREATE TABLE " + "a" * 70 + " (b text);", "CREATE TABLE t (b text);"),
]  # fmt: skip


def flagged(findings: list[LintFinding], rule: str) -> list[LintFinding]:
    """Return the findings of ``rule`` that are more than a note that all is well."""
    return [f for f in findings if f.rule == rule and f.severity != "info"]


def test_every_rule_has_examples() -> None:
    covered = {rule for rule, _, _ in OWN_EXAMPLES + SQUAWK_EXAMPLES}
    assert covered == set(RULES)
    assert {rule for rule, _, _ in OWN_EXAMPLES} == {n for n, r in RULES.items() if r.own}


@pytest.mark.parametrize(("rule", "unsafe", "safe"), OWN_EXAMPLES, ids=[e[0] for e in OWN_EXAMPLES])
def test_own_rule_flags_the_unsafe_form_and_passes_the_safe_one(
    rule: str, unsafe: str, safe: str
) -> None:
    found = flagged(lint_sql(unsafe, config=OWN), rule)
    assert found, f"{rule} missed: {unsafe}"
    assert found[0].fix and found[0].message
    assert found[0].severity == RULES[rule].severity
    assert not flagged(lint_sql(safe, config=OWN), rule)
    if found[0].fix != RULES[rule].fix:  # the statement's own safe SQL: it passes the rule
        assert not flagged(lint_sql(found[0].fix, config=OWN), rule), found[0].fix


@pytest.mark.parametrize(
    ("rule", "unsafe", "safe"), SQUAWK_EXAMPLES, ids=[e[0] for e in SQUAWK_EXAMPLES]
)
def test_squawk_rule_flags_the_unsafe_form_and_passes_the_safe_one(
    rule: str, unsafe: str, safe: str
) -> None:
    found = flagged(lint_sql(unsafe), rule)
    assert found and found[0].sources == ("squawk",) and found[0].fix == RULES[rule].fix
    assert not flagged(lint_sql(safe), rule)


def test_a_finding_names_its_place_and_statement() -> None:
    sql = "SET lock_timeout = '1s';\n\n  CREATE INDEX ix ON orders (customer_id);\n"
    (finding,) = lint_sql(sql, config=OWN, file="0007.sql")
    assert (finding.file, finding.line, finding.column) == ("0007.sql", 3, 3)
    assert finding.statement == "CREATE INDEX ix ON orders (customer_id)"
    assert finding.subject == "orders" and "CONCURRENTLY" in finding.fix


def test_work_on_a_table_created_in_the_same_migration_costs_nothing() -> None:
    sql = (
        "CREATE TABLE events (id bigint, at timestamptz);\n"
        "CREATE INDEX ix_events_at ON events (at);\n"
        "ALTER TABLE events ADD CONSTRAINT c CHECK (id > 0);\n"
        "ALTER TABLE events ALTER COLUMN at SET NOT NULL;\n"
    )
    findings = lint_sql(sql, config=OWN)
    assert [f.rule for f in findings] == [
        "require-concurrent-index-creation",
        "constraint-missing-not-valid",
        "adding-not-nullable-field",
    ]
    assert all(f.severity == "info" for f in findings)
    assert all("created earlier in this migration" in f.message for f in findings)


def test_validate_in_the_transaction_that_added_not_valid_is_flagged() -> None:
    sql = (
        "BEGIN;\nSET LOCAL lock_timeout = '1s';\n"
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;\n"
        "ALTER TABLE t VALIDATE CONSTRAINT c;\nCOMMIT;"
    )
    (finding,) = lint_sql(sql, config=OWN)
    assert finding.rule == "constraint-missing-not-valid" and finding.line == 4


def test_lock_timeout_set_local_ends_with_its_transaction() -> None:
    sql = (
        "BEGIN;\nSET LOCAL lock_timeout = '1s';\nALTER TABLE a ADD COLUMN x text;\nCOMMIT;\n"
        "ALTER TABLE b ADD COLUMN x text;"
    )
    (finding,) = lint_sql(sql, config=OWN)
    assert (finding.rule, finding.line, finding.subject) == ("require-lock-timeout", 5, "b")


@pytest.mark.parametrize(
    ("old", "new", "rewrite"),
    [
        (ColumnType("varchar", (10,)), ColumnType("varchar", (20,)), False),
        (ColumnType("varchar", (20,)), ColumnType("varchar", (10,)), True),
        (ColumnType("varchar", (20,)), ColumnType("varchar"), False),
        (ColumnType("varchar", (20,)), ColumnType("text"), False),
        (ColumnType("text"), ColumnType("varchar"), False),
        (ColumnType("text"), ColumnType("varchar", (5,)), True),
        (ColumnType("numeric", (10, 2)), ColumnType("numeric", (12, 2)), False),
        (ColumnType("numeric", (10, 2)), ColumnType("numeric", (12, 3)), True),
        (ColumnType("numeric", (10, 2)), ColumnType("numeric"), False),
        (ColumnType("numeric"), ColumnType("numeric", (10, 2)), True),
        (ColumnType("cidr"), ColumnType("inet"), False),
        (ColumnType("int4"), ColumnType("int8"), True),
        (ColumnType("bpchar", (5,)), ColumnType("bpchar", (10,)), True),
        (ColumnType("timestamp", (3,)), ColumnType("timestamp", (6,)), False),
        (ColumnType("timestamp"), ColumnType("timestamptz"), True),
        (ColumnType("text", array=True), ColumnType("text"), True),
    ],
)
def test_which_type_changes_rewrite(old: ColumnType, new: ColumnType, rewrite: bool) -> None:
    assert rewrites(old, new)[0] is rewrite
    assert rewrites(ColumnType("timestamp"), ColumnType("timestamptz"), utc=True)[0] is False
