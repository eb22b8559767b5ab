"""`pgwarden fleet status`: the last runs, the backups and the open alerts of each target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from pgwarden.cli.main import cli
from pgwarden.config import load_settings
from pgwarden.tasks import load_fleet
from pgwarden.tasks.fleet import fleet_status
from pgwarden.tasks.jobs import run_job
from pgwarden.testing.servers import free_port


def test_fleet_status_shows_jobs_backups_and_alerts(
    target_db: str, catalogue_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A password in the URLs, even where the server trusts without one, must stay out.
    password = sa.make_url(target_db).password or "a-password-for-the-test"
    up = sa.make_url(target_db).set(password=password)
    down = up.set(port=free_port())
    monkeypatch.setenv("UP_URL", up.render_as_string(hide_password=False))
    monkeypatch.setenv("DOWN_URL", down.render_as_string(hide_password=False))
    monkeypatch.setenv("CAT_URL", catalogue_db)
    Path("pgwarden.toml").write_text(
        f"""
[tasks]
catalogue_env = "CAT_URL"
[targets.up]
url_env = "UP_URL"
storage = "{tmp_path / "up"}"
[targets.down]
url_env = "DOWN_URL"
storage = "{tmp_path / "down"}"
"""
    )
    fleet, settings = load_fleet(), load_settings()
    for job in ("backup", "verify", "snapshot"):
        assert run_job(fleet, settings, "up", job).status == "ok"
    assert run_job(fleet, settings, "down", "snapshot").status == "failed"
    down_status, up_status = fleet_status(fleet, settings)
    assert up_status.healthy and up_status.complete_backups == 1
    assert up_status.newest_verified == up_status.newest_backup is not None
    assert up_status.recoverable_from == up_status.recoverable_to == up_status.newest_backup_at
    jobs = {j.job: j for j in up_status.jobs}
    assert jobs["backup"].last_success is not None and jobs["backup"].last_failure is None
    assert not down_status.healthy
    assert [i.key for i in down_status.incidents] == ["unreachable"]
    assert {j.job: j.failing for j in down_status.jobs}["snapshot"]

    result = CliRunner().invoke(cli, ["--json", "fleet", "status"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert [t["target"] for t in document["targets"]] == ["down", "up"]
    assert document["targets"][1]["healthy"] is True
    assert password not in result.output
    human = CliRunner().invoke(cli, ["fleet", "status", "--target", "up"])
    assert human.exit_code == 0, human.output
    assert up_status.newest_verified in human.output
