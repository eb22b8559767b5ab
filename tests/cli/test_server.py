from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgwarden.cli.main import cli
from pgwarden.testing.servers import free_port

pytestmark = pytest.mark.slow


def test_server_lifecycle_through_the_cli(server_dir: Path) -> None:
    runner = CliRunner()
    opts = ["--data-dir", str(server_dir / "data"), "--port", str(free_port())]

    status = runner.invoke(cli, ["server", "status", *opts])
    assert status.exit_code == 1 and "Not initialised" in status.stdout

    started = runner.invoke(cli, ["server", "start", *opts])
    assert started.exit_code == 0, started.output
    assert "Started" in started.stdout
    try:
        again = runner.invoke(cli, ["server", "start", *opts])
        assert again.exit_code == 0 and "Already running" in again.stdout

        status = runner.invoke(cli, ["--json", "server", "status", *opts])
        assert status.exit_code == 0
        info = json.loads(status.stdout)
        assert info["running"] is True and info["pid"]

        # `url` gives what --database-url needs, password included; `status` never shows it.
        password = (server_dir / "data.password").read_text().strip()
        url = runner.invoke(cli, ["server", "url", *opts]).stdout.strip()
        assert url == info["url"].replace(":***@", f":{password}@")
        shown = runner.invoke(cli, ["server", "status", *opts]).stdout
        assert password not in status.stdout + shown and "***" in shown
        ping = runner.invoke(cli, ["--database-url", url, "ping"])
        assert ping.exit_code == 0 and "Connected" in ping.stdout

        # With no URL given, commands use the embedded server named by the settings.
        env = {"PGWARDEN_DATA_DIR": str(server_dir / "data"), "PGWARDEN_SERVER_PORT": opts[3]}
        assert runner.invoke(cli, ["ping"], env=env).exit_code == 0
    finally:
        stopped = runner.invoke(cli, ["server", "stop", *opts])
    assert stopped.exit_code == 0 and "Stopped" in stopped.stdout
    assert "Not running" in runner.invoke(cli, ["server", "stop", *opts]).stdout
    assert runner.invoke(cli, ["server", "status", *opts]).exit_code == 1


def test_an_unusable_data_dir_is_a_user_error(server_dir: Path) -> None:
    target = server_dir / "notes"
    target.mkdir()
    (target / "todo.txt").write_text("keep me")
    args = ["server", "start", "--data-dir", str(target), "--port", str(free_port())]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "not a PostgreSQL data directory" in result.stderr and "hint:" in result.stderr
    assert [p.name for p in target.iterdir()] == ["todo.txt"]
