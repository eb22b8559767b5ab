"""Point-in-time recovery through the CLI, into S3, encrypted: backup, status, restore, drill."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from backup_support import ACCESS_KEY, SECRET_KEY, s3_client
from click.testing import CliRunner
from pitr_support import Source, archiving_cluster, install_for

from pgwarden.backup.crypto import BackupKeyring
from pgwarden.backup.pitr_status import drill_records
from pgwarden.backup.storage import S3Storage
from pgwarden.backup.wal import list_wal
from pgwarden.cli.main import cli
from pgwarden.testing.servers import TestServer, free_port

KEYS = "k1:" + base64.b64encode(b"k" * 32).decode()


@pytest.fixture(scope="module")
def s3_env(s3_endpoint: str) -> Iterator[str]:
    """Yield the storage URL of a fresh bucket, with the test credentials in the environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        bucket = f"pgw-{uuid.uuid4().hex[:16]}"
        s3_client(s3_endpoint).create_bucket(Bucket=bucket)
        yield f"s3://{bucket}/prod?endpoint_url={s3_endpoint}&region=us-east-1"


@pytest.fixture(scope="module")
def cluster(pg_server: TestServer, s3_env: str, s3_endpoint: str) -> Iterator[tuple[Source, Path]]:
    """A cluster archiving encrypted into S3, with a base backup taken by the CLI."""
    base = Path(tempfile.mkdtemp(prefix="pgwarden-pitr-cli-"))
    base.chmod(0o711)
    bucket = s3_env.split("/")[2]
    storage = S3Storage(bucket, "prod", endpoint_url=s3_endpoint, region="us-east-1")
    ring = BackupKeyring.from_setting(KEYS)
    try:
        with archiving_cluster(base, storage, install_for(pg_server), keyring=ring) as source:
            source.sql("INSERT INTO marks VALUES (0)")
            result = invoke(source, s3_env, "pitr", "backup")
            assert result.exit_code == 0, result.output
            for number in (1, 2, 3):
                source.mark(number)
            source.wait_archived()
            yield source, base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def invoke(source: Source, storage: str, *args: str) -> object:
    env = {"DATABASE_URL": source.url, "PGWARDEN_ENCRYPTION_KEYS": KEYS}
    return CliRunner().invoke(cli, [*args, "--storage", storage], env=env, catch_exceptions=False)


def test_everything_in_storage_is_encrypted(cluster: tuple[Source, Path]) -> None:
    source, _ = cluster
    assert all(item.encrypted for item in list_wal(source.storage))


def test_restore_to_a_time_through_the_cli(cluster: tuple[Source, Path], s3_env: str) -> None:
    source, base = cluster
    _, after_two, _ = source.marks[1]
    port = free_port()
    result = invoke(
        source, s3_env, "--json", "restore",
        "--target-time", after_two.strftime("%Y-%m-%dT%H:%M:%S.%f%z"),
        "--data-dir", str(base / "restored"), "--port", str(port),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert "recovery stopping before commit" in report["reached"]
    engine = source.engine(port=port)
    try:
        with engine.connect() as conn:
            ids = list(conn.execute(sa.text("SELECT id FROM marks ORDER BY id")).scalars())
    finally:
        engine.dispose()
        from pgwarden.backup._postmaster import server_bin_dir, stop_server

        with source.engine().connect() as conn:
            major = int(conn.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000
        stop_server(server_bin_dir(major), base / "restored")
    assert ids == [0, 1, 2]


def test_status_shows_the_window(cluster: tuple[Source, Path], s3_env: str) -> None:
    source, _ = cluster
    result = invoke(source, s3_env, "--json", "pitr", "status")
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["recoverable"] and status["gaps"] == [] and len(status["base_backups"]) == 1
    listed = json.loads(invoke(source, s3_env, "--json", "backup", "list").output)
    assert [entry["kind"] for entry in listed] == ["physical"]


def test_a_drill_restores_a_random_moment_and_records_it(
    cluster: tuple[Source, Path], s3_env: str
) -> None:
    source, base = cluster
    result = invoke(
        source, s3_env, "pitr", "drill", "--scratch", str(base), "--port", str(free_port())
    )
    assert result.exit_code == 0, result.output
    [record] = drill_records(source.storage)
    assert record.ok and record.seconds > 0
    assert not any(path.name.startswith("drill-") for path in base.iterdir())
