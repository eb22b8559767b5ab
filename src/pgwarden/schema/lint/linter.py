"""Lint a migration's SQL: pgwarden's rules and squawk's, merged, ignored, weighed live."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.engine import Connection

from pgwarden.schema.lint._checks import check_script
from pgwarden.schema.lint._fixes import concrete_fix
from pgwarden.schema.lint._model import Hit, TableRef, _name
from pgwarden.schema.lint._script import IGNORE_ALL, Script, Statement, parse_script
from pgwarden.schema.lint.config import LintConfig
from pgwarden.schema.lint.findings import LintFinding, Severity
from pgwarden.schema.lint.live import LiveCatalog, table_figures, weigh
from pgwarden.schema.lint.rules import rule
from pgwarden.schema.lint.squawk import SquawkViolation, run_squawk
from pgwarden.urls import redact_text

__all__ = ["Origin", "lint_script", "lint_sql"]

_SHOWN = 300  # characters of a statement kept in a finding


@dataclass(frozen=True)
class Origin:
    """Where SQL came from: a file, and for a revision the place of each statement."""

    file: str | None = None
    revision: str | None = None
    # For a revision: the line of the op call that wrote the SQL at an offset, and the
    # rules its comments ignore.
    place: Callable[[int], tuple[int, frozenset[str]]] | None = None
    ignores: frozenset[str] = frozenset()


def lint_sql(
    sql: str,
    *,
    conn: Connection | None = None,
    config: LintConfig | None = None,
    file: str | Path | None = None,
) -> list[LintFinding]:
    """Return the findings in a migration's SQL, worst first within each place.

    ``conn``, when given, is the database the migration will run on: each finding is
    weighed against its table there (rows, size, writes per second, locks held now);
    nothing is written. ``config`` defaults to :class:`LintConfig` () — no project file is
    read here (:func:`load_lint_config` does that). squawk's rules run too unless
    ``config.squawk`` is false; a missing squawk raises :class:`~pgwarden.errors.NotEnabled`.
    """
    origin = Origin(file=None if file is None else str(file))
    return lint_script(sql, origin, conn=conn, config=config or LintConfig())


def lint_script(
    sql: str, origin: Origin, *, conn: Connection | None, config: LintConfig
) -> list[LintFinding]:
    """Lint ``sql`` whose statements come from ``origin`` (a file or an Alembic revision)."""
    script = parse_script(sql, assume_in_transaction=config.assume_in_transaction)
    catalog = LiveCatalog(conn) if conn is not None else None
    hits, locks = check_script(script, catalog) if script.error is None else ([], {})
    drafts: dict[tuple[int, str], _Draft] = {}
    for hit in hits:
        drafts.setdefault(
            (hit.statement.start, hit.rule),
            _Draft(
                _from_hit(hit, origin, script),
                hit.statement.start,
                hit.table,
                hit.lock,
                hit.cleared,
            ),
        )
    if script.error is not None:
        message, line, column = script.error
        if origin.place is not None:  # a revision: the op call that wrote the bad SQL
            line, column, _ = _place(origin, script, _offset(sql, line - 1, column - 1))
        found = _finding(
            "syntax-error",
            f"the SQL does not parse: {message}.",
            origin,
            script,
            None,
            line,
            column,
            None,
        )
        drafts[(0, "syntax-error")] = _Draft(found, -1, None, None)
    if config.squawk:
        version = _server_version(conn) if conn is not None else None
        violations = run_squawk(
            sql,
            filename=Path(origin.file or "migration.sql").name,
            pg_version=version,
            assume_in_transaction=config.assume_in_transaction,
        )
        for violation in violations:
            _merge(drafts, violation, origin, script, locks)
    kept = [
        replace(d, finding=_configured(d.finding, config))
        for d in drafts.values()
        if not _ignored(d, script, origin, config)
    ]
    findings = [d.finding for d in kept]
    if conn is not None:
        # The reads take ACCESS SHARE locks: end the transaction they opened, if they did,
        # so that no lock of the linter's is left for the migration to wait behind.
        opened = not conn.in_transaction()
        try:
            findings = _weighed(kept, conn, config, locks)
        finally:
            if opened and conn.in_transaction():
                conn.rollback()
    return sorted(findings, key=lambda f: (f.file or "", f.line, f.column, f.rule))


@dataclass(frozen=True)
class _Draft:
    finding: LintFinding
    start: int  # of its statement; -1 for none
    table: TableRef | None
    lock: str | None
    cleared: bool = False


def _server_version(conn: Connection) -> str:
    number = conn.dialect.server_version_info or (17, 0)
    return ".".join(str(part) for part in number[:2])


def _place(origin: Origin, script: Script, offset: int) -> tuple[int, int, frozenset[str]]:
    if origin.place is not None:
        line, ignores = origin.place(offset)
        return line, 1, ignores
    line, column = script.position(offset)
    return line, column, frozenset()


def _finding(
    name: str,
    message: str,
    origin: Origin,
    script: Script,
    statement: Statement | None,
    line: int,
    column: int,
    table: TableRef | None,
    severity: Severity | None = None,
    notes: tuple[str, ...] = (),
    sources: tuple[str, ...] = ("pgwarden",),
) -> LintFinding:
    text = redact_text(statement.text) if statement is not None else ""
    subject = None if table is None else _name(table)
    return LintFinding(
        rule=name,
        severity=severity or rule(name).severity,
        message=message,
        fix=rule(name).fix,
        file=origin.file,
        line=line,
        column=column,
        statement=text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "...",
        subject=subject,
        revision=origin.revision,
        sources=sources,
        notes=notes,
    )


def _from_hit(hit: Hit, origin: Origin, script: Script) -> LintFinding:
    line, column, _ = _place(origin, script, hit.statement.start)
    found = _finding(
        hit.rule,
        hit.message,
        origin,
        script,
        hit.statement,
        line,
        column,
        hit.table,
        hit.severity,
        hit.notes,
    )
    if hit.cleared:
        return replace(found, fix="Nothing: it is safe as written.")
    concrete = concrete_fix(hit)
    return found if concrete is None else replace(found, fix=concrete)


# A squawk rule whose concern pgwarden reports under another name on the same statement.
_SAME_CONCERN = {
    "constraint-missing-not-valid": (
        "adding-foreign-key-constraint",
        "disallowed-unique-constraint",
        "adding-serial-primary-key-field",
    ),
    "adding-serial-primary-key-field": ("disallowed-unique-constraint",),
}


def _merge(
    drafts: dict[tuple[int, str], _Draft],
    violation: SquawkViolation,
    origin: Origin,
    script: Script,
    locks: dict[int, list[tuple[TableRef, str]]],
) -> None:
    offset = _offset(script.text, violation.line, violation.column)
    statement = script.statement_at(offset)
    start = statement.start if statement is not None else 0
    name = rule(violation.rule).name
    for candidate in (name, *_SAME_CONCERN.get(name, ())):
        draft = drafts.get((start, candidate))
        if draft is not None:
            found = draft.finding
            merged = replace(
                found,
                sources=tuple(dict.fromkeys((*found.sources, "squawk"))),
                squawk_rules=tuple(dict.fromkeys((*found.squawk_rules, violation.rule))),
            )
            drafts[(start, candidate)] = replace(draft, finding=merged)
            return
    line, column, _ = _place(origin, script, start if statement is not None else offset)
    message = violation.message + (f" {violation.help}" if violation.help else "")
    severity: Severity | None = None
    notes: tuple[str, ...] = ()
    if (
        name in ("require-lock-timeout", "require-statement-timeout")
        and statement is not None
        and not locks.get(start)
    ):
        severity, notes = (
            "info",
            ("pgwarden: this statement locks no table that exists before the migration.",),
        )
    found = replace(
        _finding(
            name,
            message,
            origin,
            script,
            statement,
            line,
            column,
            None,
            severity,
            notes,
            ("squawk",),
        ),
        squawk_rules=(violation.rule,),
    )
    drafts[(start, f"squawk:{violation.rule}:{offset}")] = _Draft(
        found, start if statement is not None else -1, None, None
    )


def _offset(text: str, line: int, column: int) -> int:
    lines = text.split("\n")
    before = sum(len(item) + 1 for item in lines[:line])
    current = lines[line] if line < len(lines) else ""
    # squawk counts UTF-8 bytes; Python counts characters.
    return before + len(current.encode()[:column].decode(errors="ignore"))


def _ignored(draft: _Draft, script: Script, origin: Origin, config: LintConfig) -> bool:
    names = {draft.finding.rule, *draft.finding.squawk_rules}
    if names & config.disabled:
        return True
    ignored = set(script.file_ignores) | set(origin.ignores)
    for statement in script.statements:
        if statement.start == draft.start:
            ignored |= statement.ignores | _place(origin, script, statement.start)[2]
    return IGNORE_ALL in ignored or bool(names & ignored)


def _configured(finding: LintFinding, config: LintConfig) -> LintFinding:
    level = config.severity.get(finding.rule)
    if level is None or finding.severity == "info":
        return finding
    return replace(finding, severity=level)


def _weighed(
    drafts: list[_Draft],
    conn: Connection,
    config: LintConfig,
    locks: dict[int, list[tuple[TableRef, str]]],
) -> list[LintFinding]:
    wanted: dict[TableRef, set[str]] = {}
    for taken in locks.values():
        for table, mode in taken:
            wanted.setdefault(table, set()).add(mode)
    for draft in drafts:
        if draft.table is not None:
            modes = wanted.setdefault(draft.table, set())
            if draft.lock:
                modes.add(draft.lock)
    figures = table_figures(conn, wanted, sample_seconds=config.sample_seconds)
    return [
        weigh(d.finding, figures.get(d.table) if d.table is not None else None, config)
        for d in drafts
    ]
