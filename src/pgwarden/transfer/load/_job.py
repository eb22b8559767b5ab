"""Run one import: stage every source, then delete and merge in order, in one transaction.

The public face is :mod:`pgwarden.transfer.load.importer`; this is its engine, shared by
bundle and CSV imports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden.errors import UserError
from pgwarden.transfer.catalog import CatalogTable, UniqueKey
from pgwarden.transfer.errors import BundleError, ImportFailed
from pgwarden.transfer.journal.runs import finish_run, pin_settings, start_run
from pgwarden.transfer.load._clauses import triggers_off
from pgwarden.transfer.load._merge import TableMerge
from pgwarden.transfer.load._staging import DirectLoad, NotDirect, RowTransform, Stage
from pgwarden.transfer.load.reports import ImportedTable, ImportReport, Mode, row_error
from pgwarden.transfer.progress import ProgressCallback, TransferProgress

__all__ = ["Job", "Source", "transaction"]


@dataclass
class Source:
    """Where one table's rows come from, and how to stream them into a stage."""

    table: str
    columns: list[str]
    expected_rows: int | None
    load: Callable[[Stage, Callable[[int], None], RowTransform | None], None]
    staged: list[str]  # the columns as staged: after the transforms' renames


@contextmanager
def transaction(conn: Connection, dry_run: bool) -> Iterator[None]:
    """Run inside a transaction of our own, or a savepoint of the caller's; roll back a dry run."""
    tx = conn.begin_nested() if conn.in_transaction() else conn.begin()
    try:
        yield
    except BaseException:
        if tx.is_active:
            tx.rollback()
        raise
    if dry_run:
        tx.rollback()
    else:
        tx.commit()


class Job:
    """One import: load every source into a stage, then delete and merge in order."""

    def __init__(
        self,
        conn: Connection,
        sources: Sequence[Source],
        targets: Sequence[CatalogTable],
        *,
        mode: Mode,
        conflicts: Mapping[str, UniqueKey],
        dry_run: bool,
        transforms: Mapping[str, RowTransform],
        batch_size: int,
        max_errors: int,
        fire_triggers: bool,
        on_progress: ProgressCallback | None,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, not {batch_size}.")
        unknown = sorted(set(transforms) - {source.table for source in sources})
        if unknown:
            raise UserError(f"transforms name tables not imported: {', '.join(unknown)}.")
        self.conn = conn
        self.sources = sources
        self.targets = targets
        self.mode = mode
        self.conflicts = conflicts
        self.dry_run = dry_run
        self.transforms = transforms
        self.batch_size = batch_size
        self.max_errors = max_errors
        self.fire_triggers = fire_triggers
        self.on_progress = on_progress
        self.reports = [ImportedTable(source.table) for source in sources]
        self.run_id = 0
        self._expected = sum(source.expected_rows or 0 for source in sources)
        self._loaded = 0  # rows loaded so far, for progress
        self._sources: dict[str, Source] = {}

    def run(
        self,
        source: dict[str, Any],
        manifest_sha: str | None,
        warnings: list[str],
        digest: Any = None,
    ) -> ImportReport:
        """Import every source; the caller holds the transaction (see :func:`transaction`)."""
        report = ImportReport(self.mode, self.dry_run, source, self.reports, warnings=warnings)
        pin_settings(self.conn)
        # Sorts and hashes over whole tables (the change set, the duplicate check) stay
        # in memory instead of spilling to disk; the server's default is 4 MB.
        self.conn.exec_driver_sql(
            "SELECT set_config('work_mem', '64MB', true)"
            " WHERE pg_size_bytes(current_setting('work_mem')) < pg_size_bytes('64MB')"
        )
        self.run_id = start_run(
            self.conn, kind="import", mode=self.mode, source=source, manifest_sha256=manifest_sha
        )
        self.conn.exec_driver_sql("SET CONSTRAINTS ALL DEFERRED")
        with triggers_off(self.conn, [] if self.fire_triggers else self.targets):
            merges = self._load()
            self._merge(merges, report)  # a table loaded directly is read only now
            if digest is not None:
                source["sha256"] = digest.hexdigest()
            for merge in merges:
                merge.stage.drop()
        if not self.dry_run:
            finish_run(self.conn, self.run_id, {r.table: r.counts() for r in self.reports})
            report.run_id = self.run_id
        return report

    def _load(self) -> list[TableMerge]:
        """Stage every source, except those an insert can COPY straight into their table.

        Those are loaded when their turn to merge comes (:meth:`_load_directly`).
        """
        merges = []
        for number, (source, target, report) in enumerate(
            zip(self.sources, self.targets, self.reports, strict=True), start=1
        ):
            self._sources[target.qualified] = source
            merge = TableMerge(
                self.conn,
                target,
                DirectLoad(self.conn, number, source.staged, target.sql),
                mode=self.mode,
                conflict=self.conflicts[target.qualified],
                run_id=self.run_id,
                report=report,
                max_errors=self.max_errors,
            )
            if not merge.can_load_directly():
                merge.stage = self._stage(number, source, target, report)
            merges.append(merge)
        return merges

    def _stage(
        self, number: int, source: Source, target: CatalogTable, report: ImportedTable
    ) -> Stage:
        """Load a source into a stage typed as the target, or, if a value does not fit, as text."""
        loaded, before = 0, self._loaded

        def on_rows(rows: int) -> None:
            nonlocal loaded
            loaded += rows
            self._loaded += rows
            self._progress("load", source.table, loaded, source.expected_rows or 0, self._loaded)

        transform = self.transforms.get(source.table)
        types = {c: target.by_name[c].type for c in source.staged if c in target.by_name}
        if len(types) == len(source.staged):
            try:
                with self.conn.begin_nested():
                    stage = Stage(self.conn, number, source.staged, types)
                    source.load(stage, on_rows, transform)
            except (psycopg.Error, DBAPIError, NotDirect):
                loaded, self._loaded = 0, before
            else:
                report.rows = stage.finish()
                self._check_rows(source, report.rows)
                return stage
        stage = Stage(self.conn, number, source.staged)
        try:
            source.load(stage, on_rows, transform)
        except psycopg.Error as error:
            raise BundleError(
                f"the data of {source.table} cannot be loaded: {_first_line(error)}",
                hint="The file is not in the format its name says; export it again.",
            ) from None
        report.rows = stage.finish()
        self._check_rows(source, report.rows)
        return stage

    def _check_rows(self, source: Source, rows: int) -> None:
        if source.table not in self.transforms and source.expected_rows not in (None, rows):
            raise BundleError(
                f"the data file of {source.table} holds {rows} rows, the manifest"
                f" says {source.expected_rows}.",
                hint="The bundle is damaged; export again.",
            )

    def _load_directly(self, merge: TableMerge) -> bool:
        """COPY a table's rows straight into it; on failure stage them, and return False."""
        source = self._sources[merge.target.qualified]
        direct = merge.stage
        loaded = 0

        def on_rows(rows: int) -> None:
            nonlocal loaded
            loaded += rows
            self._progress("load", source.table, loaded, source.expected_rows or 0,
                           self._loaded + loaded)  # fmt: skip

        def load() -> None:
            source.load(direct, on_rows, self.transforms.get(source.table))

        if merge.load_directly(load):
            self._loaded += loaded
            self._check_rows(source, merge.report.rows)
            return True
        merge.stage = self._stage(direct.number, source, merge.target, merge.report)
        return False

    def _merge(self, merges: list[TableMerge], report: ImportReport) -> None:
        for merge in merges:
            if isinstance(merge.stage, DirectLoad):
                continue  # an empty table: no conflict, and a repeated key fails the COPY
            if self.mode == "insert":
                merge.find_conflicts(self.max_errors)  # a repeated key fails as a conflict
            else:
                merge.find_duplicates(self.max_errors)
        self._stop_unless_ok(report)
        if self.mode == "replace":
            for merge in reversed(merges):
                merge.delete_missing()
                self._stop_unless_ok(report)
        done = 0
        total = sum(
            (source.expected_rows or 0) if isinstance(merge.stage, DirectLoad) else merge.stage.rows
            for merge, source in zip(merges, self.sources, strict=True)
        )
        for merge in merges:
            merged = 0
            if isinstance(merge.stage, DirectLoad):
                if self._load_directly(merge):
                    done += merge.report.rows
                    self._progress("merge", merge.target.qualified, merge.report.rows,
                                   merge.report.rows, done, total)  # fmt: skip
                    continue
                merge.find_conflicts(self.max_errors)
                self._stop_unless_ok(report)

            def on_batch(rows: int, merge: TableMerge = merge) -> None:
                nonlocal merged, done
                merged += rows
                done += rows
                self._progress("merge", merge.target.qualified, merged, merge.stage.rows, done,
                               total)  # fmt: skip

            merge.merge(self.batch_size, on_batch)
            self._stop_unless_ok(report)
        try:
            with self.conn.begin_nested():
                self.conn.exec_driver_sql("SET CONSTRAINTS ALL IMMEDIATE")
        except DBAPIError as error:
            report.errors.append(row_error(error))
        self._stop_unless_ok(report)
        if not self.dry_run:
            for merge in merges:
                merge.sync_sequences()

    def _stop_unless_ok(self, report: ImportReport) -> None:
        if not self.dry_run and not report.ok:
            raise ImportFailed(report)

    def _progress(
        self, phase: str, table: str, rows: int, table_rows: int, done: int, total: int = -1
    ) -> None:
        if self.on_progress is not None:
            total = self._expected if total < 0 else total
            self.on_progress(TransferProgress(phase, table, rows, table_rows, done, total))


def _first_line(error: psycopg.Error) -> str:
    """Return the server's message and where in the file it arose, on one line."""
    diag = error.diag
    context = (diag.context or "").splitlines()
    where = f" ({context[0]})" if context else ""
    return f"{diag.message_primary or str(error).splitlines()[0]}{where}"
