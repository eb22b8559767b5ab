"""Show backups to people: progress bars while bytes move, tables and summaries after."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as ProgressBar
from rich.table import Table
from rich.text import Text

from pgwarden._units import format_size
from pgwarden.backup.catalog import BackupEntry, ExpireReport
from pgwarden.backup.manifest import Manifest
from pgwarden.backup.progress import BackupProgress
from pgwarden.cli.render import key_value_table, table
from pgwarden.urls import redact_url

__all__ = [
    "Bars",
    "entry_summary",
    "expire_summary",
    "print_entries",
    "print_expire",
    "print_info",
]

_PHASES = {
    "dump": "dump",
    "upload": "upload",
    "check": "check checksums",
    "download": "download",
    "restore": "restore",
}


class Bars:
    """Draw one bar per phase on stderr, only when stdout is a terminal and not --json."""

    def __init__(self, *, as_json: bool) -> None:
        self.enabled = not as_json and sys.stdout.isatty()
        self._bar = ProgressBar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Bars:
        if self.enabled:
            self._bar.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.enabled:
            self._bar.stop()

    def __call__(self, progress: BackupProgress) -> None:
        if not self.enabled:
            return
        task = self._tasks.get(progress.phase)
        if task is None:
            label = _PHASES.get(progress.phase, progress.phase)
            task = self._bar.add_task(label, total=progress.total)
            self._tasks[progress.phase] = task
        self._bar.update(task, completed=progress.done, total=progress.total)


def _when(moment: datetime | None) -> str | None:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment else None


def entry_summary(entry: BackupEntry) -> dict[str, Any]:
    """Return one backup as the stable JSON object of ``backup list``."""
    manifest = entry.manifest
    record = entry.verification
    return {
        "id": entry.id,
        "database": entry.database,
        "kind": entry.kind,
        "status": entry.status,
        "started_at": entry.started_at.isoformat(),
        "ended_at": entry.ended_at.isoformat() if entry.ended_at else None,
        "size": entry.size,
        "objects": entry.objects,
        "pinned": entry.pinned,
        "verified_at": entry.verified_at.isoformat() if entry.verified_at else None,
        "last_verify_ok": record.ok if record else None,
        "encrypted": manifest.encrypted if manifest else None,
        "format": manifest.dump_format if manifest else None,
        "prefix": entry.prefix,
        "problem": entry.problem.message if entry.problem else None,
    }


def print_entries(console: Console, entries: list[BackupEntry]) -> None:
    """Print backups as a table, newest first."""
    if not entries:
        console.print("No backups.")
        return
    grid = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, collapse_padding=True)
    for name in ("id", "database", "status", "size", "took", "verified", "pinned"):
        grid.add_column(
            name, no_wrap=name in ("id", "status"), overflow="fold", min_width=len(name)
        )
    for entry in entries:
        record = entry.verification
        verified = (
            "-" if record is None else f"ok {record.verified_at:%m-%d}" if record.ok else "FAILED"
        )
        took = f"{entry.manifest.duration_seconds:.1f} s" if entry.manifest is not None else "-"
        pinned = "yes" if entry.pinned else ""
        cells = (
            entry.id,
            entry.database,
            entry.status,
            format_size(entry.size),
            took,
            verified,
            pinned,
        )
        grid.add_row(*(Text(cell) for cell in cells))
    console.print(grid)
    for entry in entries:
        if entry.problem is not None:
            console.print(Text(f"{entry.id}: {entry.problem.message}", style="red"))


def print_info(console: Console, entry: BackupEntry) -> None:
    """Print one backup: what the manifest says, and the last verification."""
    manifest = entry.manifest
    rows: list[tuple[str, Any]] = [
        ("id", entry.id),
        ("database", entry.database),
        ("status", entry.status),
        ("started", _when(entry.started_at)),
        ("stored at", entry.prefix),
        ("size", format_size(entry.size)),
        ("pinned", "yes" if entry.pinned else "no"),
    ]
    if manifest is not None:
        rows += _manifest_rows(manifest)
    base = entry.base_backup
    if base is not None:
        rows += [
            ("took", f"{(base.ended_at - base.started_at).total_seconds():.1f} s"),
            ("server", base.server_version),
            ("timeline", base.timeline),
            ("WAL", f"{base.start_lsn} to {base.stop_lsn}"),
            ("incremental from", base.incremental_from or "- (a full backup)"),
            ("encryption", f"key {base.key_id}" if base.key_id else "none"),
        ]
    record = entry.verification
    if record is not None:
        outcome = "ok" if record.ok else f"FAILED: {record.error}"
        rows.append(("verified", f"{_when(record.verified_at)} ({record.scratch}): {outcome}"))
        if record.restore_seconds is not None:
            rows.append(("restore took", f"{record.restore_seconds:.1f} s"))
        if record.amcheck is not None:
            rows.append(("amcheck", _amcheck(record)))
    console.print(key_value_table(rows, title=f"backup {entry.id}"))
    if manifest is not None:
        counted = [(t.qualified, t.rows, t.parent) for t in manifest.tables]
        console.print(table(["table", "rows", "partition of"], counted))


def _manifest_rows(manifest: Manifest) -> list[tuple[str, Any]]:
    options = manifest.options
    chosen = [f"{k}={','.join(v)}" for k, v in options.items() if isinstance(v, list) and v]
    return [
        ("took", f"{manifest.duration_seconds:.1f} s"),
        ("source", redact_url(manifest.database_url)),  # older manifests were not redacted
        ("server", manifest.server_version),
        ("pg_dump", manifest.client_version),
        ("format", f"{manifest.dump_format}, {options.get('section', 'all')}"),
        ("compression", manifest.compression.spec),
        ("encryption", f"key {manifest.key_id}" if manifest.key_id else "none"),
        ("selection", "; ".join(chosen) or "whole database"),
        ("row counts", manifest.row_counts),
        ("tables", len(manifest.tables)),
        ("large objects", manifest.large_objects),
        ("files", ", ".join(f"{f.name} ({format_size(f.size)})" for f in manifest.files)),
    ]


def _amcheck(record: Any) -> str:
    amcheck = record.amcheck
    if not amcheck.available:
        return amcheck.reason or "not run"
    bad = len(amcheck.failures)
    return f"{amcheck.indexes_checked} B-tree indexes checked, {bad} inconsistent"


def print_expire(console: Console, report: ExpireReport) -> None:
    """Print each backup's fate and the reasons."""
    if not report.decisions:
        console.print(f"No backups of {report.database}.")
        return
    verb = ("keep", "would remove") if report.dry_run else ("kept", "removed")
    rows = [
        (d.backup.id, d.backup.status, verb[0] if d.keep else verb[1], "; ".join(d.reasons))
        for d in report.decisions
    ]
    console.print(table(["id", "status", "decision", "why"], rows))
    removed = len(report.removed)
    what = "would be removed (dry run, nothing changed)" if report.dry_run else "removed"
    console.print(f"{removed} backup{'s' if removed != 1 else ''} {what}, {len(report.kept)} kept.")


def expire_summary(report: ExpireReport) -> dict[str, Any]:
    """Return an expire report as the stable JSON object of ``backup expire``."""
    return {
        "database": report.database,
        "dry_run": report.dry_run,
        "removed": report.removed,
        "kept": report.kept,
        "decisions": [
            {
                "id": d.backup.id,
                "status": d.backup.status,
                "keep": d.keep,
                "reasons": list(d.reasons),
            }
            for d in report.decisions
        ],
    }
