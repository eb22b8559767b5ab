"""The rules of the migration linter: what each looks for, its severity and its safe form.

A rule's ``cost`` says how the live database weighs it: ``scan`` work grows with the
table (a rewrite, an index build, a validating scan), so an empty table makes it cheap
and a large or busy one dangerous; ``lock`` is a brief lock whose danger is the queue
behind it; ``breaks`` breaks the code running against the table; ``fails`` makes the
migration fail; ``style`` is a schema preference. Rules pgwarden checks itself and
squawk's are one list: a squawk rule is a pgwarden rule of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pgwarden.schema.lint.findings import Severity

__all__ = ["RULES", "Cost", "Rule", "rule"]

Cost = Literal["scan", "lock", "breaks", "fails", "style"]

_CONCURRENT_ALEMBIC = (
    "In Alembic: with op.get_context().autocommit_block(): "
    "op.create_index(..., postgresql_concurrently=True)."
)


@dataclass(frozen=True)
class Rule:
    """One rule: its name, what it finds, how bad by default, and the safe rewrite."""

    name: str
    summary: str
    severity: Severity
    cost: Cost
    fix: str
    own: bool = True  # checked by pgwarden itself, not only through squawk


_ALL = [
    Rule("require-concurrent-index-creation", "CREATE INDEX without CONCURRENTLY", "medium",
         "scan", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ... outside a transaction: it blocks "
         "no writes. " + _CONCURRENT_ALEMBIC),
    Rule("require-concurrent-index-deletion", "DROP INDEX without CONCURRENTLY", "medium",
         "lock", "DROP INDEX CONCURRENTLY IF EXISTS ... outside a transaction."),
    Rule("ban-concurrent-index-creation-in-transaction",
         "a CONCURRENTLY operation inside a transaction block", "high", "fails",
         "Run it outside a transaction: in Alembic inside "
         "op.get_context().autocommit_block(), in SQL after COMMIT."),
    Rule("require-concurrent-reindex", "REINDEX without CONCURRENTLY", "medium", "scan",
         "REINDEX ... CONCURRENTLY outside a transaction."),
    Rule("require-concurrent-partition-detach", "DETACH PARTITION without CONCURRENTLY",
         "medium", "lock", "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY, outside a "
         "transaction."),
    Rule("constraint-missing-not-valid", "a CHECK constraint added (or validated) in one step",
         "medium", "scan", "ALTER TABLE t ADD CONSTRAINT c CHECK (...) NOT VALID; then, in a "
         "later transaction, ALTER TABLE t VALIDATE CONSTRAINT c (it blocks no writes)."),
    Rule("adding-foreign-key-constraint", "a foreign key added without NOT VALID", "medium",
         "scan", "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (...) REFERENCES u (...) NOT VALID;"
         " then, in a later transaction, ALTER TABLE t VALIDATE CONSTRAINT fk."),
    Rule("adding-not-nullable-field", "SET NOT NULL on a table that has rows", "medium",
         "scan", "ALTER TABLE t ADD CONSTRAINT t_c_not_null CHECK (c IS NOT NULL) NOT VALID; "
         "in a later transaction VALIDATE CONSTRAINT t_c_not_null; then ALTER COLUMN c SET NOT "
         "NULL (no scan: the valid CHECK proves it) and DROP CONSTRAINT t_c_not_null."),
    Rule("adding-required-field", "ADD COLUMN ... NOT NULL without a DEFAULT", "high", "fails",
         "Add the column with a DEFAULT (a constant adds no rewrite), or nullable, backfill it "
         "in batches, then make it NOT NULL through a validated CHECK."),
    Rule("adding-field-with-default", "ADD COLUMN with a volatile DEFAULT or a stored "
         "generated column", "high", "scan",
         "Add the column without the default, ALTER COLUMN ... SET DEFAULT for new rows, "
         "and backfill existing rows in batches."),
    Rule("changing-column-type", "ALTER COLUMN ... TYPE that rewrites the table", "high",
         "scan", "Add a column of the new type, write to both, backfill in batches, switch "
         "reads, then drop the old column. varchar(n) -> varchar(m > n), varchar -> text, "
         "numeric(p, s) -> numeric(q > p, s) and cidr -> inet rewrite nothing."),
    Rule("renaming-column", "a column renamed under running code", "high", "breaks",
         "Add the new column, write to both, backfill, move reads to it, deploy, then drop "
         "the old one (or keep the old name and map it in the model)."),
    Rule("renaming-table", "a table renamed under running code", "high", "breaks",
         "Create the new table (or rename and leave a view under the old name), move the "
         "code over in a deploy, then drop the old name."),
    Rule("ban-drop-column", "a column dropped while code may still read it", "high", "breaks",
         "First deploy code that no longer uses the column (SQLAlchemy: remove it from the "
         "model), then drop it in a later migration."),
    Rule("ban-drop-table", "a table dropped while code may still read it", "high", "breaks",
         "First deploy code that no longer uses the table, then drop it in a later migration."),
    Rule("require-lock-timeout", "a lock-taking statement with no lock_timeout set", "medium",
         "lock", "SET lock_timeout = '2s'; before it (SET LOCAL inside a transaction), and "
         "retry on timeout: waiting for the lock queues every query on the table behind it."),
    Rule("several-access-exclusive-locks",
         "one transaction holding ACCESS EXCLUSIVE locks on several tables", "medium", "lock",
         "Give each table its own transaction (its own revision, or autocommit_block in "
         "Alembic): each lock is then held briefly, and no deadlock with the application."),
    Rule("adding-serial-or-identity", "a serial or identity column added to a table",
         "high", "scan", "Add a nullable bigint column, attach a sequence as its default for "
         "new rows, backfill existing rows in batches, then make it NOT NULL through a "
         "validated CHECK."),
    Rule("adding-serial-primary-key-field", "a primary key added without USING INDEX",
         "high", "scan", "CREATE UNIQUE INDEX CONCURRENTLY t_pkey_idx ON t (id); then ALTER "
         "TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_pkey_idx."),
    Rule("disallowed-unique-constraint", "a UNIQUE constraint added without USING INDEX",
         "high", "scan", "CREATE UNIQUE INDEX CONCURRENTLY t_c_key ON t (c); then ALTER TABLE t "
         "ADD CONSTRAINT t_c_key UNIQUE USING INDEX t_c_key."),
    Rule("unbatched-backfill", "UPDATE or DELETE of a whole table in one statement",
         "medium", "scan", "Backfill in batches of a few thousand rows (UPDATE ... WHERE id "
         "BETWEEN :lo AND :hi), each in its own transaction, outside the migration that changes "
         "the schema."),
    Rule("syntax-error", "SQL that does not parse", "high", "fails", "Fix the SQL."),
    # Rules squawk checks and pgwarden reports as squawk words them.
    Rule("require-statement-timeout", "no statement_timeout set", "low", "lock",
         "SET statement_timeout = '5min'; before long statements.", own=False),
    Rule("ban-drop-database", "DROP DATABASE in a migration", "high", "breaks",
         "Drop databases by hand, never in a migration.", own=False),
    Rule("ban-drop-not-null", "DROP NOT NULL may break code that relies on it", "low",
         "breaks", "Deploy code that handles NULL first.", own=False),
    Rule("ban-truncate-cascade", "TRUNCATE ... CASCADE", "high", "breaks",
         "Truncate the tables you mean, by name.", own=False),
    Rule("ban-create-domain-with-constraint", "a domain with a constraint", "medium", "scan",
         "Put the constraint on the table's columns.", own=False),
    Rule("ban-alter-domain-with-add-constraint", "a constraint added to a domain", "medium",
         "scan", "Put the constraint on the table's columns.", own=False),
    Rule("ban-uncommitted-transaction", "BEGIN without COMMIT", "high", "fails",
         "End the transaction with COMMIT.", own=False),
    Rule("transaction-nesting", "BEGIN or COMMIT inside a migration's own transaction",
         "medium", "fails", "Leave transactions to the migration tool.", own=False),
    Rule("require-enum-value-ordering", "ALTER TYPE ... ADD VALUE without BEFORE/AFTER",
         "low", "style", "Say where the value goes.", own=False),
    Rule("ban-duplicate-column-assignments", "a column assigned twice", "medium", "fails",
         "Assign each column once.", own=False),
    Rule("prefer-robust-stmts", "a statement that cannot be run again after a failure",
         "low", "style", "Use IF [NOT] EXISTS so a failed migration can be rerun.", own=False),
    Rule("prefer-bigint-over-int", "an int (32-bit) column", "low", "style",
         "Use bigint: changing it later rewrites the table.", own=False),
    Rule("prefer-bigint-over-smallint", "a smallint column", "low", "style", "Use bigint.",
         own=False),
    Rule("prefer-identity", "a serial column", "low", "style",
         "Use GENERATED BY DEFAULT AS IDENTITY.", own=False),
    Rule("prefer-text-field", "a varchar(n) column", "low", "style",
         "Use text with a CHECK (length(c) <= n): changing a CHECK takes no rewrite.",
         own=False),
    Rule("prefer-timestamp-tz", "a timestamp without time zone", "low", "style",
         "Use timestamptz.", own=False),
    Rule("ban-char-field", "a char(n) column", "low", "style", "Use text.", own=False),
    Rule("identifier-too-long", "an identifier PostgreSQL will truncate", "medium", "fails",
         "Keep names within 63 bytes.", own=False),
        ]  # fmt: skip

#: Every rule by name.
RULES: dict[str, Rule] = {r.name: r for r in _ALL}
# squawk's other names for the same rules.
_ALIASES = {
    "prefer-timestamptz": "prefer-timestamp-tz",
    "require-timeout-settings": "require-lock-timeout",
}


def rule(name: str) -> Rule:
    """Return the rule named ``name``; a squawk rule pgwarden does not list yet is generic."""
    name = _ALIASES.get(name, name)
    known = RULES.get(name)
    if known is not None:
        return known
    return Rule(name, "a squawk rule", "medium", "lock", "See squawk's documentation of it.",
                own=False)  # fmt: skip
