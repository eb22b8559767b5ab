"""A fleet for real: a broker, two worker processes and beat, on two PostgreSQL clusters.

The schedule runs on a fast clock (``clock_speed``): an hour of schedule passes in half a
minute. Outcomes are read from the catalogue and the backup storage; nothing here looks
at the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_support import Webhook, broker_for, queue_name, running_fleet
from tasks_support import fill

from pgwarden.backup import list_backups, open_storage
from pgwarden.testing.servers import TestServer, start_test_server

pytestmark = pytest.mark.slow

SPEED = 120  # one hour of schedule in 30 seconds


@pytest.fixture(scope="module")
def second_server() -> Iterator[TestServer]:
    """Yield a second embedded cluster, for a fleet on more than one server."""
    with start_test_server() as server:
        yield server


def _config(
    broker: str,
    targets: dict[str, str],
    storage: Path,
    *,
    webhook: str | None = None,
    schedule: str,
) -> str:
    lines = [
        "[tasks]",
        broker,
        f'queue = "{queue_name()}"',
        'catalogue_env = "FLEET_CATALOGUE_URL"',
        f"clock_speed = {SPEED}",
        "retries = 1",
        'retry_backoff = "1s"',
        'deadman = "off"',
        'reload_every = "1s"',
    ]
    if webhook:
        lines += ["[alerts]", f'webhook_url = "{webhook}"']
    for name in targets:
        lines += [
            f"[targets.{name}]",
            f'url_env = "URL_{name.upper()}"',
            f'storage = "{storage / name}"',
            f"[targets.{name}.schedule]",
            schedule,
        ]
    return "\n".join(lines) + "\n"


def _targets(
    pg_server: TestServer, second_server: TestServer, env: dict[str, str], count: int = 6
) -> dict[str, str]:
    targets = {}
    for index in range(count):
        server = pg_server if index % 2 == 0 else second_server
        name = server.create_database()
        url = server.url(name)
        fill(url, rows=200)
        targets[f"db{index}"] = url
        env[f"URL_DB{index}"] = url
    return targets


SCHEDULE = """backup = "0 * * * *"
verify = "20 * * * *"
snapshot = "*/10 * * * *"
expire = "40 * * * *"
doctor = "off"
"""


@pytest.mark.parametrize("broker_kind", ["postgresql", "redis", "amqp"])
def test_a_fleet_gets_its_jobs_on_schedule(
    broker_kind: str,
    pg_server: TestServer,
    second_server: TestServer,
    catalogue_db: str,
    tmp_path: Path,
) -> None:
    env = {"FLEET_CATALOGUE_URL": catalogue_db}
    broker = broker_for(broker_kind, pg_server, env)
    targets = _targets(pg_server, second_server, env)
    with running_fleet(tmp_path, env, catalogue_db) as fleet:
        fleet.write(_config(broker, targets, tmp_path / "storage", schedule=SCHEDULE))
        fleet.worker("wa")
        fleet.worker("wb")
        fleet.start("beat", "beat")

        def done() -> bool:
            ok = [run for run in fleet.runs() if run.status == "ok"]
            return all(
                {"backup", "verify"} <= {r.job for r in ok if r.target == name}
                and sum(r.job == "snapshot" for r in ok if r.target == name) >= 2
                for name in targets
            )

        fleet.wait(done, timeout=420, why="a backup, a verify and two snapshots per target")
        runs = fleet.runs()
    failed = [(r.target, r.job, r.error) for r in runs if r.status == "failed"]
    assert failed == []
    # Both workers took jobs; every run is recorded with its duration.
    assert {r.worker for r in runs} == {"wa@fleet", "wb@fleet"}
    assert all(r.duration_s is not None for r in runs if r.status == "ok")
    for name in targets:
        storage = open_storage(str(tmp_path / "storage" / name))
        backups = [b for b in list_backups(storage) if b.complete]
        assert backups, name
        verified = [b for b in backups if b.verification is not None and b.verification.ok]
        assert verified, name


def _outage_schedule() -> str:
    return 'snapshot = "*/10 * * * *"\nbackup = "off"\nverify = "off"\nexpire = "off"\n' + (
        'doctor = "off"\n'
    )


def test_a_target_that_goes_down_alerts_once_and_recovers_once(
    pg_server: TestServer, catalogue_db: str, tmp_path: Path
) -> None:
    env = {"FLEET_CATALOGUE_URL": catalogue_db}
    broker = broker_for("postgresql", pg_server, env)
    webhook = Webhook()
    with start_test_server() as lost_server:
        assert lost_server.embedded is not None
        targets = _targets(pg_server, lost_server, env, count=4)
        down = {name for index, name in enumerate(targets) if index % 2 == 1}
        with running_fleet(tmp_path, env, catalogue_db) as fleet:
            config = _config(
                broker, targets, tmp_path / "s", webhook=webhook.url, schedule=_outage_schedule()
            )
            fleet.write(config)
            fleet.worker("wa")
            fleet.worker("wb")
            fleet.start("beat", "beat")

            def snapshots(name: str) -> int:
                return sum(
                    r.job == "snapshot" and r.status == "ok" for r in fleet.runs(target=name)
                )

            fleet.wait(
                lambda: all(snapshots(name) >= 1 for name in targets),
                timeout=240,
                why="a snapshot of each target",
            )
            lost_server.embedded.stop()
            fleet.wait(
                lambda: {(n, "unreachable", "open") for n in down} <= set(webhook.keys()),
                timeout=240,
                why="an alert for each target that went down",
            )
            # The others keep their schedule while those are down.
            before = {name: snapshots(name) for name in targets if name not in down}
            fleet.wait(
                lambda: all(snapshots(n) >= before[n] + 2 for n in before),
                timeout=240,
                why="more snapshots of the targets still up",
            )
            lost_server.embedded.start()
            fleet.wait(
                lambda: {(n, "unreachable", "recovered") for n in down} <= set(webhook.keys()),
                timeout=240,
                why="a recovery message for each target back up",
            )
            back = {name: snapshots(name) for name in down}
            fleet.wait(
                lambda: all(snapshots(n) > back[n] for n in down),
                timeout=240,
                why="snapshots of the targets back up",
            )
    webhook.close()
    # Exactly one alert and one recovery per target down, however many jobs failed.
    assert sorted(webhook.keys()) == sorted(
        [(n, "unreachable", "open") for n in down] + [(n, "unreachable", "recovered") for n in down]
    )
    failed = [r for r in fleet.runs() if r.status == "failed"]
    assert failed and {r.target for r in failed} == down
    # Each failure was retried (with backoff) before it counted.
    assert any(r.attempt == 1 for r in failed)
    assert all(a["message"] for a in webhook.received)
