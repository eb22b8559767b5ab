"""Check a migration history: one head, a downgrade each, round trips, models in step.

On a scratch database created on the same server (and dropped after), each revision
in turn is applied, undone and applied again: the schema (``pg_dump --schema-only``)
must be the same after both upgrades, and the same after the downgrade as before the
upgrade. At the head, Alembic's autogenerate compares the models with the database:
what it finds is a model change without its migration, shown as the would-be revision.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, make_url

from pgwarden.errors import UserError
from pgwarden.schema._alembic import load_config, run_command, script_directory
from pgwarden.schema.catalog import schema_dump, scratch_database
from pgwarden.schema.status import has_downgrade

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["CheckProblem", "MigrationCheck", "check", "load_models"]


@dataclass(frozen=True)
class CheckProblem:
    """One check that failed: ``heads``, ``downgrade``, ``round_trip`` or ``models``."""

    check: str
    message: str
    revision: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class MigrationCheck:
    """The checks' outcome; ``skipped`` says which could not run and why."""

    heads: tuple[str, ...]
    revisions: int
    problems: tuple[CheckProblem, ...]
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Return whether every check that ran passed."""
        return not self.problems


def load_models(spec: str | MetaData | Any) -> MetaData:
    """Return the MetaData ``spec`` names: ``module:attr`` (a MetaData or a declarative base)."""
    if isinstance(spec, str):
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise UserError(
                f"{spec!r} is not module:attribute.", hint="For example app.models:Base."
            )
        try:
            found: Any = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UserError(
                f"cannot load the models {spec!r}: {exc}.",
                hint="Give module:attribute importable from here (PYTHONPATH).",
            ) from None
        spec = found
    metadata = spec if isinstance(spec, MetaData) else getattr(spec, "metadata", None)
    if not isinstance(metadata, MetaData):
        raise UserError(f"{spec!r} is neither a MetaData nor a declarative base.")
    return metadata


def check(
    conn: Connection,
    *,
    config: str | Path | Config | None = None,
    models: str | MetaData | Any | None = None,
    round_trip: bool = True,
) -> MigrationCheck:
    """Check the migrations of ``config`` on a scratch database on ``conn``'s server.

    ``models`` (a MetaData, a declarative base, or ``module:attr``) are compared with
    the schema the migrations build; without them that check is skipped, and says so.
    ``conn``'s own database is not touched.
    """
    loaded = load_config(config)
    script = script_directory(loaded)
    heads = tuple(script.get_heads())
    revisions = list(script.walk_revisions())
    revisions.reverse()  # base first
    problems: list[CheckProblem] = []
    skipped: list[str] = []
    if len(heads) != 1:
        problems.append(
            CheckProblem("heads", f"{len(heads)} heads: {', '.join(heads) or 'none'}; want one.")
        )
    problems += [
        CheckProblem("downgrade", f"revision {rev.revision} has no downgrade.", rev.revision)
        for rev in revisions
        if not has_downgrade(rev)
    ]
    metadata = None if models is None else load_models(models)
    if len(heads) != 1 or (not round_trip and metadata is None):
        if metadata is None:
            skipped.append("models: no models given (--models module:attr)")
        return MigrationCheck(heads, len(revisions), tuple(problems), tuple(skipped))
    major = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000
    if conn.in_transaction():
        conn.rollback()
    with scratch_database(conn) as url:
        scratch = load_config(loaded, url=url)
        for rev in revisions:
            down = rev.down_revision
            if not round_trip or isinstance(down, tuple | list):
                run_command(scratch, "upgrade", rev.revision)
                continue
            problems += _round_trip(scratch, rev.revision, down or "base", url, major)
        if metadata is None:
            skipped.append("models: no models given (--models module:attr)")
        else:
            problems += _compare_models(url, metadata)
    return MigrationCheck(heads, len(revisions), tuple(problems), tuple(skipped))


def _round_trip(
    config: Config, revision: str, down: str, url: Any, major: int
) -> list[CheckProblem]:
    before = schema_dump(url, major=major)
    run_command(config, "upgrade", revision)
    first = schema_dump(url, major=major)
    run_command(config, "downgrade", down)
    undone = schema_dump(url, major=major)
    run_command(config, "upgrade", revision)
    second = schema_dump(url, major=major)
    problems = []
    if undone != before:
        problems.append(
            CheckProblem(
                "round_trip",
                f"downgrading revision {revision} does not restore the schema before it.",
                revision,
                _diff(before, undone, "before upgrade", "after downgrade"),
            )
        )
    if second != first:
        problems.append(
            CheckProblem(
                "round_trip",
                f"revision {revision} upgraded, downgraded and upgraded again gives another "
                "schema.",
                revision,
                _diff(first, second, "first upgrade", "second upgrade"),
            )
        )
    return problems


def _diff(a: str, b: str, a_name: str, b_name: str, limit: int = 60) -> str:
    lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), a_name, b_name, lineterm=""))
    more = len(lines) - limit
    return "\n".join(lines[:limit] + ([f"... {more} more lines"] if more > 0 else []))


# Partitions are made by migrations or maintenance, not declared as models.
_PARTITIONS = """
SELECT n.nspname AS schema, c.relname AS name
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relispartition
"""


def _compare_models(url: Any, metadata: MetaData) -> list[CheckProblem]:
    from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
    from alembic.runtime.migration import MigrationContext

    from pgwarden.db.engines import connect, create_engine

    engine = create_engine(
        make_url(url), poolclass=sa.pool.NullPool, application_name="pgwarden-check"
    )
    try:
        with connect(engine) as conn:
            partitions = {(row.schema, row.name) for row in conn.execute(sa.text(_PARTITIONS))}
            default = conn.dialect.default_schema_name

            def include_name(name: str | None, type_: str, parents: Any) -> bool:
                schema = parents.get("schema_name") or default
                return not (type_ == "table" and (schema, name) in partitions)

            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": include_name}
            )
            diffs = compare_metadata(context, metadata)
            if not diffs:
                return []
            script = produce_migrations(context, metadata)
            code = render_python_code(script.upgrade_ops) if script.upgrade_ops else ""
    finally:
        engine.dispose()
    return [
        CheckProblem(
            "models",
            f"the models differ from the migrated schema in {len(diffs)} ways: a model change "
            "has no migration.",
            detail=code,
        )
    ]
