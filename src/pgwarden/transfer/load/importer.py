"""Import a bundle (or one CSV file) into a database, journaled so it can be rolled back.

::

    with engine.connect() as conn:
        report = import_bundle(conn, "out/", mode="upsert", dry_run=True)
        for table in report.tables:
            print(table.table, table.inserted, table.updated, table.unchanged, table.errors)

The whole import is one transaction: every file is streamed by COPY into a temporary
staging table (checking its SHA-256 on the way, so a tampered bundle stops the import,
which then writes nothing), then merged into its table in the manifest's order (parents
first), batch by batch, writing the journal (:mod:`pgwarden.transfer.journal.runs`) in the
same statements. An insert into a table that holds no row yet skips the staging table:
its rows are COPYed straight in, and staged only if that fails (to name the rows).
Modes:

``insert``
    add rows; a row whose key the table has already is a conflict, and any conflict
    fails the import (a dry run lists them).
``upsert``
    add new rows, update existing ones (matched on the primary key, or the unique key
    named in ``conflict_keys``) where a value differs; columns the bundle lacks are left.
``replace``
    as upsert, and first delete (children tables first) the rows whose key the bundle
    does not have: each table ends up holding exactly the bundle's rows. Rows are
    updated in place rather than deleted and inserted again, so foreign keys pointing
    at them hold; a delete that would cascade to rows outside the journal refuses.

A dry run does all of it and rolls back, reporting per table what would be inserted,
updated, unchanged or deleted, conflicts, and the rows a constraint refuses (found by
splitting a failing batch until the rows are isolated, with savepoints).

User triggers (audit, ``updated_at``) are off during an import unless
``fire_triggers``: an import writes the bundle's values, not new ones, and rollback can
undo only what the journal holds.

A bundle is untrusted input: it is read as :func:`~pgwarden.transfer.bundle.read_bundle`
checks it; tables in pgwarden's own schema or the system's are refused, and so, given
``allow_tables``, is any other table; a line that is not in its file's format fails the
import with its file and line named, before anything is written.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden._sql import resolve_table, table_key
from pgwarden.errors import UserError
from pgwarden.transfer.anonymize._rewrite import rewrite_chunks
from pgwarden.transfer.anonymize.transforms import TableTransform, TransformSpec, compile_transforms
from pgwarden.transfer.bundle import (
    Bundle,
    BundleColumn,
    BundleTable,
    TableSchema,
    read_bundle,
    schema_fingerprint,
)
from pgwarden.transfer.catalog import CatalogTable, UniqueKey, load_catalog, load_tables
from pgwarden.transfer.errors import BundleError
from pgwarden.transfer.load import _fit
from pgwarden.transfer.load._job import Job, Source, transaction
from pgwarden.transfer.load._staging import (
    DirectLoad,
    RowTransform,
    Stage,
    copy_rows,
    csv_header,
    csv_rows,
    jsonl_rows,
)
from pgwarden.transfer.load.reports import ImportReport, Mode
from pgwarden.transfer.progress import ProgressCallback

__all__ = [
    "MODES",
    "Mode",
    "import_bundle",
    "import_csv",
]

MODES: tuple[Mode, ...] = ("insert", "upsert", "replace")
_CHUNK = 1 << 20
# Schemas an import never writes: pgwarden's journal, and the system's.
_RESERVED = ("pgwarden", "pg_catalog", "information_schema")
_COPY_LINE = re.compile(r"^COPY .*, line (\d+)", re.MULTILINE)


def import_bundle(
    conn: Connection,
    path: str | Path,
    *,
    mode: Mode = "insert",
    conflict_keys: Mapping[str, str] | None = None,
    dry_run: bool = False,
    allow_schema_drift: bool = False,
    allow_tables: Sequence[str] | None = None,
    transforms: TransformSpec | None = None,
    batch_size: int = 20_000,
    max_errors: int = 10,
    fire_triggers: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import the bundle in directory ``path`` into the database of ``conn``.

    ``conflict_keys`` maps ``schema.table`` (or ``*``: every table that has one of
    that name) to the unique constraint or index to match rows on (default: the
    primary key). ``transforms`` (see
    :mod:`pgwarden.transfer.anonymize.transforms`) rewrite rows on their way in. ``allow_tables``
    (names as SQL reads them: ``tags``, ``sales.orders``) are the only tables the bundle
    may hold; ``None`` allows every table outside pgwarden's and the system's schemas.

    Raises :class:`UserError` before writing anything when the bundle holds a table in
    pgwarden's or a system schema, or one not allowed, when a table is missing from the
    target or its columns differ (with ``allow_schema_drift``, a bundle whose columns
    are a subset of the target's with the same types is accepted);
    :class:`BundleError` when the bundle is malformed, or a file does not match the
    manifest or holds a line not in its format; and, unless
    ``dry_run``, :class:`ImportFailed` when rows are refused. The connection's
    transaction, if one is open, is used through a savepoint and left for the caller
    to commit.
    """
    bundle = read_bundle(path)
    _refuse_reserved([(table.schema, table.name) for table in bundle.tables])
    with transaction(conn, dry_run):
        if allow_tables is not None:
            _refuse_unallowed(conn, bundle, allow_tables)
        names = list(bundle.order)
        targets = load_tables(conn, [(t.schema, t.name) for t in bundle.tables])
        missing = [name for name in names if name not in targets]
        if missing:
            raise UserError(
                f"the target has no table {', '.join(missing)}; nothing was imported.",
                hint="Create the tables first (run the migrations), or export without them.",
            )
        warnings = _check_fit(conn, bundle, targets, allow_schema_drift)
        compiled = _compiled(transforms, bundle.tables)
        sources = [_bundle_source(bundle, bundle.table(name), compiled.get(name)) for name in names]
        manifest_sha = bundle.manifest_sha256
        source = {
            "bundle": str(Path(path).resolve()),
            "database": bundle.source_database,
            "server_version": bundle.server_version,
            "created_at": bundle.created_at,
        }
        job = Job(
            conn,
            sources,
            [targets[name] for name in names],
            mode=_mode(mode),
            conflicts=_conflict_keys(targets, conflict_keys or {}),
            dry_run=dry_run,
            transforms=compiled,
            batch_size=batch_size,
            max_errors=max_errors,
            fire_triggers=fire_triggers,
            on_progress=on_progress,
        )
        return job.run(source, manifest_sha, warnings)


def import_csv(
    conn: Connection,
    table: str,
    path: str | Path,
    *,
    mode: Mode = "insert",
    conflict_key: str | None = None,
    dry_run: bool = False,
    transforms: TransformSpec | None = None,
    batch_size: int = 20_000,
    max_errors: int = 10,
    fire_triggers: bool = False,
    on_progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import the CSV file ``path`` (a header line naming columns) into ``table``.

    ``table`` is read as SQL reads it (``orders``, ``sales.orders``); an unquoted empty
    field is NULL. Otherwise as :func:`import_bundle`, for one table.
    """
    with transaction(conn, dry_run):
        schema, name = resolve_table(conn, table)
        _refuse_reserved([(schema, name)])
        target = load_tables(conn, [(schema, name)])[table_key(schema, name)]
        file = Path(path)
        try:
            with file.open("rb") as handle:
                header = csv_header(handle.readline())
        except OSError as exc:
            raise UserError(f"cannot read {file}: {exc.strerror}.") from exc
        unknown = [column for column in header if column not in target.by_name]
        if not header or unknown:
            raise UserError(
                f"the header of {file} names columns {target.qualified} does not have: "
                f"{', '.join(unknown) or '(none given)'}.",
                hint=f"Its columns are: {', '.join(target.by_name)}.",
            )
        digest = _Digest()

        def chunks() -> Iterator[bytes]:
            digest.hash = hashlib.sha256()  # the file may be read twice (see _job)
            with file.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.hash.update(chunk)
                    yield chunk

        def load(stage: Stage, on_rows: Callable[[int], None], tf: RowTransform | None) -> None:
            if tf is None:
                stage.load_csv(chunks(), on_rows)
            else:
                stage.load_rows(csv_rows(chunks(), tf), on_rows)

        described = TableSchema(
            schema=target.schema,
            name=target.name,
            columns=tuple(
                BundleColumn(c, target.by_name[c].type, target.by_name[c].nullable) for c in header
            ),
            primary_key=target.primary_key,
            foreign_keys=(),
        )
        compiled = _compiled(transforms, [described])
        columns = list(compiled[target.qualified].columns) if compiled else header
        source = Source(target.qualified, header, None, load, columns)
        job = Job(
            conn,
            [source],
            [target],
            mode=_mode(mode),
            conflicts=_conflict_keys({target.qualified: target}, _csv_key(target, conflict_key)),
            dry_run=dry_run,
            transforms=compiled,
            batch_size=batch_size,
            max_errors=max_errors,
            fire_triggers=fire_triggers,
            on_progress=on_progress,
        )
        return job.run({"csv": str(file.resolve()), "table": target.qualified}, None, [], digest)


class _Digest:
    """The SHA-256 of the last complete read of a file."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


def _refuse_reserved(tables: Iterable[tuple[str, str]]) -> None:
    """Raise UserError for any table in pgwarden's schema or a system schema."""
    reserved = [
        table_key(schema, name)
        for schema, name in tables
        if schema in _RESERVED or schema.startswith("pg_")
    ]
    if reserved:
        raise UserError(
            f"the import would write {', '.join(reserved[:5])}, in pgwarden's or the"
            " system's schemas; nothing was imported.",
            hint="An import writes application tables only: export without these.",
        )


def _refuse_unallowed(conn: Connection, bundle: Bundle, allowed: Sequence[str]) -> None:
    """Raise UserError when the bundle holds a table that ``allowed`` does not name."""
    names = {resolve_table(conn, name) for name in allowed}
    outside = [t.qualified for t in bundle.tables if (t.schema, t.name) not in names]
    if outside:
        more = f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        raise UserError(
            f"the bundle holds tables not allowed: {', '.join(outside[:5])}{more};"
            " nothing was imported.",
            hint="Allow them too (--allow-table), or export only the allowed tables.",
        )


def _csv_key(target: CatalogTable, name: str | None) -> dict[str, str]:
    return {target.qualified: name} if name else {}


def _mode(mode: str) -> Mode:
    if mode not in MODES:
        raise UserError(f"unknown mode {mode!r}.", hint=f"Use one of: {', '.join(MODES)}.")
    return mode


def _conflict_keys(
    targets: Mapping[str, CatalogTable], named: Mapping[str, str]
) -> dict[str, UniqueKey]:
    """Return each table's conflict key: named for it, named for ``*``, or the primary key."""
    unknown = [table for table in named if table != "*" and table not in targets]
    if unknown:
        raise UserError(f"a conflict key names table(s) not imported: {', '.join(unknown)}.")
    chosen = dict(named)
    if "*" in chosen:
        key = chosen.pop("*")
        having = [n for n, t in targets.items() if any(k.name == key for k in t.unique_keys)]
        if not having:
            raise UserError(
                f"no imported table has a unique key {key!r}.",
                hint="Name a primary key, unique constraint or unique index, as TABLE:NAME.",
            )
        chosen.update((name, key) for name in having if name not in chosen)
    return {name: target.key(chosen.get(name)) for name, target in targets.items()}


def _compiled(
    spec: TransformSpec | None, tables: Iterable[TableSchema]
) -> dict[str, TableTransform]:
    """Return each table's compiled transform, leaving out those that change nothing."""
    if spec is None:
        return {}
    compiled = {table.qualified: compile_transforms(spec, table) for table in tables}
    return {name: transform for name, transform in compiled.items() if not transform.identity}


def _bundle_source(bundle: Bundle, table: BundleTable, transform: Any) -> Source:
    def load(stage: Stage, on_rows: Callable[[int], None], tf: RowTransform | None) -> None:
        try:
            _load(bundle, table, stage, on_rows, tf)
        except BundleError:
            raise
        except (psycopg.Error, DBAPIError) as error:
            # A staging table is all text: what it refuses is the file's form, not a
            # value. The target itself (a direct load) refuses values: the caller stages.
            if isinstance(stage, DirectLoad) or not _is_data_error(error):
                raise
            raise _damaged(bundle, table, error) from None
        except (ValueError, TypeError, RecursionError, UserError) as error:
            # Parsing in Python (transforms): blame the line, if a line is to blame.
            if (found := bundle.first_bad_line(table)) is None:
                raise
            raise _bad_line(table, *found) from error

    columns = list(transform.columns) if transform is not None else table.column_names
    return Source(table.qualified, table.column_names, table.rows, load, columns)


def _load(
    bundle: Bundle,
    table: BundleTable,
    stage: Stage,
    on_rows: Callable[[int], None],
    tf: RowTransform | None,
) -> None:
    if tf is not None:
        if table.format == "copy" and isinstance(tf, TableTransform):
            stage.load_copy(_transformed_copy(bundle, table, tf), on_rows)
            return
        lines = bundle.iter_lines(table)
        if table.format == "copy":
            rows = copy_rows(lines, table.column_names, tf)
        else:
            rows = jsonl_rows(_no_blank(lines), tf)
        stage.load_rows(rows, on_rows)
    elif table.format == "copy":
        stage.load_copy(bundle.iter_data(table), on_rows)
    else:
        stage.load_jsonl(bundle.iter_data(table), on_rows)


def _transformed_copy(
    bundle: Bundle, table: BundleTable, transform: TableTransform
) -> Iterator[bytes]:
    """Yield ``table``'s COPY text transformed, a column at a time, as the export does.

    Renames change no COPY text: the staged columns are the table's, renamed, in order.
    Lines with other numbers of fields than the first can shift the columns rewritten
    into the joints of lines: counting lines in and out catches it. The file must be
    UTF-8 throughout, as without transforms, though fields no rule reads are not decoded.
    """
    chunks = _utf8(bundle.iter_data(table))
    if not transform.copy_fields:
        yield from chunks
        return
    for data, lines in rewrite_chunks(chunks, transform.copy_fields):
        if data.count(b"\n") != lines:
            found = bundle.first_bad_line(table)
            if found is not None:
                raise _bad_line(table, *found)
            raise BundleError(
                f"{table.file} ({table.qualified}) cannot be transformed: its lines do not"
                " hold one field a column; nothing was imported.",
                hint="The bundle is damaged; export it again.",
            )
        yield data


def _utf8(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield ``chunks``, raising UnicodeDecodeError where they are not UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for chunk in chunks:
        decoder.decode(chunk)
        yield chunk
    decoder.decode(b"", final=True)


def _no_blank(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Yield JSONL ``lines``, raising ValueError at a blank one, as a load without transforms."""
    for line in lines:
        if not line.strip():
            raise ValueError("a blank line")
        yield line


def _is_data_error(error: psycopg.Error | DBAPIError) -> bool:
    orig = error.orig if isinstance(error, DBAPIError) else error
    return str(getattr(orig, "sqlstate", None) or "").startswith("22")


def _damaged(bundle: Bundle, table: BundleTable, error: psycopg.Error | DBAPIError) -> BundleError:
    """Return the error for a file the server could not read: its first bad line, or the
    server's account of it (a bad escape, say)."""
    if (found := bundle.first_bad_line(table)) is not None:
        return _bad_line(table, *found)
    orig = error.orig if isinstance(error, DBAPIError) else error
    diag = getattr(orig, "diag", None)
    message = getattr(diag, "message_primary", None) or str(orig).splitlines()[0]
    line = _COPY_LINE.search(getattr(diag, "context", None) or "")
    where = f"line {line.group(1)} of " if line else ""
    return BundleError(
        f"{where}{table.file} ({table.qualified}) cannot be loaded: {message}; nothing was"
        " imported.",
        hint="The bundle is damaged; export it again.",
    )


def _bad_line(table: BundleTable, line: int, problem: str) -> BundleError:
    return BundleError(
        f"line {line} of {table.file} ({table.qualified}) {problem}; nothing was imported.",
        hint="The bundle is damaged; export it again.",
    )


def _check_fit(
    conn: Connection, bundle: Bundle, targets: Mapping[str, CatalogTable], allow_drift: bool
) -> list[str]:
    """Raise UserError when the bundle does not fit the target; return drift warnings."""
    catalog = load_catalog(conn)
    described = [catalog.tables.get(t.qualified) for t in bundle.tables]
    present = [table for table in described if table is not None]
    if len(present) == len(described) and (
        schema_fingerprint(present) == bundle.schema_fingerprint
    ):
        return []
    found = [
        difference
        for table, here in zip(bundle.tables, described, strict=True)
        for difference in _fit.differences(table, here, targets[table.qualified])
    ]
    blocking = [d for d in found if d.blocking]
    if blocking or (found and not allow_drift):
        hint = (
            "Migrate the target to the bundle's schema, or export from a matching one."
            if blocking
            else "Pass --allow-schema-drift to import anyway (missing columns get defaults)."
        )
        raise UserError(
            f"the bundle's schema differs from the target's; nothing was imported:\n"
            f"{_fit.summary(blocking or found)}",
            hint=hint,
        )
    return [str(difference) for difference in found]
