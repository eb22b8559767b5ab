"""Make a server archive its WAL, and prove end to end that it does.

:func:`archiving_plan` compares the server's settings with what point-in-time recovery
needs and, with ``apply``, changes them through ALTER SYSTEM, saying which need a
restart. :func:`check_archiving` switches to a new WAL segment and waits until the one
just finished is in storage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from pgwarden.backup.storage import Storage
from pgwarden.backup.wal.archive import DEFAULT_CLUSTER, list_wal
from pgwarden.backup.wal.names import parse_wal_name
from pgwarden.backup.wal.spool import archive_command
from pgwarden.errors import PgwardenError, UserError

__all__ = [
    "ArchiveCheck",
    "ArchivingPlan",
    "SettingChange",
    "archiving_plan",
    "check_archiving",
]

_SETTINGS = sa.text(
    """
    SELECT name, setting, context
    FROM pg_settings
    WHERE name = ANY(:names)
    """
)


@dataclass(frozen=True, slots=True)
class SettingChange:
    """One setting: what it is, what archiving wants, and whether changing it needs a restart."""

    name: str
    current: str
    wanted: str
    restart: bool

    @property
    def statement(self) -> str:
        """Return the ALTER SYSTEM statement that makes the change."""
        return f"ALTER SYSTEM SET {self.name} = {_literal(self.wanted)}"


@dataclass(frozen=True, slots=True)
class ArchivingPlan:
    """The changes archiving needs, whether they were applied, and whether to restart."""

    changes: tuple[SettingChange, ...]
    applied: bool
    restart_needed: bool

    @property
    def statements(self) -> list[str]:
        """Return the ALTER SYSTEM statements, in order."""
        return [change.statement for change in self.changes]


def _literal(value: str) -> str:
    if "\\" in value or "\0" in value:
        raise UserError(f"the setting value {value!r} holds a backslash or a NUL byte.")
    return "'" + value.replace("'", "''") + "'"


def archiving_plan(
    conn: sa.Connection,
    *,
    spool: Path,
    archive_timeout: int = 60,
    apply: bool = False,
) -> ArchivingPlan:
    """Return what the server needs to archive WAL through ``spool``; with ``apply``, do it.

    Applied with ALTER SYSTEM and a reload; ``wal_level`` and ``archive_mode`` take
    effect only after a restart, which :attr:`ArchivingPlan.restart_needed` says.
    """
    major = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000
    wanted = {
        "archive_mode": "on",
        "archive_command": archive_command(spool),
        "archive_timeout": str(archive_timeout),
    }
    if major >= 17:
        wanted["summarize_wal"] = "on"
    rows = conn.execute(_SETTINGS, {"names": [*wanted, "wal_level"]}).all()
    current = {row.name: (row.setting, row.context) for row in rows}
    changes = []
    if current["wal_level"][0] == "minimal":
        changes.append(SettingChange("wal_level", "minimal", "replica", True))
    for name, value in wanted.items():
        setting, context = current[name]
        same = setting == value or (name == "archive_mode" and setting == "always")
        if name == "archive_timeout" and setting != "0":
            same = True  # the user's own choice is kept
        if not same:
            changes.append(SettingChange(name, setting, value, context == "postmaster"))
    if apply and changes:
        for change in changes:
            conn.execute(sa.text(change.statement))
        conn.execute(sa.text("SELECT pg_reload_conf()"))
    return ArchivingPlan(
        changes=tuple(changes),
        applied=apply and bool(changes),
        restart_needed=any(change.restart for change in changes),
    )


_STREAMS = sa.text(
    "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pgwarden wal stream'"
)


@dataclass(frozen=True, slots=True)
class ArchiveCheck:
    """The segment switched to storage, and how long it took to arrive."""

    segment: str
    seconds: float


def check_archiving(
    conn: sa.Connection,
    storage: Storage,
    *,
    cluster: str = DEFAULT_CLUSTER,
    timeout: float = 60,
) -> ArchiveCheck:
    """Switch to a new WAL segment and wait until the one finished is in ``storage``.

    The segment may come through archive_command or through `pgwarden wal stream`; with
    archive_mode off, a stream must be connected.
    """
    begun = time.monotonic()
    mode = conn.execute(sa.text("SHOW archive_mode")).scalar_one()
    streams = conn.execute(_STREAMS).scalar_one()
    if mode == "off" and not streams:
        raise UserError(
            "the server does not archive WAL (archive_mode is off) and no "
            "`pgwarden wal stream` is connected.",
            hint="Run `pgwarden pitr setup --apply`, then restart the server; or run "
            "`pgwarden wal stream`.",
        )
    # A switch at the very start of a segment does nothing and names the empty segment:
    # a record first (as pgBackRest's check does) makes sure there is one to finish.
    conn.execute(sa.text("SELECT pg_create_restore_point('pgwarden archive check')"))
    segment = conn.execute(sa.text("SELECT pg_walfile_name(pg_switch_wal())")).scalar_one()
    parse_wal_name(segment)
    folder = segment[:16] + "/"
    while time.monotonic() - begun < timeout:
        if any(item.name == segment for item in list_wal(storage, cluster=cluster, folder=folder)):
            return ArchiveCheck(segment, time.monotonic() - begun)
        time.sleep(0.1)
    failed = conn.execute(
        sa.text("SELECT last_failed_wal, last_failed_time FROM pg_stat_archiver")
    ).one()
    detail = (
        f" The server last failed to archive {failed[0]} at {failed[1]:%Y-%m-%d %H:%M:%S}."
        if failed[0]
        else ""
    )
    raise PgwardenError(
        f"WAL segment {segment} did not reach {storage.url} within {timeout:.0f} s.{detail}",
        hint="Check that `pgwarden wal archive` runs and that archive_command is the one "
        "`pgwarden pitr setup` shows; the server log says why archiving fails.",
    )
