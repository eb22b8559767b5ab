"""The embedded server's password: made at initdb, kept in a 0600 file, never on a command line.

The server is given a SCRAM-SHA-256 verifier, never the password itself, so the only
copy of the secret is the password file, owned by the user who runs pgwarden.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pgwarden.db._serviceuser import hand_over
from pgwarden.errors import ServerUnusable

__all__ = [
    "new_password",
    "password_file_for",
    "read_password",
    "scram_verifier",
    "verifier_file",
    "without_trust",
    "write_password",
]

_ITERATIONS = 4096  # PostgreSQL's default scram_iterations
# A pg_hba.conf line whose method (its last field) is trust, an end-of-line comment allowed.
_TRUST = re.compile(
    r"^(?P<head>[ \t]*(?:local|host\w*)[ \t][^#\n]*[ \t])trust(?P<tail>[ \t]*(?:#.*)?)$",
    re.MULTILINE,
)


def password_file_for(data_dir: Path) -> Path:
    """Return where the password of the server on ``data_dir`` is kept: beside it.

    Not inside: the server's user must not read it, and a base backup of the data
    directory must not carry it.
    """
    return data_dir.with_name(f"{data_dir.name}.password")


def new_password() -> str:
    """Return a new random password, safe in a URL without quoting."""
    return secrets.token_urlsafe(32)


def scram_verifier(password: str, *, iterations: int = _ITERATIONS) -> str:
    """Return the SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677).

    Given as the password to ``CREATE ROLE``/``ALTER ROLE`` or to ``initdb --pwfile``,
    PostgreSQL stores it as is.
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def read_password(path: Path) -> str | None:
    """Return the password kept in ``path``, or None when there is no such file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ServerUnusable(
            f"cannot read the embedded server's password file {path}: {exc.strerror}.",
            hint="Run pgwarden as the user who started the server (the file is theirs, 0600).",
        ) from None
    return text.strip() or None


def write_password(path: Path, password: str) -> None:
    """Write ``password`` to ``path``, mode 0600, replacing any file there at once."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")  # 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def verifier_file(verifier: str, user: str | None) -> Iterator[Path]:
    """Yield a file holding ``verifier``, readable by ``user`` only, for ``initdb --pwfile``."""
    workdir = Path(tempfile.mkdtemp(prefix="pgwarden-initdb-"))
    try:
        path = workdir / "pwfile"
        path.write_text(verifier + "\n")
        path.chmod(0o600)
        if user is not None:
            hand_over([workdir, path], user)
        yield path
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def without_trust(hba: str) -> str:
    """Return the pg_hba.conf text ``hba`` with every ``trust`` method made ``scram-sha-256``."""
    return _TRUST.sub(lambda m: f"{m['head']}scram-sha-256{m['tail']}", hba)
