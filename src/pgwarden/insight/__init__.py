"""Check a database's health the way PgHero does: one module per area, one query each.

Each area module (:mod:`~pgwarden.insight.indexes`, :mod:`~pgwarden.insight.tables`,
:mod:`~pgwarden.insight.activity` and the others) has public functions that take a
SQLAlchemy ``Connection`` and return dataclasses, and a ``check_*`` function that turns
them into :class:`Finding` objects with a severity, the reason and the SQL that fixes
each. :func:`doctor` runs them all::

    from pgwarden.insight import check_indexes, doctor

    with engine.connect() as conn:
        for result in check_indexes(conn):
            for finding in result.findings:
                print(finding.severity, finding.what, finding.fix)
        report = doctor(conn)

:func:`doctor_server` runs them on every database of a server, and
:func:`parse_thresholds` reads thresholds given as text (``unused_indexes.min_size_bytes=0``).
"""

from __future__ import annotations

from pgwarden.insight.activity import check_activity
from pgwarden.insight.bloat import check_bloat
from pgwarden.insight.constraints import check_constraints
from pgwarden.insight.doctor import (
    CHECKS,
    DoctorReport,
    ServerReport,
    Unreachable,
    doctor,
    doctor_server,
)
from pgwarden.insight.errors import CheckSkipped
from pgwarden.insight.findings import Check, CheckResult, Finding, Severity
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
from pgwarden.insight.privileges import (
    RlsTable,
    RoleAccess,
    check_privileges,
    rls_bypass_findings,
    role_access,
)
from pgwarden.insight.replication import check_replication
from pgwarden.insight.sequences import (
    SequenceUsage,
    check_sequences,
    sequence_findings,
    sequence_usage,
    unreadable_sequences,
)
from pgwarden.insight.settings import check_settings
from pgwarden.insight.sizes import check_sizes
from pgwarden.insight.slots import check_slots
from pgwarden.insight.statements import check_statements
from pgwarden.insight.tables import check_tables
from pgwarden.insight.thresholds import parse_thresholds
from pgwarden.insight.vacuum import check_vacuum
from pgwarden.insight.wraparound import check_wraparound

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "CheckSkipped",
    "DoctorReport",
    "DuplicateIndex",
    "Finding",
    "ForeignKeyWithoutIndex",
    "InvalidIndex",
    "RlsTable",
    "RoleAccess",
    "SequenceUsage",
    "ServerReport",
    "Severity",
    "Unreachable",
    "UnusedIndex",
    "check_activity",
    "check_bloat",
    "check_constraints",
    "check_indexes",
    "check_privileges",
    "check_replication",
    "check_sequences",
    "check_settings",
    "check_sizes",
    "check_slots",
    "check_statements",
    "check_tables",
    "check_vacuum",
    "check_wraparound",
    "doctor",
    "doctor_server",
    "duplicate_index_findings",
    "duplicate_indexes",
    "foreign_key_findings",
    "foreign_keys_without_index",
    "invalid_index_findings",
    "invalid_indexes",
    "parse_thresholds",
    "rls_bypass_findings",
    "role_access",
    "sequence_findings",
    "sequence_usage",
    "unreadable_sequences",
    "unused_index_findings",
    "unused_indexes",
]
