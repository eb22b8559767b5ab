"""A database's schema as text to compare: ``pg_dump --schema-only``, normalised.

Two dumps of the same schema print the same lines; what varies from run to run
(comments, ``SET`` lines, psql's ``\\restrict`` keys, the version table Alembic
keeps) is left out.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url

from pgwarden._sql import quote_identifier
from pgwarden.backup._pgtools import client_binary
from pgwarden.db import clients
from pgwarden.errors import PgwardenError, UserError

__all__ = ["SCRATCH_PREFIX", "schema_dump", "scratch_database"]

SCRATCH_PREFIX = "pgwarden_check_"
# Servers that keep a per-run version in each column's options print it as one.
_ATTVER = re.compile(r"pg_attver=\d+")
_VARIES = ("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict")


def schema_dump(url: str | URL, *, major: int) -> str:
    """Return the schema of the database at ``url`` as normalised ``pg_dump`` text."""
    binary = client_binary("pg_dump", min_major=major)
    args = clients.client_args(url, application_name="pgwarden-check")
    done = subprocess.run(
        [
            str(binary.path),
            "--schema-only",
            "--no-comments",
            "--exclude-table=*.alembic_version",
            f"--dbname={args.dbname}",
        ],
        env=args.env,
        capture_output=True,
        check=False,
        cwd="/",
    )
    if done.returncode != 0:
        error = clients.first_error(done.stderr.decode("utf-8", "replace"), program="pg_dump")
        raise PgwardenError(f"pg_dump of the scratch database failed: {error}")
    lines = done.stdout.decode("utf-8").splitlines()
    kept = (line for line in lines if line.strip() and not line.startswith(_VARIES))
    return _ATTVER.sub("pg_attver=?", "\n".join(kept))


@contextmanager
def scratch_database(conn: Connection) -> Iterator[URL]:
    """Create an empty database on ``conn``'s server, yield its URL, then drop it."""
    name = SCRATCH_PREFIX + secrets.token_hex(6)
    quoted = quote_identifier(name)
    engine = conn.engine
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
        try:
            admin.execute(sa.text(f"CREATE DATABASE {quoted} TEMPLATE template0"))
        except sa.exc.DBAPIError as exc:
            raise UserError(
                f"cannot create a scratch database to check the migrations in: "
                f"{str(exc.orig).strip().splitlines()[0]}.",
                hint="Check with a role that may create databases (CREATEDB).",
            ) from None
    try:
        yield make_url(engine.url).set(database=name)
    finally:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
            admin.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
