"""Check a database's health the way PgHero does: one module per area, one query each.

Each area module (:mod:`~pgwarden.insight.indexes`, :mod:`~pgwarden.insight.sequences`)
has public functions that take a SQLAlchemy ``Connection`` and return dataclasses, and a
``check_*`` function that turns them into :class:`Finding` objects with a severity, the
reason and the SQL that fixes each::

    from pgwarden.insight import check_indexes, check_sequences

    with engine.connect() as conn:
        for result in [*check_indexes(conn), check_sequences(conn)]:
            for finding in result.findings:
                print(finding.severity, finding.what, finding.fix)
"""

from __future__ import annotations

from pgwarden.insight.findings import CheckResult, Finding, Severity
from pgwarden.insight.indexes import (
    DuplicateIndex,
    ForeignKeyWithoutIndex,
    InvalidIndex,
    UnusedIndex,
    check_indexes,
    duplicate_index_findings,
    duplicate_indexes,
    foreign_key_findings,
    foreign_keys_without_index,
    invalid_index_findings,
    invalid_indexes,
    unused_index_findings,
    unused_indexes,
)
from pgwarden.insight.sequences import (
    SequenceUsage,
    check_sequences,
    sequence_findings,
    sequence_usage,
    unreadable_sequences,
)

__all__ = [
    "CheckResult",
    "DuplicateIndex",
    "Finding",
    "ForeignKeyWithoutIndex",
    "InvalidIndex",
    "SequenceUsage",
    "Severity",
    "UnusedIndex",
    "check_indexes",
    "check_sequences",
    "duplicate_index_findings",
    "duplicate_indexes",
    "foreign_key_findings",
    "foreign_keys_without_index",
    "invalid_index_findings",
    "invalid_indexes",
    "sequence_findings",
    "sequence_usage",
    "unreadable_sequences",
    "unused_index_findings",
    "unused_indexes",
]
