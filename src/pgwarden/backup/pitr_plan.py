"""Plan a point-in-time restore: the recovery target, the base backup, every WAL file.

:func:`plan_restore` chooses the base backup, follows the timelines from it through the
archived history files, and lists every WAL file the restore will read; a gap refuses the
restore before anything is written, naming the missing segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.errors import BackupNotFound, WalMissing
from pgwarden.backup.physical import BaseBackup, list_base_backups
from pgwarden.backup.restore_points import RestorePoint, restore_points
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.archive import DEFAULT_CLUSTER, ArchivedWal, list_wal, read_wal
from pgwarden.backup.wal.names import parse_lsn, segment_name, segment_of
from pgwarden.errors import UserError

__all__ = ["ACTIONS", "RecoveryTarget", "RestorePlan", "plan_restore"]

ACTIONS = ("promote", "pause")


@dataclass(frozen=True, slots=True)
class RecoveryTarget:
    """Where recovery stops: one of a time, an LSN, a restore point's name, or the end."""

    time: datetime | None = None
    lsn: str | None = None
    name: str | None = None
    xid: str | None = None
    action: str = "promote"

    def __post_init__(self) -> None:
        given = [v for v in (self.time, self.lsn, self.name, self.xid) if v is not None]
        if len(given) > 1:
            raise UserError(
                "give one recovery target: --target-time, --target-lsn, --target-xid, "
                "--target-name, or --latest.",
                hint="Recovery stops at the first target reached; choose one.",
            )
        if self.action not in ACTIONS:
            raise UserError(f"--target-action must be one of {', '.join(ACTIONS)}.")
        if self.lsn is not None:
            parse_lsn(self.lsn)
        if self.xid is not None and not self.xid.isdigit():
            raise UserError(f"{self.xid!r} is not a transaction id (a whole number).")
        if self.name is not None and (not self.name or len(self.name) > 63):
            raise UserError("a restore point's name is 1 to 63 characters.")
        if self.time is not None and self.time.tzinfo is None:
            raise UserError(
                f"the target time {self.time.isoformat()} has no time zone.",
                hint="Give it with one: 2026-12-07T10:15:00+00:00 or ...Z.",
            )

    @property
    def latest(self) -> bool:
        """Return whether recovery runs to the end of the archived WAL."""
        return all(v is None for v in (self.time, self.lsn, self.name, self.xid))

    def settings(self) -> dict[str, str]:
        """Return the recovery_target_* settings."""
        if self.latest:
            return {}
        values = {"recovery_target_action": self.action}
        if self.time is not None:
            values["recovery_target_time"] = self.time.astimezone(UTC).isoformat()
        elif self.lsn is not None:
            values["recovery_target_lsn"] = self.lsn
        elif self.xid is not None:
            values["recovery_target_xid"] = self.xid
        elif self.name is not None:
            values["recovery_target_name"] = self.name
        return values


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """The base backup a restore starts from and every WAL file it will read."""

    backup: BaseBackup
    timelines: tuple[tuple[int, str | None], ...]  # (timeline, switch LSN or None: open)
    wal: tuple[ArchivedWal, ...]
    target: RecoveryTarget


def _history(
    storage: Storage, item: ArchivedWal, keyring: BackupKeyring | None
) -> list[tuple[int, int]]:
    entries = []
    for line in read_wal(storage, item, keyring=keyring).decode("ascii", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            entries.append((int(parts[0]), parse_lsn(parts[1])))
    return entries


def _timelines(
    storage: Storage, archived: list[ArchivedWal], base: int, keyring: BackupKeyring | None
) -> list[tuple[int, int | None]]:
    """Return the path of timelines from ``base`` to the newest one forked from it."""
    histories = [a for a in archived if a.wal.kind == "history"]
    for item in sorted(histories, key=lambda a: a.wal.timeline, reverse=True):
        entries = _history(storage, item, keyring)
        if any(parent == base for parent, _ in entries):
            path: list[tuple[int, int | None]] = [(p, lsn) for p, lsn in entries if p >= base]
            return [*path, (item.wal.timeline, None)]
    return [(base, None)]


def _choose_backup(
    backups: list[BaseBackup],
    target: RecoveryTarget,
    backup_id: str | None,
    points: list[RestorePoint] | None = None,
) -> BaseBackup:
    if backup_id is not None:
        chosen = [b for b in backups if b.id == backup_id]
        if not chosen:
            raise BackupNotFound(f"there is no complete base backup {backup_id}.")
        return chosen[0]
    usable = list(backups)
    if target.time is not None:
        usable = [b for b in usable if b.ended_at < target.time]
    if target.lsn is not None:
        usable = [b for b in usable if parse_lsn(b.stop_lsn) <= parse_lsn(target.lsn)]
    if target.name is not None and points:
        newest = max(parse_lsn(point.lsn) for point in points)
        usable = [b for b in usable if parse_lsn(b.stop_lsn) <= newest]
    elif target.name is not None:
        # Not recorded by pgwarden: where the name lies is unknown, so start from the
        # oldest base backup, which precedes any restore point a restore can reach.
        usable = usable[:1]
    if not usable:
        raise BackupNotFound(
            "no base backup ends before the recovery target.",
            hint="Restore to a later moment, or take base backups more often "
            "(`pgwarden pitr backup`).",
        )
    return usable[-1]


def plan_restore(
    storage: Storage,
    target: RecoveryTarget,
    *,
    cluster: str = DEFAULT_CLUSTER,
    backup_id: str | None = None,
    keyring: BackupKeyring | None = None,
    use_partial: bool = False,
) -> RestorePlan:
    """Choose the base backup and the WAL files; raise :class:`WalMissing` at a gap.

    With ``target.name``, the base backup is the newest that ends before the newest
    restore point of that name recorded by :func:`create_restore_point`; a name pgwarden
    did not record starts from the oldest base backup. With ``use_partial``, the
    archived partial segment (`pgwarden wal stream`) at the open end of the newest
    timeline is replayed too.
    """
    points = restore_points(storage, cluster=cluster, name=target.name) if target.name else None
    backup = _choose_backup(list_base_backups(storage, cluster=cluster), target, backup_id, points)
    archived = list_wal(storage, cluster=cluster)
    path = _timelines(storage, archived, backup.timeline, keyring)
    size = backup.segment_size
    by_tli: dict[int, dict[int, ArchivedWal]] = {}
    partials: dict[tuple[int, int], ArchivedWal] = {}
    for item in archived:
        if item.wal.kind == "segment":
            by_tli.setdefault(item.wal.timeline, {})[item.wal.number(size)] = item
        elif item.wal.kind == "partial" and use_partial:
            partials[(item.wal.timeline, item.wal.number(size))] = item
    first = segment_of(parse_lsn(backup.start_lsn), size)
    needed_to = segment_of(parse_lsn(backup.stop_lsn), size)
    if target.lsn is not None:
        needed_to = max(needed_to, segment_of(parse_lsn(target.lsn), size))
    chosen: list[ArchivedWal] = []
    start = first
    for index, (tli, switch) in enumerate(path):
        have = by_tli.get(tli, {})
        later = by_tli.get(path[index + 1][0], {}) if index + 1 < len(path) else {}
        if switch is not None:
            end = segment_of(switch, size)
        elif target.lsn is not None:
            end = needed_to
        else:
            end = max([n for n in have if n >= start], default=start - 1)
            end = max(end, needed_to)
            if (tli, end + 1) in partials:
                end += 1
        for number in range(start, end + 1):
            found = have.get(number) or (later.get(number) if number == end else None)
            if found is None and switch is None and number == end:
                found = partials.get((tli, number))
            if found is None:
                raise WalMissing(
                    f"WAL segment {segment_name(tli, number, size)} is not in the archive "
                    f"{cluster!r}; the restore from base backup {backup.id} needs it.",
                    hint="A restore cannot pass a gap: restore to an LSN before it "
                    "(--target-lsn), or from a base backup taken after it.",
                )
            chosen.append(found)
        start = end
    histories = [a for a in archived if a.wal.kind == "history" and a.wal.timeline <= path[-1][0]]
    unique = {item.name: item for item in [*histories, *chosen]}
    return RestorePlan(
        backup=backup,
        timelines=tuple(
            (tli, None if s is None else f"{s >> 32:X}/{s & 0xFFFFFFFF:X}") for tli, s in path
        ),
        wal=tuple(unique.values()),
        target=target,
    )
