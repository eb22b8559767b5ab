"""Retention that understands WAL: a segment goes only when no kept base backup needs it.

The newest base backups, those that end within ``window`` (or only the oldest kept, without
one), keep every segment from their start onwards: any moment since can be restored.
Older base backups, kept by the grandfather-father-son policy of ``pgwarden backup
expire``, keep just the segments their own consistency needs, from their start to their
stop LSN. Timeline history files are always kept; with no base backup, nothing goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pgwarden.backup.lock import Lock
from pgwarden.backup.manifest import storage_name
from pgwarden.backup.physical import BaseBackup, list_base_backups
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.archive import DEFAULT_CLUSTER, ArchivedWal, list_wal
from pgwarden.backup.wal.names import parse_lsn, segment_of

__all__ = ["WalExpiry", "expire_wal"]


@dataclass(frozen=True, slots=True)
class WalExpiry:
    """The WAL files expire removes (or would, in a dry run), and what it keeps."""

    cluster: str
    removed: tuple[ArchivedWal, ...]
    kept: int
    continuous_from: str | None  # the base backup from which every segment is kept
    dry_run: bool

    @property
    def removed_bytes(self) -> int:
        """Return the stored bytes of the files removed."""
        return sum(item.size for item in self.removed)


def _needed(item: ArchivedWal, backups: list[BaseBackup], anchor: BaseBackup) -> bool:
    if item.wal.kind == "history":
        return True
    size = anchor.segment_size
    number = item.wal.number(size)
    anchor_start = segment_of(parse_lsn(anchor.start_lsn), size)
    if item.wal.timeline >= anchor.timeline and (
        number >= anchor_start or item.wal.timeline > anchor.timeline
    ):
        return True
    return any(
        item.wal.timeline == backup.timeline
        and segment_of(parse_lsn(backup.start_lsn), size)
        <= number
        <= segment_of(parse_lsn(backup.stop_lsn), size)
        for backup in backups
    )


def expire_wal(
    storage: Storage,
    *,
    cluster: str = DEFAULT_CLUSTER,
    window: timedelta | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> WalExpiry:
    """Remove the archived WAL no kept base backup needs (see the module's docstring)."""
    now = now or datetime.now(UTC)

    def plan() -> tuple[list[ArchivedWal], int, BaseBackup | None]:
        backups = list_base_backups(storage, cluster=cluster)
        archived = list_wal(storage, cluster=cluster)
        if not backups:
            return [], len(archived), None
        recent = [b for b in backups if window is None or b.ended_at >= now - window]
        anchor = recent[0] if recent else backups[-1]
        removed = [item for item in archived if not _needed(item, backups, anchor)]
        return removed, len(archived) - len(removed), anchor

    if dry_run:
        removed, kept, anchor = plan()
    else:
        with Lock(storage, storage_name(cluster), purpose="expire-wal"):
            removed, kept, anchor = plan()
            for item in removed:
                storage.delete(item.key)
    return WalExpiry(
        cluster=cluster,
        removed=tuple(removed),
        kept=kept,
        continuous_from=anchor.id if anchor else None,
        dry_run=dry_run,
    )
