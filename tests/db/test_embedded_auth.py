"""The embedded servers ask for a password: another account on the machine cannot get in."""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from pgwarden.backup.logical import create_backup
from pgwarden.backup.progress import BackupProgress
from pgwarden.backup.storage import LocalStorage
from pgwarden.backup.verify import verify_backup
from pgwarden.db._serverauth import without_trust
from pgwarden.db.binaries import embedded_install_dir, shared_install
from pgwarden.db.embedded import EmbeddedServer
from pgwarden.testing.servers import free_port

pytestmark = pytest.mark.slow

as_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root can act as a second local account (uid nobody)"
)


def _psql_as_nobody(port: int, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run psql as uid nobody against 127.0.0.1:``port``, as the superuser postgres."""
    source = embedded_install_dir()
    assert source is not None
    psql = shared_install(source) / "bin" / "psql"  # a copy every user can run
    env = {"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "10"}
    if password is not None:
        env["PGPASSWORD"] = password
    args = [str(psql), "-w", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    return subprocess.run(
        [*args, "-d", "postgres", "-Atc", "SELECT current_user"],
        user="nobody", env=env, cwd="/", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def _assert_nobody_is_refused(port: int, password: str) -> None:
    bare = _psql_as_nobody(port)
    assert bare.returncode != 0 and "no password supplied" in bare.stderr, bare.stderr
    wrong = _psql_as_nobody(port, "not-the-password")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
    # The secret is all that stands between them: with it, the same account gets in.
    right = _psql_as_nobody(port, password)
    assert right.returncode == 0 and right.stdout.strip() == "postgres", right.stderr


def test_the_password_is_in_a_private_file_and_the_url(server_dir: Path) -> None:
    server = EmbeddedServer(server_dir / "data", port=free_port())
    try:
        status = server.start()
        secret = server.password_file.read_text().strip()
        info = server.password_file.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
        assert server.password_file.parent == server.data_dir.parent  # beside, not inside
        assert len(secret) >= 32 and secret in server.url()
        assert secret not in status.url and ":***@" in status.url
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        without = sa.make_url(server.url()).set(password="wrong")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(without.render_as_string(hide_password=False)).close()
        hba = (server.data_dir / "pg_hba.conf").read_text()
        assert without_trust(hba) == hba  # not one trust line
    finally:
        server.destroy()
    assert not server.password_file.exists() and not server.data_dir.exists()


@as_root
def test_another_account_cannot_connect_to_the_embedded_server(server_dir: Path) -> None:
    server = EmbeddedServer(server_dir / "data", port=free_port())
    try:
        status = server.start()
        unreadable = subprocess.run(
            ["cat", str(server.password_file)], user="nobody", cwd="/",
            capture_output=True, check=False,
        )  # fmt: skip
        assert unreadable.returncode != 0
        _assert_nobody_is_refused(status.port, server.password_file.read_text().strip())
    finally:
        server.stop()


@as_root
def test_another_account_cannot_connect_to_the_verify_scratch_server(
    pg_url: str, tmp_path: Path, server_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE secret_rows AS SELECT g AS id FROM generate_series(1, 50) g")
        odd = "SELECT count(*) FROM pg_attribute WHERE attoptions::text LIKE '%pg_attver%'"
        if conn.execute(odd).fetchone() != (0,):
            pytest.skip("this server gives every column a 'pg_attver' option no stock server knows")
    backups = LocalStorage(tmp_path / "backups")
    manifest = create_backup(pg_url, backups).manifest
    # The scratch cluster's directory is made in the temporary directory: this one.
    scratch_parent = server_dir
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_parent))
    probed: list[int] = []

    def probe(progress: BackupProgress) -> None:
        if probed:
            return
        [pid_file] = scratch_parent.glob("pgwarden-verify-*/data/postmaster.pid")
        port = int(pid_file.read_text().splitlines()[3])
        password_file = pid_file.parent.with_name("data.password")
        _assert_nobody_is_refused(port, password_file.read_text().strip())
        probed.append(port)

    record = verify_backup(backups, manifest.id, scratch="embedded", on_progress=probe)
    assert probed, "the scratch server was never seen running"
    assert record.ok and record.scratch == "embedded"
    assert not list(scratch_parent.glob("pgwarden-verify-*"))  # stopped and removed


def test_a_cluster_that_trusted_local_connections_gets_a_password(server_dir: Path) -> None:
    server = EmbeddedServer(server_dir / "data", port=free_port())
    server.start()
    # Make it what an older pgwarden left: no password, trust in pg_hba.conf, no file.
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("ALTER ROLE postgres PASSWORD NULL")
        conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
    server.stop()
    hba = server.data_dir / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))
    server.password_file.unlink()
    assert sa.make_url(server.url()).password is None  # no file: nothing to give
    try:
        server.start()
        secret = server.password_file.read_text().strip()
        assert secret in server.url()
        assert "trust" not in "".join(
            line for line in hba.read_text().splitlines() if not line.startswith("#")
        )
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)
        bare = sa.make_url(server.url())._replace(password=None)  # .set() would keep it
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(bare.render_as_string(), connect_timeout=10).close()
    finally:
        server.stop()
