"""The [targets], [tasks] and [alerts] tables, and `pgwarden schedule`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgwarden import TargetsInvalid, UnknownTarget
from pgwarden.cli.main import cli
from pgwarden.config import load_settings
from pgwarden.tasks import effective_schedule, load_fleet, parse_fleet
from pgwarden.tasks.config import Window
from pgwarden.tasks.schedule import Clock, next_runs, period

ENV = {"APP_URL": "postgresql://app:s3cret@db1:5432/app", "OPS_PASSWORD": "pa:ss/word"}

CONFIG = """
[pgwarden]
log_level = "INFO"

[tasks]
broker = "redis://127.0.0.1:6379/0"
retries = 5
retry_backoff = "10s"

[tasks.time_limits]
backup = "2h"

[targets.app]
url_env = "APP_URL"
storage = "/var/backups/pg"
windows = ["Sun 01:00-05:00"]
retention = { daily = 3, weekly = 2 }

[targets.app.schedule]
backup = "0 2 * * *"
vacuum = "0 * * * *"

[targets.app.thresholds.unused_indexes]
min_size_bytes = 0

[targets.ops]
url = "postgresql://ops@db2:5432/ops"
password_env = "OPS_PASSWORD"
"""


def _write(text: str) -> Path:
    path = Path("pgwarden.toml")
    path.write_text(text)
    return path


def test_targets_and_their_defaults() -> None:
    fleet = load_fleet(_write(CONFIG), environ=ENV)
    app, ops = fleet.target("app"), fleet.target("ops")
    assert app.url == ENV["APP_URL"]
    assert app.schedule == {
        "backup": "0 2 * * *",
        "verify": "0 4 * * 0",
        "expire": "30 3 * * *",
        "snapshot": "0 * * * *",
        "doctor": "*/15 * * * *",
        "vacuum": "0 * * * *",
        "pitr_check": "off",  # no [targets.app.pitr] table
        "pitr_drill": "off",
    }
    assert ops.schedule["vacuum"] == "off" and ops.schedule["backup"] == "0 1 * * *"
    assert (app.retention.daily, app.retention.weekly, app.retention.monthly) == (3, 2, 12)
    assert app.thresholds == {"unused_indexes": {"min_size_bytes": 0}}
    # The password from the environment, quoted into the URL; never shown.
    assert ops.database == "ops" and "pa:ss/word" not in ops.display_url
    assert "s3cret" not in app.display_url
    assert fleet.tasks.broker == "redis://127.0.0.1:6379/0"
    assert fleet.tasks.retries == 5 and fleet.tasks.retry_backoff == 10.0
    assert fleet.tasks.time_limit("backup") == 7200.0
    assert fleet.tasks.time_limit("doctor") == 600.0


def test_the_settings_still_load_beside_the_targets() -> None:
    path = _write(CONFIG)
    assert load_settings(path).log_level == "INFO"
    path.write_text(CONFIG.replace("[pgwarden]\n", ""))
    assert load_settings(path).log_level == "INFO"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backup": "0 25 * * *"}, r"schedule\.backup = '0 25 \* \* \*' is not a cron"),
        ({"backup": "every day"}, "is not a cron expression"),
        ({"backups": "0 1 * * *"}, "unknown keys: backups"),
    ],
)
def test_a_bad_schedule_is_a_clear_error(change: dict[str, str], message: str) -> None:
    data = {"targets": {"app": {"url_env": "APP_URL", "schedule": change}}}
    with pytest.raises(TargetsInvalid, match=message) as caught:
        parse_fleet(data, environ=ENV)
    assert caught.value.hint


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"url": "postgresql://app:pw@db/app"}, "has a password in it"),
        ({"url_env": "NOT_SET"}, "names NOT_SET, which is not set"),
        ({}, "has no url"),
        ({"url_env": "APP_URL", "windows": ["Sunday 1-5"]}, "is not a maintenance window"),
        ({"url_env": "APP_URL", "schedule": {"vacuum": "0 * * * *"}}, "no maintenance window"),
        ({"url_env": "APP_URL", "retention": {"daily": -1}}, "retention daily must be"),
        ({"url_env": "APP_URL", "thresholds": {"no_such_check": {}}}, "names no check"),
        ({"url_env": "APP_URL", "colour": "red"}, "unknown keys: colour"),
        ({"url_env": "APP_URL", "timezone": "Mars/Base"}, "is not a time zone"),
    ],
)
def test_a_bad_target_is_a_clear_error(table: dict[str, object], message: str) -> None:
    with pytest.raises(TargetsInvalid, match=message) as caught:
        parse_fleet({"targets": {"app": table}}, environ=ENV)
    assert "pw@" not in str(caught.value)


def test_an_unknown_target_names_the_known_ones() -> None:
    fleet = load_fleet(_write(CONFIG), environ=ENV)
    with pytest.raises(UnknownTarget, match="no target named 'nope'") as caught:
        effective_schedule(fleet, targets=["nope"])
    assert "app, ops" in (caught.value.hint or "")


def test_next_runs_follow_the_cron_expression() -> None:
    start = datetime(2026, 12, 7, 16, 20, tzinfo=UTC)
    assert next_runs("*/15 * * * *", start, 3) == [
        datetime(2026, 12, 7, 16, 30, tzinfo=UTC),
        datetime(2026, 12, 7, 16, 45, tzinfo=UTC),
        datetime(2026, 12, 7, 17, 0, tzinfo=UTC),
    ]
    assert period("0 4 * * 0", start).days == 7
    assert next_runs("off", start) == []


def test_windows_hold_their_times() -> None:
    sunday = Window.parse("Sun 01:00-05:00", where="w")
    night = Window.parse("23:00-01:00", where="w")
    assert sunday.contains(datetime(2026, 12, 6, 2, 0))  # a Sunday
    assert not sunday.contains(datetime(2026, 12, 7, 2, 0))
    assert night.contains(datetime(2026, 12, 7, 23, 30))
    assert night.contains(datetime(2026, 12, 8, 0, 30))
    assert not night.contains(datetime(2026, 12, 8, 1, 0))
    assert str(sunday) == "Sun 01:00-05:00"


def test_a_fast_clock_runs_ahead() -> None:
    clock = Clock(3600.0)
    assert clock.real_seconds(period("0 * * * *", clock.now())) == pytest.approx(1.0)


def test_schedule_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    _write(CONFIG)
    result = CliRunner().invoke(cli, ["--json", "schedule", "--next", "2", "--target", "app"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["targets"] == ["app"]
    backup = next(job for job in document["jobs"] if job["job"] == "backup")
    assert backup["task"] == "backup.create" and backup["cron"] == "0 2 * * *"
    assert len(backup["next_runs"]) == 2
    assert backup["next_runs"][0].endswith("T02:00:00+00:00")
    human = CliRunner().invoke(cli, ["schedule"])
    assert human.exit_code == 0 and "maintain.vacuum" in human.output
    assert "s3cret" not in human.output + result.output


def test_schedule_command_refuses_a_bad_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    _write(CONFIG.replace('backup = "0 2 * * *"', 'backup = "61 * * * *"'))
    result = CliRunner().invoke(cli, ["schedule"])
    assert result.exit_code == 2
    assert "'61 * * * *' is not a cron expression" in result.output
    _write(CONFIG)
    result = CliRunner().invoke(cli, ["schedule", "--target", "nope"])
    assert result.exit_code == 2 and "no target named 'nope'" in result.output


def test_pitr_jobs_run_by_default_only_where_pitr_is_set_up() -> None:
    fleet = parse_fleet(
        {
            "tasks": {"heartbeat": "2s", "lost_after": "1min"},
            "targets": {
                "app": {"url_env": "APP_URL", "pitr": {"scratch": "/srv/drill", "port": 5498}},
                "ops": {"url_env": "APP_URL"},
            },
        },
        environ=ENV,
    )
    app, ops = fleet.target("app"), fleet.target("ops")
    assert app.schedule["pitr_drill"] == "0 5 * * 6" and app.schedule["pitr_check"] == "20 * * * *"
    assert ops.schedule["pitr_drill"] == "off" and ops.schedule["pitr_check"] == "off"
    assert app.pitr is not None and app.pitr.scratch == Path("/srv/drill") and app.pitr.port == 5498
    assert app.pitr.cluster == "main" and ops.pitr is None
    assert (fleet.tasks.heartbeat, fleet.tasks.lost_after) == (2.0, 60.0)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"schedule": {"pitr_drill": "0 5 * * 6"}},
            "schedules pitr_drill but has no point-in-time",
        ),
        ({"pitr": {"scratch": "relative/dir"}}, "pitr.scratch must be an absolute"),
        ({"pitr": {"port": 70000}}, "pitr.port must be"),
        ({"pitr": {"cluster": "a/b"}}, "pitr.cluster must be"),
        ({"pitr": {"spool": "/x"}}, "spool"),
    ],
)
def test_a_bad_pitr_table_is_a_clear_error(table: dict[str, object], message: str) -> None:
    with pytest.raises(TargetsInvalid, match=message):
        parse_fleet({"targets": {"app": {"url_env": "APP_URL", **table}}}, environ=ENV)
