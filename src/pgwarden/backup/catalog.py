"""The catalogue of logical backups in a storage: list, inspect, pin, delete, expire.

Everything is read from the storage itself, so every host sharing it sees the same
catalogue: a backup id with a ``manifest.json`` is complete, one without is incomplete
(running, or left by a crash), one whose manifest is not valid is unreadable (kept by
expire, refused by whatever needs the manifest). ``verify.json`` holds the last
verification and ``pinned.json`` pins a backup; the manifest itself is never rewritten.

:func:`expire_backups` applies :func:`~pgwarden.backup.retention.plan_retention` under
the database's storage lock: never the newest complete nor the newest verified backup,
nothing pinned; incomplete leftovers go once older than the grace period.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pgwarden.backup.errors import BackupNotFound, ManifestInvalid, StorageError
from pgwarden.backup.lock import Lock
from pgwarden.backup.manifest import (
    KIND,
    MANIFEST,
    PINNED,
    STARTED,
    VERIFY,
    Manifest,
    VerifyRecord,
    backup_time,
    check_backup_id,
    parse_started,
    storage_name,
)
from pgwarden.backup.retention import BackupRecord, RetentionPolicy, plan_retention
from pgwarden.backup.storage import LocalStorage, ObjectInfo, Storage
from pgwarden.errors import UserError

if TYPE_CHECKING:
    from pgwarden.backup.physical import BaseBackup

__all__ = [
    "BackupEntry",
    "DeleteReport",
    "ExpireDecision",
    "ExpireReport",
    "backup_info",
    "delete_backup",
    "expire_backups",
    "find_backup",
    "list_backups",
    "pin_backup",
    "unpin_backup",
]

log = logging.getLogger("pgwarden.backup")
_UNREADABLE = "manifest not valid: kept for inspection (`pgwarden backup delete` removes it)"
_KEY = re.compile(rf"^(?P<db>[^/]+)/{KIND}/(?P<id>\d{{8}}T\d{{6}}Z-[0-9a-f]{{4,16}})/(?P<rest>.+)$")


@dataclass(frozen=True, slots=True)
class BackupEntry:
    """One backup as the storage holds it, complete or not."""

    id: str
    database: str
    prefix: str
    complete: bool
    started_at: datetime
    ended_at: datetime | None
    size: int
    objects: int
    pinned: bool = False
    verification: VerifyRecord | None = None
    manifest: Manifest | None = field(default=None, repr=False)
    kind: str = KIND
    problem: ManifestInvalid | None = field(default=None, repr=False)
    base_backup: BaseBackup | None = field(default=None, repr=False)  # a physical one's

    @property
    def status(self) -> str:
        """Return ``complete``, ``incomplete``, or ``unreadable`` (a manifest not valid)."""
        if self.problem is not None:
            return "unreadable"
        return "complete" if self.complete else "incomplete"

    @property
    def verified_at(self) -> datetime | None:
        """Return when a verification last proved this backup good, if one did."""
        record = self.verification
        return record.verified_at if record is not None and record.ok else None

    def record(self) -> BackupRecord:
        """Return the backup as retention sees it."""
        return BackupRecord(
            id=self.id,
            started_at=self.started_at,
            ended_at=self.ended_at,
            complete=self.complete,
            verified_at=self.verified_at,
            pinned=self.pinned,
            kind=self.kind,
        )


def _group(objects: Iterable[ObjectInfo]) -> dict[tuple[str, str], list[ObjectInfo]]:
    groups: dict[tuple[str, str], list[ObjectInfo]] = {}
    for info in objects:
        match = _KEY.match(info.key)
        if match is not None:
            groups.setdefault((match["db"], match["id"]), []).append(info)
    return groups


def _entry(
    storage: Storage, segment: str, backup_id: str, objects: list[ObjectInfo]
) -> BackupEntry:
    prefix = f"{segment}/{KIND}/{backup_id}/"
    names = {info.key[len(prefix) :] for info in objects}
    manifest = verification = problem = None
    database = segment
    if MANIFEST in names:
        try:
            raw = storage.read_bytes(prefix + MANIFEST)
            manifest = Manifest.from_json(raw, backup_id=backup_id)
            database = manifest.database
        except ManifestInvalid as exc:  # shown by list, raised by whatever needs it
            log.info("%s", exc.message)
            problem = exc
    if manifest is None and STARTED in names:
        started = parse_started(storage.read_bytes(prefix + STARTED)).get("database")
        database = started if isinstance(started, str) and started else segment
    if VERIFY in names:
        try:
            verification = VerifyRecord.from_json(
                storage.read_bytes(prefix + VERIFY), backup_id=backup_id
            )
        except ManifestInvalid as exc:
            log.warning("backup %s: ignored: %s", backup_id, exc.message)
    return BackupEntry(
        id=backup_id,
        database=database,
        prefix=prefix,
        complete=manifest is not None,
        started_at=manifest.started_at if manifest else backup_time(backup_id),
        ended_at=manifest.ended_at if manifest else None,
        size=sum(info.size for info in objects),
        objects=len(objects),
        pinned=PINNED in names,
        verification=verification,
        manifest=manifest,
        problem=problem,
    )


def list_backups(storage: Storage, *, database: str | None = None) -> list[BackupEntry]:
    """Return the backups in ``storage`` (of ``database`` only, if given), newest first.

    Logical backups and physical base backups (whose ``database`` is the cluster's name)
    are one catalogue.
    """
    prefix = f"{storage_name(database)}/{KIND}/" if database else ""
    groups = _group(storage.list(prefix))
    entries = [_entry(storage, db, backup_id, objs) for (db, backup_id), objs in groups.items()]
    from pgwarden.backup.physical import physical_entries  # it builds on this module

    entries += physical_entries(storage, cluster=database)
    entries.sort(key=lambda e: (e.started_at, e.id), reverse=True)
    return entries


def find_backup(storage: Storage, backup_id: str, *, database: str | None = None) -> BackupEntry:
    """Return the backup ``backup_id``; raise :class:`BackupNotFound` if there is none."""
    check_backup_id(backup_id)
    from pgwarden.backup.physical import physical_entries  # it builds on this module

    prefix = f"{storage_name(database)}/{KIND}/" if database else ""
    found = [
        _entry(storage, segment, key_id, objects)
        for (segment, key_id), objects in _group(storage.list(prefix)).items()
        if key_id == backup_id
    ]
    found += [e for e in physical_entries(storage, cluster=database) if e.id == backup_id]
    if not found:
        raise BackupNotFound(
            f"there is no backup {backup_id} in {storage.url}.",
            hint="List the backups with `pgwarden backup list`; check --storage.",
        )
    if len(found) > 1:
        raise UserError(
            f"backup id {backup_id} is in several databases' backups in {storage.url}.",
            hint="Name the database with --database.",
        )
    return found[0]


def backup_info(storage: Storage, backup_id: str, *, database: str | None = None) -> BackupEntry:
    """Return the backup ``backup_id`` with its manifest and last verification.

    Raise :class:`ManifestInvalid` if its manifest is not valid.
    """
    entry = find_backup(storage, backup_id, database=database)
    if entry.problem is not None:
        raise entry.problem
    return entry


def complete_manifest(entry: BackupEntry) -> Manifest:
    """Return the manifest of ``entry``; raise if it is incomplete or not valid."""
    if entry.problem is not None:
        raise entry.problem
    if entry.manifest is None:
        raise UserError(
            f"backup {entry.id} is incomplete: it has no manifest (it is running, or it "
            "failed or was killed).",
            hint="Use a complete backup (`pgwarden backup list`); `pgwarden backup expire` "
            "removes incomplete ones.",
        )
    return entry.manifest


def pin_backup(storage: Storage, backup_id: str, *, reason: str | None = None) -> BackupEntry:
    """Pin a complete backup so that expire keeps it; return it."""
    entry = find_backup(storage, backup_id)
    if entry.base_backup is None:
        complete_manifest(entry)
    marker = {"pinned_at": datetime.now(UTC).isoformat(), "reason": reason}
    storage.write_bytes(entry.prefix + PINNED, json.dumps(marker, indent=2).encode())
    return find_backup(storage, backup_id)


def unpin_backup(storage: Storage, backup_id: str) -> BackupEntry:
    """Remove a backup's pin; unpinning an unpinned backup does nothing."""
    entry = find_backup(storage, backup_id)
    storage.delete(entry.prefix + PINNED)
    return find_backup(storage, backup_id)


@dataclass(frozen=True, slots=True)
class DeleteReport:
    """The backup deleted (or, in a dry run, that would be), and its objects."""

    backup: BackupEntry
    keys: tuple[str, ...]
    dry_run: bool


def _remove(storage: Storage, entry: BackupEntry) -> tuple[str, ...]:
    """Delete a backup's objects: the manifest first, so that it is never half complete."""
    keys = [info.key for info in storage.list(entry.prefix)]
    order = {entry.prefix + MANIFEST: 0, entry.prefix + STARTED: 2}
    keys.sort(key=lambda key: (order.get(key, 1), key))
    for key in keys:
        storage.delete(key)
    if isinstance(storage, LocalStorage):  # temporary files of a write that was killed
        directory = storage.root / entry.prefix
        for partial in storage.partials():
            if partial.is_relative_to(directory):
                with suppress(OSError):
                    partial.unlink()
        _prune(storage.root, directory)
    return tuple(keys)


def _prune(root: Path, directory: Path) -> None:
    while directory != root and directory.is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def delete_backup(
    storage: Storage, backup_id: str, *, force: bool = False, dry_run: bool = False
) -> DeleteReport:
    """Delete one backup. The newest complete one, a pinned one, or a base backup that a
    later incremental one builds on, needs ``force`` (the incremental one is then
    unusable).
    """
    entry = find_backup(storage, backup_id)
    if not force and entry.kind != KIND:
        _refuse_with_dependents(storage, entry)
    if not force:
        newest = next(
            (e for e in list_backups(storage, database=entry.database) if e.complete), None
        )
        if entry.pinned:
            raise UserError(
                f"backup {backup_id} is pinned.",
                hint=f"Unpin it first (`pgwarden backup unpin {backup_id}`), or add --force.",
            )
        if newest is not None and newest.id == backup_id:
            raise UserError(
                f"backup {backup_id} is the newest complete backup of {entry.database}.",
                hint="Add --force if you mean it: it is the backup a restore would need.",
            )
    if dry_run:
        return DeleteReport(entry, tuple(i.key for i in storage.list(entry.prefix)), True)
    with Lock(storage, storage_name(entry.database), purpose="delete"):
        return DeleteReport(entry, _remove(storage, entry), False)


def _refuse_with_dependents(storage: Storage, entry: BackupEntry) -> None:
    from pgwarden.backup.physical import list_base_backups

    later = [
        b.id
        for b in list_base_backups(storage, cluster=entry.database)
        if b.incremental_from == entry.id
    ]
    if later:
        raise UserError(
            f"base backup {entry.id} is the base of the incremental backup "
            f"{', '.join(later)}, which cannot be restored without it.",
            hint="Delete the incremental backups first, or add --force to make them unusable.",
        )


def _keep_bases(decisions: list[ExpireDecision]) -> list[ExpireDecision]:
    """Keep every base backup that a kept incremental base backup builds on."""
    by_id = {d.backup.id: d for d in decisions}
    for decision in list(by_id.values()):
        if not decision.keep:
            continue
        base = decision.backup.base_backup
        seen = set()
        while base is not None and base.incremental_from in by_id and base.id not in seen:
            seen.add(base.id)
            parent = by_id[base.incremental_from]
            if not parent.keep:
                reason = f"the incremental base backup {base.id} builds on it"
                parent = ExpireDecision(parent.backup, True, (*parent.reasons, reason))
                by_id[parent.backup.id] = parent
            base = parent.backup.base_backup
    return list(by_id.values())


@dataclass(frozen=True, slots=True)
class ExpireDecision:
    """One backup, whether expire keeps it, and why."""

    backup: BackupEntry
    keep: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExpireReport:
    """What expire kept and removed (or would, in a dry run), newest first."""

    database: str
    decisions: tuple[ExpireDecision, ...]
    dry_run: bool

    @property
    def removed(self) -> list[str]:
        """Return the ids of the backups removed (or to remove)."""
        return [d.backup.id for d in self.decisions if not d.keep]

    @property
    def kept(self) -> list[str]:
        """Return the ids of the backups kept."""
        return [d.backup.id for d in self.decisions if d.keep]


def expire_backups(
    storage: Storage,
    database: str,
    *,
    policy: RetentionPolicy | None = None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> ExpireReport:
    """Remove the backups of ``database`` that ``policy`` does not keep; say why for each.

    Holds the database's storage lock (not in a dry run, which changes nothing), so no
    backup of it runs meanwhile. Raise :class:`LockHeld` if one does.
    """
    now = now or datetime.now(UTC)

    def plan() -> tuple[ExpireDecision, ...]:
        entries = {e.id: e for e in list_backups(storage, database=database)}
        readable = (e.record() for e in entries.values() if e.problem is None)
        retention = plan_retention(readable, policy, now=now)
        decisions = [
            ExpireDecision(entries[d.backup.id], d.keep, d.reasons) for d in retention.decisions
        ]
        decisions += [
            ExpireDecision(e, True, (_UNREADABLE,)) for e in entries.values() if e.problem
        ]
        decisions = _keep_bases(decisions)
        decisions.sort(key=lambda d: (d.backup.started_at, d.backup.id), reverse=True)
        return tuple(decisions)

    if dry_run:
        return ExpireReport(database, plan(), True)
    with Lock(storage, storage_name(database), purpose="expire") as lock:
        decisions = plan()
        for decision in decisions:
            if not decision.keep:
                lock.check()
                try:
                    _remove(storage, decision.backup)
                except StorageError as exc:
                    raise StorageError(
                        f"expire could not remove backup {decision.backup.id}: {exc.message}",
                        hint=exc.hint,
                    ) from None
    return ExpireReport(database, decisions, False)
