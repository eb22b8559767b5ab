"""Archive WAL to storage and fetch it back, for point-in-time recovery.

- :mod:`pgwarden.backup.wal.names`: WAL file names, checked strictly, and LSNs;
- :mod:`pgwarden.backup.wal.archive`: :func:`push_wal`, :func:`fetch_wal`,
  :func:`list_wal`: one file at a time, compressed, checksummed, encrypted;
- :mod:`pgwarden.backup.wal.spool`: the long-lived archiver and the restore prefetch
  behind archive_command and restore_command scripts;
- :mod:`pgwarden.backup.wal.stream`: ``pg_receivewal`` on a replication slot, supervised,
  for a near-zero RPO (`pgwarden wal stream`).

See ``docs/pitr.md``.
"""

from __future__ import annotations

from pgwarden.backup.wal.archive import (
    DEFAULT_CLUSTER,
    ArchivedWal,
    PushResult,
    fetch_wal,
    find_wal,
    list_wal,
    push_partial,
    push_wal,
    wal_prefix,
)
from pgwarden.backup.wal.names import WalName, format_lsn, parse_lsn, parse_wal_name
from pgwarden.backup.wal.spool import (
    ArchiverStats,
    WalPrefetch,
    archive_command,
    prepare_spool,
    run_archiver,
)

__all__ = [
    "DEFAULT_CLUSTER",
    "ArchivedWal",
    "ArchiverStats",
    "PushResult",
    "WalName",
    "WalPrefetch",
    "archive_command",
    "fetch_wal",
    "find_wal",
    "format_lsn",
    "list_wal",
    "parse_lsn",
    "parse_wal_name",
    "prepare_spool",
    "push_partial",
    "push_wal",
    "run_archiver",
    "wal_prefix",
]
