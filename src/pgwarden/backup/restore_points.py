"""Named restore points, made on the server and recorded in the archive's storage.

``pg_create_restore_point`` writes a named mark into the WAL; recovery can stop there
(``--target-name``). PostgreSQL keeps no index of the names, so pgwarden records each
one it makes under ``<cluster>/restore-points/``, with its LSN, timeline and time: a
restore to a name then starts from the newest base backup that ends before it, not
simply the newest one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime

import sqlalchemy as sa

from pgwarden.backup.manifest import storage_name
from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.archive import DEFAULT_CLUSTER
from pgwarden.backup.wal.names import format_lsn, parse_lsn
from pgwarden.errors import UserError

__all__ = ["RestorePoint", "create_restore_point", "restore_points"]

log = logging.getLogger("pgwarden.backup")

FOLDER = "restore-points"


@dataclass(frozen=True, slots=True)
class RestorePoint:
    """A restore point: its name, where it is in the WAL, and when it was made."""

    name: str
    lsn: str
    timeline: int
    created_at: datetime
    cluster: str


def _prefix(cluster: str) -> str:
    return f"{storage_name(cluster)}/{FOLDER}/"


def create_restore_point(
    conn: sa.Connection, storage: Storage, name: str, *, cluster: str = DEFAULT_CLUSTER
) -> RestorePoint:
    """Create the restore point ``name`` on the server and record it in ``storage``."""
    if not name or len(name) > 63 or "\x00" in name:
        raise UserError(
            f"{name[:80]!r} cannot name a restore point.",
            hint="A restore point's name is 1 to 63 characters.",
        )
    row = conn.execute(
        sa.text(
            "SELECT pg_create_restore_point(:name)::text AS lsn,"
            " (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline,"
            " clock_timestamp() AS created_at"
        ),
        {"name": name},
    ).one()
    conn.commit()
    point = RestorePoint(name, row.lsn, int(row.timeline), row.created_at, cluster)
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    key = f"{_prefix(cluster)}{parse_lsn(point.lsn):016X}-{digest}.json"
    record = {**asdict(point), "created_at": point.created_at.isoformat()}
    storage.write_bytes(key, json.dumps(record, indent=2).encode())
    log.info("restore point %r at %s recorded", name, point.lsn)
    return point


def restore_points(
    storage: Storage, *, cluster: str = DEFAULT_CLUSTER, name: str | None = None
) -> list[RestorePoint]:
    """Return the recorded restore points of ``cluster`` (named ``name``), oldest first.

    Records are read from storage, so untrusted: one that does not parse is skipped.
    """
    found = []
    for info in storage.list(_prefix(cluster)):
        try:
            data = json.loads(storage.read_bytes(info.key))
            point = RestorePoint(
                name=str(data["name"]),
                lsn=format_lsn(parse_lsn(data["lsn"])),
                timeline=int(data["timeline"]),
                created_at=datetime.fromisoformat(data["created_at"]),
                cluster=cluster,
            )
        except (ValueError, KeyError, TypeError, UserError):
            log.warning("ignored %r: not a restore point record", info.key)
            continue
        if name is None or point.name == name:
            found.append(point)
    found.sort(key=lambda point: parse_lsn(point.lsn))
    return found
