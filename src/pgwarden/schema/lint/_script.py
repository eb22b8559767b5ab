"""A migration's SQL cut into statements, each with its place, its ignores and its transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pglast import parse_sql
from pglast.ast import TransactionStmt
from pglast.enums import TransactionStmtKind
from pglast.parser import ParseError, scan

__all__ = ["IGNORE_ALL", "Script", "Statement", "ignores_in", "parse_script"]

#: In a set of ignored rules: every rule.
IGNORE_ALL = "*"
# `-- pgwarden: ignore rule-a, rule-b` (or `ignore-file`), also after `#` in Python.
_DIRECTIVE = re.compile(r"pgwarden:\s*(ignore(?:-file)?)\b([^\n]*)", re.IGNORECASE)
_BEGIN = {TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START}
_END = {
    TransactionStmtKind.TRANS_STMT_COMMIT,
    TransactionStmtKind.TRANS_STMT_ROLLBACK,
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED,
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED,
    TransactionStmtKind.TRANS_STMT_PREPARE,
}


@dataclass(frozen=True)
class Statement:
    """One statement: its parse tree, text, place (1-based) and what surrounds it."""

    node: Any
    text: str
    start: int  # character offset in the script
    end: int
    line: int
    column: int
    ignores: frozenset[str]
    in_transaction: bool


@dataclass(frozen=True)
class Script:
    """The statements of one migration, or where it fails to parse."""

    text: str
    statements: tuple[Statement, ...]
    file_ignores: frozenset[str]
    error: tuple[str, int, int] | None = None  # message, line, column

    def position(self, offset: int) -> tuple[int, int]:
        """Return the 1-based line and column of a character offset."""
        return _position(self.text, offset)

    def statement_at(self, offset: int) -> Statement | None:
        """Return the statement covering ``offset``, else the next one after it."""
        for statement in self.statements:
            if offset < statement.end:
                return statement
        return self.statements[-1] if self.statements else None


def ignores_in(comment: str) -> tuple[str, frozenset[str]] | None:
    """Return the kind (``ignore`` or ``ignore-file``) and rules a comment names, if any.

    ``-- pgwarden: ignore`` alone ignores every rule; text after `` -- `` or ``(`` is
    the reason, for the reader.
    """
    found = _DIRECTIVE.search(comment)
    if found is None:
        return None
    names = re.split(r"\s--\s|\(|\*/", found.group(2), maxsplit=1)[0]
    rules = frozenset(n for n in re.split(r"[\s,]+", names.strip()) if n)
    return found.group(1).lower(), rules or frozenset({IGNORE_ALL})


def parse_script(text: str, *, assume_in_transaction: bool = False) -> Script:
    """Cut ``text`` into statements, reading the ignore comments and transaction blocks."""
    try:
        raw = parse_sql(text)
    except ParseError as exc:
        message, at = (*exc.args, "syntax error", 0)[:2]
        line, column = _position(text, at if isinstance(at, int) else 0)
        return Script(text, (), frozenset(), (str(message), line, column))
    comments = [
        (token.start, text[token.start : token.end + 1])
        for token in scan(text)
        if token.name in ("SQL_COMMENT", "C_COMMENT")
    ]
    file_ignores: set[str] = set()
    for _, comment in comments:
        found = ignores_in(comment)
        if found is not None and found[0] == "ignore-file":
            file_ignores |= found[1]
    spans = []
    for item in raw:
        start = item.stmt_location or 0
        end = start + item.stmt_len if item.stmt_len else len(text)
        body = text[start:end]  # leading comments are in the span: skip to its first token
        spans.append((item.stmt, start + (len(body) - len(_skip_comments(body))), end))
    ignores: list[set[str]] = [set() for _ in spans]
    for at, comment in comments:
        found = ignores_in(comment)
        if found is None or found[0] != "ignore":
            continue
        owner = next((i for i, (_, _, end) in enumerate(spans) if at < end), len(spans) - 1)
        # A comment after a statement on its own line belongs to it, not to the next one.
        if owner > 0 and "\n" not in text[spans[owner - 1][2] : at]:
            owner -= 1
        if spans:
            ignores[owner] |= found[1]
    statements = []
    in_transaction = assume_in_transaction
    for (node, first, end), ignored in zip(spans, ignores, strict=True):
        if isinstance(node, TransactionStmt) and node.kind in _BEGIN:
            in_transaction = True
        line, column = _position(text, first)
        statements.append(
            Statement(
                node,
                text[first:end].strip(),
                first,
                end,
                line,
                column,
                frozenset(ignored),
                in_transaction,
            )
        )
        if isinstance(node, TransactionStmt) and node.kind in _END:
            in_transaction = False
    return Script(text, tuple(statements), frozenset(file_ignores))


def _skip_comments(body: str) -> str:
    rest = body
    while True:
        rest = rest.lstrip()
        if rest.startswith("--"):
            rest = rest.partition("\n")[2]
        elif rest.startswith("/*"):
            rest = rest.partition("*/")[2]
        else:
            return rest


def _position(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    line = before.count("\n") + 1
    return line, offset - (before.rfind("\n") + 1) + 1
