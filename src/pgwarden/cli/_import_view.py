"""How ``pgwarden import``, ``import-csv`` and ``erase-user`` show their results and progress."""

from __future__ import annotations

import json

from rich.console import Console
from rich.text import Text

from pgwarden.cli.render import RowProgressView, jsonable, table
from pgwarden.transfer import (
    EraseReport,
    ImportReport,
    RollbackRefused,
    RollbackReport,
    Run,
    TransferProgress,
)

__all__ = [
    "ImportProgressView",
    "print_erase",
    "print_import",
    "print_refusal",
    "print_rollback",
    "print_runs",
]

_PHASES = {"load": "loading", "merge": "writing"}


class ImportProgressView(RowProgressView):
    """Show progress on stderr: one bar a phase with rows/s and an ETA on a terminal,
    JSON lines with ``--json``, nothing otherwise."""

    def progress(self, event: TransferProgress) -> None:
        """Show one progress event."""
        if self.json:
            self.emit({"event": "progress", **jsonable(event)})
            return
        description = f"{_PHASES.get(event.phase, event.phase)} {event.table}"
        self.bars.update(event.phase, description, event.done, event.total)


def _key(key: object) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def print_import(console: Console, report: ImportReport) -> None:
    """Print an import's report: counts per table, conflicts, refused rows, the outcome."""
    for warning in report.warnings:
        console.print(Text.assemble(("schema drift:", "bold yellow"), " ", warning), soft_wrap=True)
    columns = ["table", "rows", "inserted", "updated", "unchanged", "deleted"]
    columns += ["conflicts", "refused"]
    rows = [
        (t.table, t.rows, t.inserted, t.updated, t.unchanged, t.deleted, t.conflicts, t.failed)
        for t in report.tables
    ]
    console.print(table(columns, rows))
    for t in report.tables:
        if t.conflicts:
            keys = ", ".join(_key(k) for k in t.conflict_keys)
            more = " ..." if t.conflicts > len(t.conflict_keys) else ""
            console.print(
                Text.assemble(
                    ("conflicts:", "bold red"),
                    f" {t.table}: {t.conflicts} row(s) whose key exists already: {keys}{more}",
                ),
                soft_wrap=True,
            )
        for error in t.errors:
            where = f" row {error.row}" if error.row is not None else ""
            key = f" {_key(error.key)}" if error.key is not None else ""
            detail = f" ({error.detail})" if error.detail else ""
            console.print(_refused(f"{t.table}{where}{key}: {error.error}{detail}"), soft_wrap=True)
        if t.failed > len(t.errors) and t.errors:
            console.print(f"  ... {t.failed - len(t.errors)} more row(s) refused in {t.table}")
    for error in report.errors:
        console.print(_refused(error.error), soft_wrap=True)
    totals = report.totals
    changed = totals["inserted"] + totals["updated"] + totals["deleted"]
    if report.dry_run:
        outcome = "would succeed" if report.ok else "would fail"
        console.print(
            f"Dry run: {changed} row(s) would change; the import {outcome}. Nothing was written."
        )
    elif report.ok:
        console.print(
            f"Imported: {changed} row(s) changed, as run {report.run_id}"
            f" (undo with `pgwarden import rollback {report.run_id}`)."
        )


def _refused(what: str) -> Text:
    return Text.assemble(("refused:", "bold red"), " ", what)


def print_runs(console: Console, runs: list[Run]) -> None:
    """Print the recorded runs, newest first."""
    if not runs:
        console.print("No import or erase has been recorded in this database.")
        return
    rows = []
    for run in runs:
        changed = sum(
            counts.get(name, 0)
            for counts in run.tables.values()
            for name in ("inserted", "updated", "deleted", "anonymized", "nullified")
        )
        source = run.source.get("bundle") or run.source.get("csv") or run.source.get("user_id")
        if run.kind == "erase":
            source = f"{run.source.get('user_table')} id {run.source.get('user_id')}"
        rows.append(
            (
                run.id, run.kind, run.mode, run.status, f"{run.started_at:%Y-%m-%d %H:%M:%S}",
                changed, run.journal_rows, source,
            )
        )  # fmt: skip
    headers = ["run", "kind", "mode", "status", "started", "rows changed", "journal", "source"]
    console.print(table(headers, rows))


def print_rollback(console: Console, report: RollbackReport) -> None:
    """Print what a rollback did, or would do."""
    rows = [(t.table, t.deleted, t.restored, t.reinserted) for t in report.tables]
    console.print(table(["table", "deleted", "restored", "re-inserted"], rows))
    if report.dry_run:
        console.print(f"Dry run: run {report.run_id} can be rolled back. Nothing was changed.")
    else:
        console.print(f"Run {report.run_id} rolled back.")


def print_refusal(console: Console, refused: RollbackRefused) -> None:
    """Print the rows that stop a rollback."""
    rows = [(c.table, _key(c.key), c.why) for c in refused.changed]
    console.print(table(["table", "key", "since the run"], rows))
    if refused.total > len(refused.changed):
        console.print(f"... and {refused.total - len(refused.changed)} more.")


def print_erase(console: Console, report: EraseReport) -> None:
    """Print what an erase did, or would do, table by table."""
    if report.anonymize:
        rows = [(t.table, t.anonymized, t.nullified) for t in report.tables]
        console.print(table(["table", "anonymized", "unlinked"], rows))
    else:
        rows = [(t.table, t.deleted, t.nullified) for t in report.tables]
        console.print(table(["table", "deleted", "unlinked (key set to NULL)"], rows))
    if report.kept:
        kept = [(f"{k.table}.{k.column}", k.reason) for k in report.kept]
        console.print(table(["column left as it was", "why"], kept))
    who = f"{report.user_table} id {report.user_id}"
    if report.dry_run:
        console.print(f"Dry run: {who} would be erased as above. Nothing was changed.")
        return
    console.print(f"Erased {who} as run {report.run_id}.")
    if report.journal_purged:
        console.print("The journal was purged: no copy of the erased values is kept.")
    else:
        console.print(
            Text.assemble(
                ("note:", "bold yellow"),
                f" the journal of run {report.run_id} keeps the erased values so it can be"
                f" rolled back; `pgwarden import purge {report.run_id}` deletes them.",
            ),
            soft_wrap=True,
        )
