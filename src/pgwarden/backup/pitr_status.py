"""What a cluster's archive can restore: the recoverable window, its gaps and timeline forks."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import datetime

from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import ManifestInvalid
from pgwarden.backup.manifest import storage_name
from pgwarden.backup.physical import BaseBackup, list_base_backups
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.archive import DEFAULT_CLUSTER, list_wal, read_wal
from pgwarden.backup.wal.names import parse_lsn, segment_name, segment_of

__all__ = ["DrillRecord", "Fork", "Gap", "PitrStatus", "drill_records", "pitr_status"]

DRILLS = "drills/"


@dataclass(frozen=True, slots=True)
class Gap:
    """Segments missing from a timeline between two archived ones."""

    timeline: int
    first_missing: str
    last_missing: str


@dataclass(frozen=True, slots=True)
class Fork:
    """A timeline that branched from its parent at ``lsn`` (a restore that was promoted)."""

    timeline: int
    parent: int
    lsn: str


@dataclass(frozen=True, slots=True)
class DrillRecord:
    """One restore drill: when, to what moment, how long the restore took, and its result."""

    id: str
    started_at: datetime
    target_time: datetime
    seconds: float
    ok: bool
    backup_id: str
    wal_files: int
    detail: str

    def to_json(self) -> bytes:
        """Return the record as JSON."""
        data = {
            "id": self.id,
            "started_at": self.started_at.isoformat(),
            "target_time": self.target_time.isoformat(),
            "seconds": self.seconds,
            "ok": self.ok,
            "backup_id": self.backup_id,
            "wal_files": self.wal_files,
            "detail": self.detail,
        }
        return json.dumps(data, indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> DrillRecord:
        """Parse a record read from storage (untrusted)."""
        try:
            data = json.loads(raw)
            record = cls(
                id=str(data["id"]),
                started_at=datetime.fromisoformat(data["started_at"]),
                target_time=datetime.fromisoformat(data["target_time"]),
                seconds=float(data["seconds"]),
                ok=data["ok"] is True,
                backup_id=str(data["backup_id"]),
                wal_files=int(data["wal_files"]),
                detail=str(data["detail"])[:2000],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ManifestInvalid(f"a restore drill record is not valid: {exc}.") from None
        return record


@dataclass(frozen=True, slots=True)
class PitrStatus:
    """The recoverable window of one cluster's archive, and what breaks it."""

    cluster: str
    base_backups: tuple[BaseBackup, ...]
    window_start: datetime | None  # the oldest base backup's end: the earliest moment
    newest_segment: str | None  # recovery can reach the end of this segment
    archived_files: int
    archived_bytes: int
    timelines: tuple[int, ...]
    forks: tuple[Fork, ...]
    gaps: tuple[Gap, ...]
    last_drill: DrillRecord | None

    @property
    def recoverable(self) -> bool:
        """Return whether some moment can be restored: a base backup and no gap after it."""
        return bool(self.base_backups) and not self.gaps


def drill_records(storage: Storage, *, cluster: str = DEFAULT_CLUSTER) -> list[DrillRecord]:
    """Return the restore drills recorded for ``cluster``, oldest first (bad ones skipped)."""
    records = []
    for info in storage.list(f"{storage_name(cluster)}/{DRILLS}"):
        try:
            records.append(DrillRecord.from_json(storage.read_bytes(info.key)))
        except ManifestInvalid:
            continue
    records.sort(key=lambda r: r.started_at)
    return records


def pitr_status(
    storage: Storage, *, cluster: str = DEFAULT_CLUSTER, keyring: BackupKeyring | None = None
) -> PitrStatus:
    """Return the recoverable window of ``cluster``: base backups, WAL, gaps and forks."""
    backups = list_base_backups(storage, cluster=cluster)
    archived = list_wal(storage, cluster=cluster)
    size = backups[-1].segment_size if backups else 16 * 1024 * 1024
    oldest = min((segment_of(parse_lsn(b.start_lsn), size) for b in backups), default=None)
    numbers: dict[int, list[int]] = {}
    forks = []
    for item in archived:
        if item.wal.kind == "segment":
            numbers.setdefault(item.wal.timeline, []).append(item.wal.number(size))
        elif item.wal.kind == "history":
            lines = read_wal(storage, item, keyring=keyring).decode("ascii", "replace")
            entries = [line.split() for line in lines.splitlines() if line[:1].isdigit()]
            if entries and len(entries[-1]) >= 2:
                forks.append(Fork(item.wal.timeline, int(entries[-1][0]), entries[-1][1]))
    gaps = []
    for timeline, found in sorted(numbers.items()):
        found.sort()
        for before, after in itertools.pairwise(found):
            if after - before > 1 and (oldest is None or after > oldest):
                gaps.append(
                    Gap(
                        timeline,
                        segment_name(timeline, before + 1, size),
                        segment_name(timeline, after - 1, size),
                    )
                )
    segments = [item for item in archived if item.wal.kind == "segment"]
    drills = drill_records(storage, cluster=cluster)
    return PitrStatus(
        cluster=cluster,
        base_backups=tuple(backups),
        window_start=backups[0].ended_at if backups else None,
        newest_segment=max(segments, key=lambda i: i.wal).name if segments else None,
        archived_files=len(archived),
        archived_bytes=sum(item.size for item in archived),
        timelines=tuple(sorted(numbers)),
        forks=tuple(forks),
        gaps=tuple(gaps),
        last_drill=drills[-1] if drills else None,
    )
