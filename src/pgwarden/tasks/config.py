"""Read the targets of scheduled jobs, and how the jobs run, from the TOML config file.

One file lists one database or hundreds, each a ``[targets.NAME]`` table::

    [tasks]
    broker = "redis://127.0.0.1:6379/0"   # or amqp://..., or "embedded" (the default)
    catalogue_env = "PGWARDEN_CATALOGUE_URL"

    [targets.app]
    url = "postgresql://backup@db1.internal:5432/app"
    password_env = "APP_DB_PASSWORD"      # the secret comes from the environment
    storage = "s3://backups/app"
    windows = ["Sun 01:00-05:00"]
    retention = { daily = 7, weekly = 4, monthly = 12 }

    [targets.app.schedule]
    backup = "0 2 * * *"
    vacuum = "0 * * * *"                 # runs only inside a window

    [targets.app.thresholds.unused_indexes]
    min_size_bytes = 0

A URL (the target's, the catalogue's, the broker's) is given as ``url`` with no
password plus ``password_env`` naming the variable that holds it, or as ``url_env``
naming a variable holding the whole URL; a password written in the file is refused.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pgwarden._extras import importing_extra
from pgwarden._units import parse_duration
from pgwarden.backup.retention import RetentionPolicy
from pgwarden.config import config_file_path
from pgwarden.errors import PgwardenError
from pgwarden.tasks.errors import TargetsInvalid, UnknownTarget
from pgwarden.tasks.kinds import JOBS
from pgwarden.urls import parse_database_url, redact_url

# What the tasks extra installs: module -> the package that installs it.
TASKS_PACKAGES = {"celery": "celery", "kombu": "celery", "croniter": "croniter"}

__all__ = [
    "AlertsConfig",
    "FleetConfig",
    "PitrSettings",
    "Target",
    "TasksConfig",
    "Window",
    "check_cron",
    "load_fleet",
    "parse_fleet",
]

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"^(?:(?P<day>[A-Za-z]{3})\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$"
)
OFF = "off"


def check_cron(expression: str, *, where: str) -> str:
    """Return ``expression`` if it is a valid cron expression (or ``off``); else raise.

    ``where`` names the setting in the error (``targets.app.schedule.backup``).
    """
    text = " ".join(str(expression).split())
    if text == OFF:
        return text
    with importing_extra("tasks", "Scheduled jobs need {package}", TASKS_PACKAGES):
        from croniter import croniter
    if not croniter.is_valid(text) or len(text.split()) not in (1, 5):
        raise TargetsInvalid(
            f"{where} = {expression!r} is not a cron expression.",
            hint="Use five fields, minute hour day month weekday, such as '0 2 * * *' "
            "(02:00 every day) or '*/15 * * * *'; or 'off'.",
        )
    return text


@dataclass(frozen=True)
class Window:
    """A maintenance window: every day, or one weekday, from ``start`` to ``end``.

    A window whose end is before its start runs past midnight (``22:00-02:00``).
    """

    start: time
    end: time
    weekday: int | None = None  # 0 is Monday

    @classmethod
    def parse(cls, text: str, *, where: str) -> Window:
        """Read ``Sun 01:00-05:00`` or ``01:00-05:00``; a clear error if it is neither."""
        match = _WINDOW.match(str(text).strip())
        try:
            if match is None:
                raise ValueError
            day = match["day"]
            weekday = None if day is None else _DAYS.index(day.lower())
            start, end = (time.fromisoformat(match[k].zfill(5)) for k in ("start", "end"))
        except ValueError:
            raise TargetsInvalid(
                f"{where}: {text!r} is not a maintenance window.",
                hint="Write 'HH:MM-HH:MM' for every day or 'Sun 01:00-05:00' for one "
                "weekday (Mon Tue Wed Thu Fri Sat Sun).",
            ) from None
        if start == end:
            raise TargetsInvalid(f"{where}: the window {text!r} is empty (start equals end).")
        return cls(start, end, weekday)

    def contains(self, moment: datetime) -> bool:
        """Return whether ``moment`` (in the window's time zone) falls inside."""
        clock = moment.time().replace(tzinfo=None)
        day = moment.weekday()
        if self.start < self.end:
            return (self.weekday in (None, day)) and self.start <= clock < self.end
        # Past midnight: the evening part on the day itself, the morning part the next.
        if clock >= self.start:
            return self.weekday in (None, day)
        return clock < self.end and self.weekday in (None, (day - 1) % 7)

    def __str__(self) -> str:
        span = f"{self.start:%H:%M}-{self.end:%H:%M}"
        return span if self.weekday is None else f"{_DAYS[self.weekday].title()} {span}"


@dataclass(frozen=True)
class PitrSettings:
    """A target's point-in-time recovery: its WAL archive's name, the drill's scratch place.

    ``port`` 0 lets the drill take a free port on 127.0.0.1.
    """

    cluster: str = "main"
    scratch: Path = Path("/var/lib/pgwarden/drill")
    port: int = 0
    check_timeout: float = 60.0


@dataclass(frozen=True)
class Target:
    """One database the jobs run on, as the config gives it (its URL's secret resolved).

    ``schedule`` maps each job kind to a cron expression or ``off``. ``url`` includes the
    password from the environment: never print it; :attr:`display_url` has it redacted.
    """

    name: str
    url: str
    storage: str | None
    schedule: dict[str, str]
    retention: RetentionPolicy
    windows: tuple[Window, ...] = ()
    timezone: tzinfo = UTC
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    verify_scratch: str = "database"
    vacuum_min_dead_pct: float = 10.0
    snapshot_keep_days: int | None = 90
    pitr: PitrSettings | None = None

    @property
    def display_url(self) -> str:
        """Return the URL with its password replaced, for output and logs."""
        return redact_url(self.url)

    @property
    def database(self) -> str:
        """Return the name of the database the URL names."""
        return parse_database_url(self.url).database or ""

    def in_window(self, moment: datetime) -> bool:
        """Return whether ``moment`` falls in one of the target's maintenance windows."""
        local = moment.astimezone(self.timezone)
        return any(window.contains(local) for window in self.windows)


@dataclass(frozen=True)
class TasksConfig:
    """How the jobs run: broker, catalogue, retries, time limits, clock."""

    broker: str = "embedded"
    queue: str = "pgwarden"
    catalogue_url: str | None = None
    clock_speed: float = 1.0
    retries: int = 3
    retry_backoff: float = 30.0
    retry_backoff_max: float = 600.0
    visibility_timeout: float = 7200.0
    polling_interval: float = 0.1
    keep_connections: bool = False
    deadman: str = "*/5 * * * *"
    time_limits: dict[str, float] = field(default_factory=dict)
    reload_every: float = 10.0
    heartbeat: float = 10.0
    lost_after: float = 60.0

    def time_limit(self, job: str) -> float:
        """Return the hard time limit of one run of ``job``, in seconds."""
        return self.time_limits.get(job, JOBS[job].time_limit.total_seconds())


@dataclass(frozen=True)
class AlertsConfig:
    """Where alerts go: the log always, a webhook and e-mail when configured."""

    log: bool = True
    webhook_url: str | None = None
    webhook_retries: int = 3
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "pgwarden@localhost"
    smtp_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    overdue_factor: float = 2.0


@dataclass(frozen=True)
class FleetConfig:
    """Everything the scheduled jobs read from the config file."""

    targets: dict[str, Target]
    tasks: TasksConfig = field(default_factory=TasksConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    path: Path | None = None

    def target(self, name: str) -> Target:
        """Return the target ``name``; :class:`UnknownTarget` naming the known ones if none."""
        try:
            return self.targets[name]
        except KeyError:
            known = ", ".join(sorted(self.targets)) or "none"
            raise UnknownTarget(
                f"no target named {name!r} in the config.",
                hint=f"Targets: {known}. Each is a [targets.NAME] table in the config file.",
            ) from None


def load_fleet(
    config_file: Path | str | None = None, *, environ: Mapping[str, str] | None = None
) -> FleetConfig:
    """Read the targets and the job settings from the config file in force.

    The file is ``config_file``, else ``PGWARDEN_CONFIG``, else ``./pgwarden.toml``.
    Secrets are read from ``environ`` (the process's environment by default).
    """
    path = config_file_path(config_file)
    if path is None:
        raise TargetsInvalid(
            "no config file: the targets of scheduled jobs are listed in one.",
            hint="Pass --config FILE, set PGWARDEN_CONFIG, or create ./pgwarden.toml with "
            "a [targets.NAME] table per database.",
        )
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise TargetsInvalid(f"config file {path} does not exist.") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TargetsInvalid(f"config file {path} cannot be read: {exc}.") from None
    return parse_fleet(data, environ=os.environ if environ is None else environ, path=path)


def parse_fleet(
    data: Mapping[str, Any], *, environ: Mapping[str, str], path: Path | None = None
) -> FleetConfig:
    """Validate the ``targets``, ``tasks`` and ``alerts`` tables of a parsed config."""
    reader = _Reader(environ)
    tasks = reader.tasks(_table(data, "tasks"))
    targets_table = _table(data, "targets")
    targets = {
        name: reader.target(name, _table(targets_table, name, where=f"targets.{name}"))
        for name in targets_table
    }
    return FleetConfig(targets, tasks, reader.alerts(_table(data, "alerts")), path)


def _table(data: Mapping[str, Any], key: str, *, where: str | None = None) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise TargetsInvalid(f"[{where or key}] must be a table, not {type(value).__name__}.")
    return value


def _unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise TargetsInvalid(
            f"[{where}] has unknown keys: {', '.join(unknown)}.",
            hint=f"Known keys: {', '.join(sorted(known))}.",
        )


class _Reader:
    """Validate the tables one by one, resolving secrets from the environment."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def _env(self, variable: Any, where: str) -> str:
        if not isinstance(variable, str) or not variable:
            raise TargetsInvalid(f"{where} must name an environment variable.")
        value = self.environ.get(variable)
        if not value:
            raise TargetsInvalid(
                f"{where} names {variable}, which is not set.",
                hint=f"Set {variable} in the environment of the worker and beat.",
            )
        return value

    def url(self, table: Mapping[str, Any], prefix: str, where: str) -> str | None:
        """Return the URL of ``{prefix}``/``{prefix}_env``/``{prefix}_password_env``."""
        given, env = table.get(prefix), table.get(f"{prefix}_env")
        password_key = "password_env" if prefix == "url" else f"{prefix}_password_env"
        password_env = table.get(password_key)
        if given is not None and env is not None:
            raise TargetsInvalid(f"[{where}] gives both {prefix} and {prefix}_env; give one.")
        if env is not None:
            return self._env(env, f"{where}.{prefix}_env")
        if given is None:
            return None
        if not isinstance(given, str):
            raise TargetsInvalid(f"{where}.{prefix} must be text.")
        parts = urlsplit(given)
        if parts.password:
            raise TargetsInvalid(
                f"{where}.{prefix} has a password in it: {redact_url(given)}.",
                hint=f"Secrets never go in the file: remove it and name the variable that "
                f"holds it with {password_key}, or give the whole "
                f"URL in a variable named by {prefix}_env.",
            )
        if password_env is None:
            return given
        password = self._env(password_env, f"{where}.{password_key}")
        user = parts.username or ""
        host = parts.hostname or ""
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def target(self, name: str, table: dict[str, Any]) -> Target:
        where = f"targets.{name}"
        if not _NAME.match(name):
            raise TargetsInvalid(
                f"target name {name!r} must be 1-100 letters, digits, '_', '.' or '-'."
            )
        _unknown(
            table,
            {
                "url", "url_env", "password_env", "storage", "schedule", "retention",
                "windows", "timezone", "thresholds", "verify_scratch",
                "vacuum_min_dead_pct", "snapshot_keep_days", "pitr",
            },
            where,
        )  # fmt: skip
        url = self.url(table, "url", where)
        if url is None:
            raise TargetsInvalid(
                f"[{where}] has no url.",
                hint="Give url = 'postgresql://user@host/db' with password_env, or url_env.",
            )
        try:
            url = parse_database_url(url, source=f"{where}.url").render_as_string(
                hide_password=False
            )
        except PgwardenError as exc:
            raise TargetsInvalid(exc.message, hint=exc.hint) from None
        schedule_table = _table(table, "schedule", where=f"{where}.schedule")
        _unknown(schedule_table, set(JOBS), f"{where}.schedule")
        pitr = _pitr(table, where)
        schedule = {}
        for job, kind in JOBS.items():
            default = kind.default_cron if pitr is not None or not kind.pitr else None
            given = schedule_table.get(job, default or OFF)
            schedule[job] = check_cron(str(given), where=f"{where}.schedule.{job}")
            if kind.pitr and pitr is None and schedule[job] != OFF:
                raise TargetsInvalid(
                    f"[{where}] schedules {job} but has no point-in-time recovery set up.",
                    hint=f"Add a [{where}.pitr] table (cluster, scratch, port), or drop {job}.",
                )
        windows = tuple(
            Window.parse(text, where=f"{where}.windows") for text in _list(table, "windows", where)
        )
        if schedule["vacuum"] != OFF and not windows:
            raise TargetsInvalid(
                f"[{where}] schedules vacuum but has no maintenance window.",
                hint="Vacuum runs only inside a window: add windows = ['Sun 01:00-05:00'].",
            )
        scratch = table.get("verify_scratch", "database")
        if scratch not in ("database", "embedded"):
            raise TargetsInvalid(f"{where}.verify_scratch must be 'database' or 'embedded'.")
        storage = table.get("storage")
        if storage is not None and not isinstance(storage, str):
            raise TargetsInvalid(f"{where}.storage must be text: a directory or a URL.")
        return Target(
            name=name,
            url=url,
            storage=storage,
            schedule=schedule,
            retention=_retention(_table(table, "retention", where=f"{where}.retention"), where),
            windows=windows,
            timezone=_zone(table.get("timezone", "UTC"), where),
            thresholds=_thresholds(_table(table, "thresholds", where=f"{where}.thresholds"), where),
            verify_scratch=scratch,
            vacuum_min_dead_pct=_number(table, "vacuum_min_dead_pct", 10.0, where),
            snapshot_keep_days=int(_number(table, "snapshot_keep_days", 90, where)) or None,
            pitr=pitr,
        )

    def tasks(self, table: dict[str, Any]) -> TasksConfig:
        where = "tasks"
        _unknown(
            table,
            {
                "broker", "broker_env", "broker_password_env", "queue", "catalogue",
                "catalogue_env", "catalogue_password_env", "clock_speed", "retries",
                "retry_backoff", "retry_backoff_max", "visibility_timeout", "polling_interval",
                "deadman", "time_limits", "reload_every", "keep_connections",
                "heartbeat", "lost_after",
            },
            where,
        )  # fmt: skip
        broker = self.url(table, "broker", where) or "embedded"
        catalogue = self.url(table, "catalogue", where)
        if catalogue is not None:
            try:
                catalogue = parse_database_url(
                    catalogue, source="tasks.catalogue"
                ).render_as_string(hide_password=False)
            except PgwardenError as exc:
                raise TargetsInvalid(exc.message, hint=exc.hint) from None
        limits_table = _table(table, "time_limits", where="tasks.time_limits")
        _unknown(limits_table, set(JOBS), "tasks.time_limits")
        speed = _number(table, "clock_speed", 1.0, where)
        if speed <= 0:
            raise TargetsInvalid("tasks.clock_speed must be above 0 (1 is real time).")
        retries = int(_number(table, "retries", 3, where))
        if retries < 0:
            raise TargetsInvalid("tasks.retries must be 0 or more.")
        queue = table.get("queue", "pgwarden")
        if not isinstance(queue, str) or not _NAME.match(queue):
            raise TargetsInvalid(
                f"tasks.queue = {queue!r} must be 1-100 letters, digits, '_', '.' or '-'."
            )
        return TasksConfig(
            broker=broker,
            queue=queue,
            catalogue_url=catalogue,
            clock_speed=speed,
            retries=retries,
            retry_backoff=_seconds(table, "retry_backoff", 30.0, where),
            retry_backoff_max=_seconds(table, "retry_backoff_max", 600.0, where),
            visibility_timeout=_seconds(table, "visibility_timeout", 7200.0, where),
            polling_interval=_seconds(table, "polling_interval", 0.1, where),
            keep_connections=_flag(table, "keep_connections", where),
            deadman=check_cron(str(table.get("deadman", "*/5 * * * *")), where="tasks.deadman"),
            time_limits={
                job: _seconds(limits_table, job, 0.0, "tasks.time_limits") for job in limits_table
            },
            reload_every=_seconds(table, "reload_every", 10.0, where),
            heartbeat=_seconds(table, "heartbeat", 10.0, where),
            lost_after=_seconds(table, "lost_after", 60.0, where),
        )

    def alerts(self, table: dict[str, Any]) -> AlertsConfig:
        where = "alerts"
        _unknown(
            table,
            {
                "log", "webhook_url", "webhook_url_env", "webhook_retries", "smtp_host",
                "smtp_port", "smtp_from", "smtp_to", "smtp_user", "smtp_password_env",
                "smtp_starttls", "overdue_factor",
            },
            where,
        )  # fmt: skip
        webhook = self.url(table, "webhook_url", where)
        password_env = table.get("smtp_password_env")
        to = _list(table, "smtp_to", where)
        if table.get("smtp_host") and not to:
            raise TargetsInvalid("[alerts] has smtp_host but no smtp_to addresses.")
        return AlertsConfig(
            log=bool(table.get("log", True)),
            webhook_url=webhook,
            webhook_retries=int(_number(table, "webhook_retries", 3, where)),
            smtp_host=table.get("smtp_host"),
            smtp_port=int(_number(table, "smtp_port", 25, where)),
            smtp_from=str(table.get("smtp_from", "pgwarden@localhost")),
            smtp_to=tuple(str(address) for address in to),
            smtp_user=table.get("smtp_user"),
            smtp_password=None
            if password_env is None
            else self._env(password_env, "alerts.smtp_password_env"),
            smtp_starttls=bool(table.get("smtp_starttls", False)),
            overdue_factor=_number(table, "overdue_factor", 2.0, where),
        )


def _pitr(table: Mapping[str, Any], where: str) -> PitrSettings | None:
    """Return the target's ``pitr`` table read, or None if it has none."""
    if "pitr" not in table:
        return None
    where = f"{where}.pitr"
    pitr = _table(table, "pitr", where=where)
    _unknown(pitr, {"cluster", "scratch", "port", "check_timeout"}, where)
    cluster, scratch = pitr.get("cluster", "main"), pitr.get("scratch", str(PitrSettings.scratch))
    if not isinstance(cluster, str) or not _NAME.match(cluster):
        raise TargetsInvalid(f"{where}.cluster must be 1-100 letters, digits, '_', '.' or '-'.")
    if not isinstance(scratch, str) or not scratch.startswith("/"):
        raise TargetsInvalid(f"{where}.scratch must be an absolute directory path.")
    port = int(_number(pitr, "port", 0, where))
    if not 0 <= port <= 65535:
        raise TargetsInvalid(f"{where}.port must be 0 (any free port) to 65535.")
    return PitrSettings(
        cluster=cluster,
        scratch=Path(scratch),
        port=port,
        check_timeout=_seconds(pitr, "check_timeout", 60.0, where),
    )


def _list(table: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = table.get(key, [])
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise TargetsInvalid(f"{where}.{key} must be a list.")
    return value


def _flag(table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise TargetsInvalid(f"{where}.{key} must be true or false, not {value!r}.")
    return value


def _number(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TargetsInvalid(f"{where}.{key} must be a number, not {value!r}.")
    return float(value)


def _seconds(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_duration(str(value)).total_seconds()
    except ValueError:
        raise TargetsInvalid(
            f"{where}.{key} = {value!r} is not a duration.",
            hint="Write a duration such as 30s, 10min, 6h (a bare number is seconds).",
        ) from None


def _zone(name: Any, where: str) -> tzinfo:
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise TargetsInvalid(
            f"{where}.timezone = {name!r} is not a time zone.",
            hint="Use a name such as 'UTC' or 'Europe/Paris'.",
        ) from None


def _retention(table: dict[str, Any], where: str) -> RetentionPolicy:
    known = {"daily", "weekly", "monthly", "yearly", "min_count", "incomplete_grace"}
    _unknown(table, known, f"{where}.retention")
    values: dict[str, Any] = {k: table[k] for k in known - {"incomplete_grace"} if k in table}
    if "incomplete_grace" in table:
        values["incomplete_grace"] = timedelta(
            seconds=_seconds(table, "incomplete_grace", 0, f"{where}.retention")
        )
    try:
        return RetentionPolicy(**values)
    except PgwardenError as exc:
        raise TargetsInvalid(f"{where}.retention: {exc.message}", hint=exc.hint) from None


def _thresholds(table: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    from pgwarden.insight.doctor import CHECKS, threshold_names

    by_name = {check.name: check for check in CHECKS}
    thresholds: dict[str, dict[str, Any]] = {}
    for check, values in table.items():
        if check not in by_name:
            raise TargetsInvalid(
                f"{where}.thresholds names no check {check!r}.",
                hint="`pgwarden doctor --list` lists the checks and their thresholds.",
            )
        if not isinstance(values, dict):
            raise TargetsInvalid(f"[{where}.thresholds.{check}] must be a table.")
        known = threshold_names(by_name[check])
        _unknown(values, set(known), f"{where}.thresholds.{check}")
        thresholds[check] = dict(values)
    return thresholds
