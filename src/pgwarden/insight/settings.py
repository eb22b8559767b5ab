"""Review a short list of server settings that matter for health and visibility.

A dozen rules, each with its reason: two that leave the server unmaintained or its
statistics blind (``autovacuum``, ``track_counts``), memory left at defaults sized for
a small machine, and settings that leave slow queries, stuck transactions and I/O time
unseen. :func:`reviewed_settings` reads them from ``pg_settings``::

    with engine.connect() as conn:
        for finding in settings_findings(reviewed_settings(conn), ram_bytes=16 * 1024**3):
            print(finding.subject, finding.details["value"], "->", finding.details["suggested"])

Values are the ones this session sees, as ``SHOW`` does: a ``SET`` in the session, or
``ALTER ROLE … SET`` for its role, shows here. PostgreSQL cannot say how much memory
its machine has, so memory is suggested from ``ram_bytes`` when given; without it,
memory settings are reported only at their defaults, with the rule but no statement.
``shared_preload_libraries`` is visible only to roles with ``pg_read_all_settings``
(which ``pg_monitor`` includes); rules on settings a role cannot read are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden.insight._literals import literal
from pgwarden.insight.findings import Check, CheckResult, Finding, Severity

__all__ = ["Setting", "check_settings", "reviewed_settings", "settings_findings"]

MAX_CONNECTIONS = 500

_UNIT_BYTES = {"B": 1, "kB": 1024, "8kB": 8192, "MB": 1024**2}
_MB = 1024**2
_GB = 1024**3

# Where a value comes from when ALTER SYSTEM, which sets the server's, would not change it.
_OVERRIDDEN_BY = {
    "session": "a SET in this session",
    "client": "this connection's options",
    "user": "ALTER ROLE … SET",
    "database": "ALTER DATABASE … SET",
    "database user": "ALTER ROLE … IN DATABASE … SET",
}


@dataclass(frozen=True)
class Setting:
    """One server setting as ``pg_settings`` shows it to this session.

    ``value`` is as ``SHOW`` writes it (``128MB``); ``setting`` is the raw figure in
    ``unit``. ``context`` says what applying a change takes: ``postmaster`` a restart,
    the others a reload. ``pending_restart`` is true when a new value in the
    configuration waits for a restart.
    """

    name: str
    value: str
    setting: str
    unit: str | None
    context: str
    source: str
    pending_restart: bool

    @property
    def bytes(self) -> int | None:
        """Return a memory setting in bytes, or ``None`` for a setting that is not one."""
        scale = _UNIT_BYTES.get(self.unit or "")
        return None if scale is None else int(self.setting) * scale


REVIEWED = (
    "autovacuum",
    "track_counts",
    "shared_buffers",
    "effective_cache_size",
    "work_mem",
    "maintenance_work_mem",
    "max_connections",
    "max_wal_size",
    "random_page_cost",
    "track_io_timing",
    "log_min_duration_statement",
    "idle_in_transaction_session_timeout",
    "shared_preload_libraries",
)

# pg_settings hides superuser-only settings from roles that may not read them, so
# current_setting() runs only for rows the role may see.
REVIEWED_SETTINGS = text(
    """
SELECT name,
       current_setting(name) AS value,
       setting,
       unit,
       context,
       source,
       pending_restart
FROM pg_settings
WHERE name = ANY(:names)
ORDER BY name
"""
)


def reviewed_settings(conn: Connection) -> dict[str, Setting]:
    """Return the settings the review looks at, by name, as this session sees them."""
    rows = conn.execute(REVIEWED_SETTINGS, {"names": list(REVIEWED)})
    return {row.name: Setting(**row._mapping) for row in rows}


@dataclass(frozen=True)
class _Advice:
    name: str
    severity: Severity
    values: tuple[str, ...]  # for ALTER SYSTEM; none when the value depends on RAM
    suggestion: str  # the suggestion in words, when there are no values
    why: str

    @property
    def suggested(self) -> str:
        return ", ".join(self.values) or self.suggestion


def settings_findings(
    settings: dict[str, Setting] | Iterable[Setting],
    *,
    ram_bytes: int | None = None,
    max_connections: int = MAX_CONNECTIONS,
) -> list[Finding]:
    """Turn settings into findings: each with its current value, a suggestion and why.

    ``ram_bytes`` is the server's memory, for concrete memory suggestions;
    ``max_connections`` is the most connections allowed before a warning.
    """
    by_name = settings if isinstance(settings, dict) else {s.name: s for s in settings}
    findings = []
    for advice in _advise(by_name, ram_bytes, max_connections):
        setting = by_name[advice.name]
        fix = None
        if advice.values:
            # A list setting takes one literal per item: 'a,b' would be one odd name.
            values = ", ".join(literal(value) for value in advice.values)
            fix = f"ALTER SYSTEM SET {advice.name} = {values};"
        restart = setting.context == "postmaster"
        if fix and not restart:
            fix += " SELECT pg_reload_conf();"
        applying = " A change takes a restart." if restart else " A reload applies a change."
        if setting.pending_restart:
            applying += " A changed value already waits for a restart."
        if setting.source in _OVERRIDDEN_BY:
            applying += (
                f" This value comes from {_OVERRIDDEN_BY[setting.source]}, "
                "which ALTER SYSTEM does not change."
            )
        findings.append(
            Finding(
                check="settings",
                severity=advice.severity,
                what=f"{advice.name} is {setting.value or literal('')} "
                f"(suggested: {advice.suggested})",
                why=advice.why + applying,
                fix=fix,
                subject=advice.name,
                details={
                    "value": setting.value,
                    "suggested": advice.suggested,
                    "context": setting.context,
                    "source": setting.source,
                    "restart": restart,
                    "pending_restart": setting.pending_restart,
                },
            )
        )
    return findings


def _advise(
    settings: dict[str, Setting], ram_bytes: int | None, max_connections: int
) -> Iterator[_Advice]:
    def on(name: str) -> bool | None:
        setting = settings.get(name)
        return None if setting is None else setting.setting == "on"

    if on("autovacuum") is False:
        yield _Advice(
            "autovacuum",
            "critical",
            ("on",),
            "",
            "Without autovacuum nothing removes dead rows or refreshes planner statistics, "
            "so tables and indexes bloat and plans drift; only the emergency vacuum "
            "against wraparound still runs, and it comes late and all at once.",
        )
    if on("track_counts") is False:
        yield _Advice(
            "track_counts",
            "critical",
            ("on",),
            "",
            "Autovacuum decides what to vacuum and analyze from these counts, so it does "
            "nothing; and checks that read table and index statistics (unused indexes, "
            "dead rows) see nothing.",
        )
    yield from _memory_advice(settings, ram_bytes)
    connections = settings.get("max_connections")
    if connections is not None and int(connections.setting) > max_connections:
        yield _Advice(
            "max_connections",
            "warning",
            (),
            f"at most {max_connections}, with a connection pooler in front",
            "Each connection is a server process with its own memory; a few hundred busy "
            "at once contend for CPU and locks and run slower than fewer would. A pooler "
            "(PgBouncer) serves many clients on few connections.",
        )
    wal = settings.get("max_wal_size")
    if wal is not None and (wal.bytes or 0) <= _GB:
        yield _Advice(
            "max_wal_size",
            "info",
            ("4GB",),
            "",
            "Under steady writes a checkpoint starts every max_wal_size of WAL rather than "
            "every checkpoint_timeout, and each one is followed by full-page writes; a "
            "larger value (with the disk space for it) spaces them out.",
        )
    cost = settings.get("random_page_cost")
    if cost is not None and float(cost.setting) == 4:
        yield _Advice(
            "random_page_cost",
            "info",
            ("1.1",),
            "",
            "4 is the cost of a random read on a spinning disk. On SSD or network storage "
            "random reads cost about as much as sequential ones, and a lower value lets "
            "the planner choose index scans where they pay. Keep 4 on spinning disks.",
        )
    if on("track_io_timing") is False:
        yield _Advice(
            "track_io_timing",
            "info",
            ("on",),
            "",
            "Without it, EXPLAIN (ANALYZE, BUFFERS) and pg_stat_statements cannot say how "
            "long queries wait on reads. Its cost is small where the clock is fast "
            "(check with pg_test_timing).",
        )
    slow = settings.get("log_min_duration_statement")
    if slow is not None and slow.setting == "-1":
        yield _Advice(
            "log_min_duration_statement",
            "info",
            ("1s",),
            "",
            "Statements slower than this are logged with their parameters, which "
            "pg_stat_statements does not keep; disabled, a slow query leaves no trace "
            "of the values that made it slow.",
        )
    idle = settings.get("idle_in_transaction_session_timeout")
    if idle is not None and idle.setting == "0":
        yield _Advice(
            "idle_in_transaction_session_timeout",
            "info",
            ("10min",),
            "",
            "A session left idle inside a transaction keeps its locks and holds back "
            "the removal of dead rows everywhere until it ends; a timeout ends it.",
        )
    preload = settings.get("shared_preload_libraries")
    if preload is not None:
        libraries = [lib.strip().strip('"') for lib in preload.setting.split(",")]
        libraries = [lib for lib in libraries if lib]
        if "pg_stat_statements" not in libraries:
            yield _Advice(
                "shared_preload_libraries",
                "info",
                (*libraries, "pg_stat_statements"),
                "",
                "pg_stat_statements records the time, calls and I/O of every statement: the "
                "only way to find the queries that cost the most. After the restart, run "
                "CREATE EXTENSION pg_stat_statements in each database to read it.",
            )


def _memory_advice(settings: dict[str, Setting], ram_bytes: int | None) -> Iterator[_Advice]:
    connections = settings.get("max_connections")
    per_connection = int(connections.setting) if connections is not None else 100
    ram = ram_bytes or 0
    # Rules of thumb: a quarter of memory for PostgreSQL's cache, three quarters for
    # what it and the OS cache hold together, a sixteenth (at most 2GB) for VACUUM and
    # index builds, and a quarter shared by every connection's sorts and hashes. Each
    # rule: the setting, its severity, the default initdb leaves, the suggestion.
    rules: list[tuple[str, Severity, int, int, str, str]] = [
        (
            "shared_buffers",
            "warning",
            128 * _MB,
            ram // 4,
            "25% of the server's memory",
            "PostgreSQL's own cache: the 128MB default suits a test machine, and a "
            "production server with too little rereads its working set from the OS.",
        ),
        (
            "effective_cache_size",
            "info",
            4 * _GB,
            ram * 3 // 4,
            "75% of the server's memory",
            "Not an allocation: the planner's guess of how much data the caches hold, "
            "used to price index scans. Too low a guess makes it favour sequential scans.",
        ),
        (
            "maintenance_work_mem",
            "info",
            64 * _MB,
            min(ram // 16, 2 * _GB),
            "1/16 of the server's memory, at most 2GB",
            "Memory for VACUUM, CREATE INDEX and adding foreign keys; each autovacuum "
            "worker may use as much. Too little makes VACUUM scan indexes more times.",
        ),
        (
            "work_mem",
            "info",
            4 * _MB,
            max(ram // 4 // per_connection, 4 * _MB),
            "25% of the server's memory divided by max_connections",
            "Memory for each sort and hash of a query before it spills to temporary files. "
            "A query may use several times this, so it is sized by max_connections.",
        ),
    ]
    for name, severity, default, suggested, suggestion, why in rules:
        setting = settings.get(name)
        if setting is None or setting.bytes is None:
            continue
        if not ram_bytes:
            # Without the memory size, only a value left at its default says anything.
            if setting.bytes <= default:
                yield _Advice(name, severity, (), suggestion, why)
        # Half the suggestion or more is near enough for a rule of thumb.
        elif setting.bytes < suggested // 2:
            yield _Advice(name, severity, (_memory(suggested),), suggestion, why)


def _memory(size_bytes: int) -> str:
    """Return a size as a whole number of GB or MB, as every PostgreSQL version reads it."""
    if size_bytes >= _GB and size_bytes % _GB == 0:
        return f"{size_bytes // _GB}GB"
    return f"{max(size_bytes // _MB, 1)}MB"


def _settings(
    conn: Connection, *, ram_bytes: int | None = None, max_connections: int = MAX_CONNECTIONS
) -> list[Finding]:
    return settings_findings(
        reviewed_settings(conn), ram_bytes=ram_bytes, max_connections=max_connections
    )


CHECKS = (
    Check(
        "settings",
        "settings",
        "server settings that leave it unmaintained, undersized or unobserved",
        _settings,
        scope="cluster",
    ),
)


def check_settings(
    conn: Connection, *, ram_bytes: int | None = None, max_connections: int = MAX_CONNECTIONS
) -> CheckResult:
    """Review the server's settings; ``ram_bytes`` makes memory suggestions concrete."""
    [check] = CHECKS
    return check(conn, ram_bytes=ram_bytes, max_connections=max_connections)
