"""Where a database stands in its migrations: the revisions applied, the heads, the rest."""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from pgwarden.schema._alembic import load_config, script_directory
from pgwarden.schema.errors import RevisionNotFound

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script

__all__ = ["MigrationStatus", "Revision", "current_revisions", "history", "status"]


@dataclass(frozen=True)
class Revision:
    """One revision of the history; ``applied`` is None when no database was asked."""

    revision: str
    down_revisions: tuple[str, ...]
    message: str
    path: str
    is_head: bool
    has_downgrade: bool
    applied: bool | None = None


@dataclass(frozen=True)
class MigrationStatus:
    """The revisions a database is at, the heads of the scripts, and what is pending."""

    current: tuple[str, ...]
    heads: tuple[str, ...]
    pending: tuple[Revision, ...]

    @property
    def up_to_date(self) -> bool:
        """Return whether the database is at every head."""
        return set(self.current) == set(self.heads)


def current_revisions(conn: Connection) -> tuple[str, ...]:
    """Return the revisions recorded in the database's ``alembic_version`` (none: base)."""
    from alembic.runtime.migration import MigrationContext

    heads = MigrationContext.configure(conn).get_current_heads()
    if conn.in_transaction():
        conn.rollback()  # hold no lock on alembic_version for the migrations to wait on
    return tuple(sorted(heads))


def _revision(script: Script, heads: set[str], applied: set[str] | None) -> Revision:
    down = script.down_revision
    downs = () if down is None else (down,) if isinstance(down, str) else tuple(down)
    return Revision(
        revision=script.revision,
        down_revisions=downs,
        message=(script.doc or "").strip(),
        path=str(script.path),
        is_head=script.revision in heads,
        has_downgrade=has_downgrade(script),
        applied=None if applied is None else script.revision in applied,
    )


def has_downgrade(script: Script) -> bool:
    """Return whether a revision's ``downgrade()`` does something (not only ``pass``)."""
    function = getattr(script.module, "downgrade", None)
    if function is None:
        return False
    try:
        tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return True  # cannot read it: give it the benefit of the doubt
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.FunctionDef) else []
    return any(
        not isinstance(node, ast.Pass)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        for node in body
    )


def _applied_closure(config: Config, current: tuple[str, ...]) -> set[str]:
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    script = script_directory(config)
    applied: set[str] = set()
    for rev in current:
        try:
            applied.update(s.revision for s in script.iterate_revisions(rev, "base"))
        except (CommandError, RevisionError):
            raise RevisionNotFound(
                f"the database is at revision {rev}, which the migration scripts lack.",
                hint="Check that -c names this application's migrations, and that the "
                "code deployed is not older than the database.",
            ) from None
    return applied


def history(
    conn: Connection | None = None, *, config: str | Path | Config | None = None
) -> list[Revision]:
    """Return every revision, newest first; with ``conn``, whether each is applied."""
    loaded = load_config(config)
    script = script_directory(loaded)
    heads = set(script.get_heads())
    applied = None if conn is None else _applied_closure(loaded, current_revisions(conn))
    return [_revision(rev, heads, applied) for rev in script.walk_revisions()]


def status(conn: Connection, *, config: str | Path | Config | None = None) -> MigrationStatus:
    """Return the revisions ``conn``'s database is at, the heads, and the pending ones.

    ``pending`` is in the order an upgrade to the heads would apply them.
    """
    loaded = load_config(config)
    return _status(conn, loaded, "heads")


def _status(conn: Connection, config: Config, target: str) -> MigrationStatus:
    script = script_directory(config)
    heads = set(script.get_heads())
    current = current_revisions(conn)
    applied = _applied_closure(config, current)
    pending = [
        _revision(rev, heads, applied)
        for rev in script.iterate_revisions(target, "base")
        if rev.revision not in applied
    ]
    pending.reverse()
    return MigrationStatus(current=current, heads=tuple(sorted(heads)), pending=tuple(pending))
