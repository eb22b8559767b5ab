"""Lint database migrations before they run: the rules of the field, weighed live.

``lint_sql(sql)`` and ``lint_revisions(script_location)`` return :class:`LintFinding`
objects: the rule, how severe, why, and the safe rewrite. squawk's rules run alongside
pgwarden's own (``pip install 'pgwarden[lint]'``); given a connection to the database
the migration will run on, each finding is weighed against its table there: an index
on an empty table costs nothing, a rewrite of a table of ten million rows taking a
thousand writes a second is an outage, and a lock held by a session now is named.
"""

from __future__ import annotations

from pgwarden.schema.lint.config import LintConfig, load_lint_config
from pgwarden.schema.lint.errors import LintTargetInvalid, SquawkFailed
from pgwarden.schema.lint.findings import (
    SEVERITIES,
    ConflictingSession,
    LintFinding,
    Severity,
    TableFigures,
    at_least,
)
from pgwarden.schema.lint.linter import lint_sql
from pgwarden.schema.lint.revisions import lint_files, lint_revisions
from pgwarden.schema.lint.rules import RULES, Rule
from pgwarden.schema.lint.squawk import squawk_binary, squawk_version

__all__ = [
    "RULES",
    "SEVERITIES",
    "ConflictingSession",
    "LintConfig",
    "LintFinding",
    "LintTargetInvalid",
    "Rule",
    "Severity",
    "SquawkFailed",
    "TableFigures",
    "at_least",
    "lint_files",
    "lint_revisions",
    "lint_sql",
    "load_lint_config",
    "squawk_binary",
    "squawk_version",
]
