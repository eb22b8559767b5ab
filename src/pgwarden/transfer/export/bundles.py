"""Export chosen rows, and every row they need, into a bundle that loads into an empty database.

::

    with engine.connect() as conn:
        result = export_bundle(
            conn, "out/",
            tables=["public.users"], date_column="created_at",
            since="2026-01-01", until="2026-02-01",
            children=1, transforms=load_transforms("anonymize.toml"),
        )
    for table in result.tables:
        print(table.name, table.direct, table.added)

The export runs in one REPEATABLE READ transaction, so every table comes from the same
snapshot; it reads only, apart from temporary tables of row ids (see
:mod:`pgwarden.transfer.export.subset`), and rolls back at the end. Rows stream from
``COPY ... TO STDOUT`` to the files; the manifest is written last.
"""

from __future__ import annotations

import importlib
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.errors import UserError
from pgwarden.transfer._files import private_directory
from pgwarden.transfer.anonymize.transforms import TableTransform, TransformSpec, compile_transforms
from pgwarden.transfer.bundle import Bundle, BundleForeignKey, BundleTable, Format
from pgwarden.transfer.catalog import Catalog, CatalogTable, load_catalog
from pgwarden.transfer.export._copyout import (
    CHUNK_SIZE,
    SESSION_SETTINGS,
    CopyOut,
    copy_statement,
    copy_table_statement,
    snapshot,
    stream_rows,
)
from pgwarden.transfer.export._psqlread import SnapshotReader
from pgwarden.transfer.export.bundle_files import DataFile, write_manifest
from pgwarden.transfer.export.filters import equals, parse_where
from pgwarden.transfer.export.subset import Selection, Subset, select_subset, selection
from pgwarden.transfer.progress import ProgressCallback, TransferProgress

__all__ = [
    "ExportResult",
    "ExportedTable",
    "entity_table",
    "export_bundle",
    "export_personal_data",
    "plan_selections",
    "user_selection",
]

# Whole tables of at least this many rows (by the planner's estimate) are read by a psql
# child in the export's snapshot (see :mod:`._psqlread`): below it, starting psql and
# its connection costs more than it saves.
_PSQL_AFTER = 50_000


@dataclass(frozen=True)
class ExportedTable:
    """What the export wrote for one table: rows asked for, rows closure added, size."""

    name: str
    rows: int
    direct: int
    added: int
    bytes: int
    seconds: float


@dataclass(frozen=True)
class ExportResult:
    """The bundle written, and per table what went into it, in load order."""

    bundle: Bundle
    tables: list[ExportedTable]
    seconds: float

    @property
    def rows(self) -> int:
        """Return the rows exported, all tables together."""
        return sum(table.rows for table in self.tables)


def entity_table(spec: str) -> str:
    """Return ``schema.name`` of the table an ORM entity ``module:Class`` is mapped to."""
    module, _, name = spec.partition(":")
    try:
        entity = getattr(importlib.import_module(module), name)
        table = sa.inspect(entity).local_table
    except (ImportError, AttributeError, ValueError, sa.exc.NoInspectionAvailable) as exc:
        raise UserError(
            f"cannot find the entity {spec!r}: {exc}.",
            hint="Write module:Class, importable from here (set PYTHONPATH).",
        ) from exc
    return f"{table.schema or 'public'}.{table.name}"


def plan_selections(
    catalog: Catalog,
    *,
    tables: Sequence[str] = (),
    where: Sequence[str] = (),
    date_column: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[Selection]:
    """Return the selections asked for, every filter compiled (no SQL runs here).

    A ``where`` written ``table: expr`` applies to that table only, others to every
    table; the date range applies to every table. No tables means every table, whole.
    """
    if not tables:
        if where or date_column:
            raise UserError(
                "--where and --date-column need the tables they filter.",
                hint="Name them with --table schema.name (or --entity module:Class).",
            )
        return [selection(catalog, name) for name in catalog.tables]
    if (since or until) and not date_column:
        raise UserError("--since and --until need --date-column, the column they bound.")
    names = [catalog.find(name).qualified for name in tables]
    routed: dict[str, list[str]] = {name: [] for name in names}
    for option in where:
        target, expression = parse_where(option)
        if target is None:
            for name in names:
                routed[name].append(expression)
            continue
        qualified = catalog.find(target).qualified
        if qualified not in routed:
            raise UserError(
                f"--where names {target}, which is not among the tables exported.",
                hint=f"Add --table {qualified}, or drop the prefix.",
            )
        routed[qualified].append(expression)
    return [
        selection(
            catalog, name, where=routed[name], date_column=date_column, since=since, until=until
        )
        for name in dict.fromkeys(names)
    ]


def user_selection(catalog: Catalog, user_table: str, user_id: str) -> Selection:
    """Return the selection of one row of ``user_table`` by its (single-column) primary key."""
    table = catalog.find(user_table)
    if len(table.primary_key) != 1:
        raise UserError(
            f"{table.qualified} needs a one-column primary key to export one user's data.",
        )
    chosen = selection(catalog, table.qualified)
    found = equals(table, chosen.target, table.primary_key[0], str(user_id))
    return replace(chosen, filters=(found,))


def export_bundle(
    conn: Connection,
    out_dir: str | Path,
    *,
    tables: Sequence[str] = (),
    where: Sequence[str] = (),
    date_column: str | None = None,
    since: str | None = None,
    until: str | None = None,
    children: int | None = 0,
    nullable: Literal["include", "null"] = "include",
    format: Format = "copy",
    transforms: TransformSpec | None = None,
    on_progress: ProgressCallback | None = None,
) -> ExportResult:
    """Export the chosen rows and their foreign-key closure to a new bundle in ``out_dir``.

    ``tables`` (``schema.name``; none: every table, whole) are filtered by ``where`` and
    the date range ``since <= date_column < until``; ``children`` levels of referencing
    rows are added (``None``: every level), then every parent row needed; with
    ``nullable="null"``, a key that may be NULL is not followed but written as NULL when
    its parent is not exported. ``conn`` must not be in a transaction: the export runs its
    own, REPEATABLE READ, and rolls it back.
    """

    def plan(catalog: Catalog) -> list[Selection]:
        return plan_selections(
            catalog, tables=tables, where=where, date_column=date_column, since=since, until=until
        )

    return _export(conn, out_dir, plan, children, format, transforms, on_progress, nullable)


def export_personal_data(
    conn: Connection,
    out_dir: str | Path,
    *,
    user_table: str,
    user_id: str,
    children: int | None = None,
    nullable: Literal["include", "null"] = "include",
    format: Format = "copy",
    transforms: TransformSpec | None = None,
    on_progress: ProgressCallback | None = None,
) -> ExportResult:
    """Export everything linked to one user: their row, what references it, and its parents.

    Follows foreign keys pointing at the user's row, and at those rows, to ``children``
    levels (``None``: all), then adds the parents every row needs (other users' rows
    among them, when they wrote a comment on the user's content, say: anonymize them with
    ``transforms`` before handing the bundle out).
    """

    def plan(catalog: Catalog) -> list[Selection]:
        return [user_selection(catalog, user_table, user_id)]

    return _export(conn, out_dir, plan, children, format, transforms, on_progress, nullable)


def _export(
    conn: Connection,
    out_dir: str | Path,
    plan: Callable[[Catalog], list[Selection]],
    children: int | None,
    format: Format,
    transforms: TransformSpec | None,
    on_progress: ProgressCallback | None,
    nullable: Literal["include", "null"] = "include",
) -> ExportResult:
    started = time.monotonic()
    if conn.in_transaction():
        raise UserError(
            "the export needs a connection outside a transaction: it runs its own.",
            hint="End the open transaction first: conn.commit() or conn.rollback().",
        )
    out = _new_directory(out_dir)
    try:
        with snapshot(conn):
            catalog = load_catalog(conn)
            chosen = plan(catalog)
            spec = transforms.propagate(catalog.tables.values()) if transforms else None
            subset = select_subset(conn, catalog, chosen, children=children, nullable=nullable)
            keep = {s.table.qualified for s in chosen}
            exported = [n for n, p in subset.tables.items() if n in keep or p.rows > 0]
            compiled = {
                name: compile_transforms(spec, catalog.tables[name]) if spec else None
                for name in exported
            }
            order, cycles = catalog.dependency_order(exported)
            reports, written = _write_tables(
                conn, out, subset, order, compiled, format=format, on_progress=on_progress
            )
            bundle = write_manifest(
                out,
                source_database=conn.execute(text("SELECT current_database()")).scalar_one(),
                server_version=_server_version(conn),
                tables=_renamed(written, compiled),
                order=order,
                transforms=spec.notes() if spec else (),
                cycles=cycles,
            )
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return ExportResult(bundle, reports, time.monotonic() - started)


def _new_directory(out_dir: str | Path) -> Path:
    """Create the bundle's directory (or take an empty one), readable by its owner only."""
    path = Path(out_dir)
    try:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(
                f"{path} exists and is not an empty directory.",
                hint="Export into a new directory; a bundle is never written over another.",
            )
        private_directory(path)
    except OSError as exc:
        raise UserError(f"cannot create the bundle directory {path}: {exc.strerror}.") from exc
    return path


def _write_tables(
    conn: Connection,
    out: Path,
    subset: Subset,
    order: list[str],
    compiled: dict[str, TableTransform | None],
    *,
    format: Format,
    on_progress: ProgressCallback | None,
) -> tuple[list[ExportedTable], list[BundleTable]]:
    total = sum(subset.tables[name].rows for name in order)
    done = 0
    readers = _Readers(conn)
    reports: list[ExportedTable] = []
    written: list[BundleTable] = []
    for name in order:
        part = subset.tables[name]
        table = part.table
        began = time.monotonic()

        def report(
            rows: int, name: str = name, expected: int = part.rows, before: int = done
        ) -> None:
            if on_progress is not None:
                event = TransferProgress("export", name, rows, expected, before + rows, total)
                on_progress(event)

        nulled = subset.nulled_columns(name)
        whole = part.keys is None and not nulled  # no temporary tables of row ids
        if whole and format == "copy" and not table.partitioned:
            statement = copy_table_statement(table.schema, table.name, table.column_names)
        else:
            statement = copy_statement(list(table.columns), part.source(), format, nulled)
        big = whole and part.rows >= _PSQL_AFTER and format in ("copy", "jsonl")
        chunks, workers = readers.chunks(statement, big=big)
        with DataFile(out, table.schema, table.name, format) as data:
            stream_rows(
                chunks,
                data,
                fmt=format,
                columns=table.column_names,
                transform=compiled[name],
                report=report,
                workers=workers,
            )
        done += data.rows
        direct = data.rows if part.keys is None else min(part.direct, data.rows)
        reports.append(
            ExportedTable(
                name, data.rows, direct, data.rows - direct, data.bytes, time.monotonic() - began
            )
        )
        written.append(_bundle_table(table, data, format))
    return reports, written


class _Readers:
    """Where a table's COPY is read: a psql child in the export's snapshot for a big whole
    table (see :mod:`._psqlread`), else the export's own connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.reader: SnapshotReader | None = None
        self.asked = False

    def chunks(self, statement: str, *, big: bool) -> tuple[Iterable[bytes], int | None]:
        """Return the chunks of ``statement``'s rows, and the transform's workers."""
        if big and not self.asked:
            self.reader, self.asked = SnapshotReader.open(self.conn, SESSION_SETTINGS), True
        if big and self.reader is not None:
            # this process only hands chunks on: the transform may have every CPU
            return self.reader.copy(statement, chunk_size=CHUNK_SIZE), os.cpu_count()
        return CopyOut(self.conn, statement), None


def _bundle_table(table: CatalogTable, data: DataFile, format: Format) -> BundleTable:
    return BundleTable(
        schema=table.schema,
        name=table.name,
        columns=table.columns,
        primary_key=table.primary_key,
        foreign_keys=table.foreign_keys,
        file=data.file,
        format=format,
        rows=data.rows,
        bytes=data.bytes,
        sha256=data.sha256,
    )


def _renamed(
    tables: list[BundleTable], compiled: dict[str, TableTransform | None]
) -> list[BundleTable]:
    """Return the tables with renamed columns renamed in columns, keys and references."""
    names: dict[str, dict[str, str]] = {}
    for table in tables:
        transform = compiled.get(table.qualified)
        if transform is not None:
            old = [column.name for column in table.columns]
            names[table.qualified] = dict(zip(old, transform.columns, strict=True))
    if all(old == new for mapping in names.values() for old, new in mapping.items()):
        return tables

    def rename(table: str, column: str) -> str:
        return names.get(table, {}).get(column, column)

    return [
        replace(
            table,
            columns=tuple(replace(c, name=rename(table.qualified, c.name)) for c in table.columns),
            primary_key=tuple(rename(table.qualified, c) for c in table.primary_key),
            foreign_keys=tuple(
                BundleForeignKey(
                    tuple(rename(table.qualified, c) for c in fk.columns),
                    fk.ref_schema,
                    fk.ref_table,
                    tuple(rename(fk.references, c) for c in fk.ref_columns),
                )
                for fk in table.foreign_keys
            ),
        )
        for table in tables
    ]


def _server_version(conn: Connection) -> str:
    version = conn.execute(text("SELECT current_setting('server_version')")).scalar_one()
    return str(version).split()[0]
