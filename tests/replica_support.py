"""A primary and a streaming standby made from it with pg_basebackup -R, on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pgwarden.backup._postmaster import own
from pgwarden.db import _serverauth as auth
from pgwarden.db.binaries import embedded_install_dir
from pgwarden.db.embedded import EmbeddedServer
from pgwarden.testing.servers import free_port
from pgwarden_test_support import autocommit_value


@dataclass
class Pair:
    """A running primary and its hot standby, both superuser-accessible."""

    primary: EmbeddedServer
    standby: EmbeddedServer

    def sql(self, server: EmbeddedServer, text: str) -> object:
        """Run ``text`` in autocommit on ``server`` and return the first value, if any."""
        return autocommit_value(server.url(), text)

    def wait_replayed(self, timeout: float = 30) -> None:
        """Wait until the standby has replayed everything the primary wrote until now."""
        target = self.sql(self.primary, "SELECT pg_current_wal_lsn()::text")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.sql(self.standby, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
            if done:
                return
            time.sleep(0.05)
        raise AssertionError(f"the standby did not replay up to {target} in {timeout} s")

    @contextmanager
    def replay_paused(self) -> Iterator[None]:
        """Pause the standby's replay for the block: it falls behind for real."""
        self.sql(self.standby, "SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            self.sql(self.standby, "SELECT pg_wal_replay_resume()")


def _base_backup(install: Path, primary: EmbeddedServer, target: Path) -> None:
    password = auth.read_password(primary.password_file)
    assert password is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = password  # in the environment, never on the command line
    args = [
        str(install / "bin" / "pg_basebackup"), "-D", str(target), "-R", "-X", "stream",
        "-c", "fast", "-d", f"host=127.0.0.1 port={primary.port} user=postgres",
    ]  # fmt: skip
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=120)
    own(target)
    shutil.copy(primary.password_file, auth.password_file_for(target))


@contextmanager
def streaming_pair(install_dir: Path | None) -> Iterator[Pair]:
    """Yield a fresh primary and a standby streaming from it; both removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="pgwarden-replica-"))
    os.chmod(base, 0o711)  # noqa: S103 - the server's user must reach its directory
    primary = EmbeddedServer(base / "primary", port=free_port(), install_dir=install_dir)
    standby = EmbeddedServer(base / "standby", port=free_port(), install_dir=install_dir)
    try:
        primary.start()
        install = install_dir or embedded_install_dir()
        assert install is not None
        _base_backup(install, primary, standby.data_dir)
        standby.start()
        pair = Pair(primary, standby)
        deadline = time.monotonic() + 30
        while not pair.sql(primary, "SELECT count(*) FROM pg_stat_replication"):
            assert time.monotonic() < deadline, "the standby never started streaming"
            time.sleep(0.05)
        yield pair
    finally:
        standby.destroy()
        primary.destroy()
        shutil.rmtree(base, ignore_errors=True)
