"""A scratch copy of a database to try candidate indexes on, when hypopg is not there.

Statistics alone cannot stand in for the data. PostgreSQL's planner sizes a table by
its actual number of blocks on disk (``RelationGetNumberOfBlocks`` in
``table_block_relation_estimate_size``) and uses ``pg_class.reltuples / relpages`` only
as a density: an empty table is planned as empty whatever statistics were restored
into it. So the copy holds rows:

1. a database is created on the same server (``pgwarden_advise_<random>``);
2. the schema is copied with ``pg_dump --schema-only`` and ``pg_restore``: tables,
   types and functions first, then, after the rows, indexes, constraints, triggers and
   policies (foreign keys are left out: a sample of each table would not satisfy them);
3. each table the queries read (with its partitions, and the tables under a view) gets
   its rows, or a block sample of ``sample_rows`` of them (``TABLESAMPLE SYSTEM``), and
   is vacuumed and analysed;
4. on PostgreSQL 18 and later, the original's statistics are restored over the
   sample's (``pg_dump --statistics-only``): column distributions come from the whole
   table, and the planner scales its row estimates to the rows the copy holds;
5. each candidate is created for real, inside a transaction that is rolled back.

A table copied whole is planned as in the original. A sampled one is planned at the
sample's size, which understates what an index saves (a scan's cost grows with the
table, an index lookup's barely), so the advice errs towards fewer indexes. The
database is dropped when the ``with`` block ends, however it ends.
"""

from __future__ import annotations

import logging
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection

from pgwarden._sql import qualified, quote_identifier
from pgwarden.advise.candidates import Candidate
from pgwarden.advise.catalog import QueriedTable
from pgwarden.advise.evaluate import Plan, PlanFailed, Probe, explain
from pgwarden.advise.parsing import ParsedQuery
from pgwarden.db import clients
from pgwarden.db.binaries import find_binary
from pgwarden.errors import NotEnabled, PgwardenError
from pgwarden.urls import redact_text

__all__ = ["SCRATCH_PREFIX", "SampledTable", "ScratchCopy", "scratch_copy"]

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "pgwarden_advise_"
_CANDIDATE = "pgwarden_advise_candidate"
_INSUFFICIENT_PRIVILEGE = "42501"
_RESTORE_OPTIONS = [
    "--no-owner",
    "--no-privileges",
    "--no-comments",
    "--no-publications",
    "--no-subscriptions",
    "--no-security-labels",
    "--no-tablespaces",
]
# pg_restore's summary line, and the settings a newer pg_restore sets that an older
# server does not know (transaction_timeout, PostgreSQL 17): nothing is missing for them.
_BENIGN = ("errors ignored on restore", "unrecognized configuration parameter")
# Entries of the post-data section a sampled copy cannot or need not have.
_LEFT_OUT = (" FK CONSTRAINT ", " EVENT TRIGGER ")

# The tables to fill: the ones named, their partitions and inheritance children, and the
# tables under any view named (through the view's rewrite rule).
_TABLES_TO_COPY = text(
    """
WITH RECURSIVE rels(oid) AS (
  SELECT unnest(CAST(:oids AS oid[]))
  UNION
  SELECT x.oid
  FROM rels AS r
  CROSS JOIN LATERAL (
    SELECT i.inhrelid FROM pg_inherits AS i WHERE i.inhparent = r.oid
    UNION ALL
    SELECT d.refobjid
    FROM pg_rewrite AS w
    JOIN pg_depend AS d
      ON d.classid = 'pg_rewrite'::regclass
     AND d.objid = w.oid
     AND d.refclassid = 'pg_class'::regclass
    WHERE w.ev_class = r.oid
      AND d.refobjid <> r.oid
  ) AS x(oid)
)
SELECT n.nspname AS schema,
       c.relname AS name,
       c.reltuples::float8 AS reltuples,
       ARRAY(
         SELECT a.attname::text
         FROM pg_attribute AS a
         WHERE a.attrelid = c.oid
           AND a.attnum > 0
           AND NOT a.attisdropped
           AND a.attgenerated = ''
         ORDER BY a.attnum
       ) AS columns
FROM rels
JOIN pg_class AS c ON c.oid = rels.oid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
ORDER BY n.nspname, c.relname
"""
)

# A candidate just built, and on a partitioned table the partitions' indexes under it.
_BUILT = """
WITH RECURSIVE tree(oid) AS (
  SELECT to_regclass(%s)::oid
  UNION ALL
  SELECT i.inhrelid
  FROM tree AS t
  JOIN pg_inherits AS i ON i.inhparent = t.oid
)
SELECT x.relname, n.nspname, c.relname, pg_relation_size(x.oid)::bigint
FROM tree AS t
JOIN pg_class AS x ON x.oid = t.oid
JOIN pg_index AS ix ON ix.indexrelid = x.oid
JOIN pg_class AS c ON c.oid = ix.indrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
"""

_DATABASE = text(
    """
SELECT pg_encoding_to_char(d.encoding) AS encoding,
       d.datcollate AS collate,
       d.datctype AS ctype,
       current_setting('search_path') AS search_path,
       current_setting('server_version_num')::int AS version
FROM pg_database AS d
WHERE d.datname = current_database()
"""
)


@dataclass(frozen=True)
class SampledTable:
    """A table copied into the scratch database: rows copied of about how many."""

    schema: str
    table: str
    rows_copied: int
    rows_estimated: int

    @property
    def sampled(self) -> bool:
        """Return whether only part of the table was copied."""
        return self.rows_copied < self.rows_estimated


@dataclass
class ScratchCopy:
    """Plans statements on the scratch database, creating candidates for real."""

    conn: psycopg.Connection[Any]
    database: str
    tables: list[SampledTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    method: str = "scratch copy"

    def plan(self, query: ParsedQuery) -> Plan:
        return explain(self.conn, query.query.sql, params=query.params)

    def plan_sql(self, statement: str) -> Plan:
        return explain(self.conn, statement)

    @contextmanager
    def hypothetical(self, candidate: Candidate) -> Iterator[Probe]:
        with self.conn.transaction(force_rollback=True):
            try:
                with self.conn.transaction():
                    self.conn.execute(candidate.definition(_CANDIDATE))
                    built = self.conn.execute(
                        _BUILT, [qualified(candidate.schema, _CANDIDATE, plain=True)]
                    ).fetchall()
            except psycopg.Error as error:
                raise PlanFailed(str(error).strip().splitlines()[0]) from error
            sampled = {(t.schema, t.table) for t in self.tables if t.sampled}
            whole = not any((schema, table) in sampled for _, schema, table, _ in built)
            names = {index: table for index, _, table, _ in built}
            # a sample's index is smaller than the real one: then the caller estimates
            yield Probe(names, sum(size for *_, size in built) if whole else None)


@contextmanager
def scratch_copy(
    conn: Connection,
    tables: list[QueriedTable],
    *,
    sample_rows: int = 100_000,
    progress: Callable[[str, int, int], None] | None = None,
) -> Iterator[ScratchCopy]:
    """Yield a :class:`ScratchCopy` of ``tables`` (and their schema) on the same server.

    The scratch database is dropped on the way out, after an error or an interrupt as
    well. Raises :class:`NotEnabled` if the role may not create databases.
    """
    info = conn.execute(_DATABASE).mappings().one()
    major = int(info["version"]) // 10000
    pg_dump = find_binary("pg_dump", min_major=major).path
    pg_restore = find_binary("pg_restore", min_major=major).path
    copy_list = conn.execute(_TABLES_TO_COPY, {"oids": [t.oid for t in tables]}).mappings().all()
    url = conn.engine.url
    name = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    _create_database(url, name, info)
    notes: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="pgwarden-advise-") as tmp:
            workdir = Path(tmp)
            run = _Runner(url, name, notes)
            schema = workdir / "schema.dump"
            run.check(
                [pg_dump, "--schema-only", "--format=custom", f"--file={schema}"], source=True
            )
            run.restore([pg_restore, "--section=pre-data", *_RESTORE_OPTIONS, str(schema)])
            sampled = _copy_rows(url, name, copy_list, sample_rows, progress)
            listing = workdir / "post-data.list"
            entries = run.check([pg_restore, "--list", str(schema)], connect=False)
            listing.write_text(
                "".join(line for line in entries.splitlines(True) if not _left_out(line))
            )
            run.restore(
                [pg_restore, "--section=post-data", f"--use-list={listing}",
                 *_RESTORE_OPTIONS, str(schema)]
            )  # fmt: skip
            _analyze(url, name, sampled)
            if major >= 18:
                stats = workdir / "statistics.dump"
                run.check(
                    [pg_dump, "--statistics-only", "--format=custom", f"--file={stats}"],
                    source=True,
                )
                run.restore([pg_restore, *_RESTORE_OPTIONS, str(stats)])
        planner = psycopg.connect(_conninfo(url, name), application_name="pgwarden-advise")
        try:
            with planner.transaction():
                planner.execute(
                    "SELECT set_config('search_path', %s, false)", [info["search_path"]]
                )
            yield ScratchCopy(planner, name, sampled, notes)
        finally:
            planner.close()
    except BaseException:
        _drop_database(url, name, quiet=True)  # the first error is the one to report
        raise
    _drop_database(url, name)


def _create_database(url: URL, name: str, info: Any) -> None:
    statement = sql.SQL(
        "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}"
    ).format(
        sql.Identifier(name),
        sql.Literal(info["encoding"]),
        sql.Literal(info["collate"]),
        sql.Literal(info["ctype"]),
    )
    try:
        with psycopg.connect(_conninfo(url), autocommit=True) as admin:
            admin.execute(statement)
    except psycopg.Error as error:
        if error.sqlstate == _INSUFFICIENT_PRIVILEGE:
            raise NotEnabled(
                "cannot try indexes without hypopg: the role may not create the scratch "
                f"database ({str(error).strip().splitlines()[0]}).",
                hint="Install hypopg and CREATE EXTENSION hypopg as a superuser, or run the "
                "advisor as a role with CREATEDB.",
            ) from error
        raise


def _drop_database(url: URL, name: str, *, quiet: bool = False) -> None:
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    try:
        with psycopg.connect(_conninfo(url), autocommit=True) as admin:
            admin.execute(statement)
    except psycopg.Error as error:
        said = redact_text(str(error)).strip()
        log.warning("could not drop the scratch database %s: %s", name, said)
        if quiet:
            return
        raise PgwardenError(
            f"could not drop the scratch database {name}: {said}",
            hint=(
                f"Drop it by hand: DROP DATABASE {quote_identifier(name, plain=True)} WITH (FORCE);"
            ),
        ) from error


def _conninfo(url: URL, database: str | None = None) -> str:
    """Return a libpq URI for ``url`` (on ``database``), password included: never shown."""
    target = url.set(drivername="postgresql")
    if database is not None:
        target = target.set(database=database)
    return target.render_as_string(hide_password=False)


class _Runner:
    """Run pg_dump and pg_restore against the original and the scratch database."""

    def __init__(self, url: URL, scratch: str, notes: list[str]) -> None:
        # Secrets reach the children through the environment, never their command line.
        self.source = clients.client_args(url, application_name="pgwarden-advise")
        self.scratch = clients.client_args(
            url.set(database=scratch), application_name="pgwarden-advise"
        )
        self.notes = notes

    def _run(
        self, args: list[Any], target: clients.ClientArgs | None
    ) -> subprocess.CompletedProcess[str]:
        command = [str(arg) for arg in args]
        if target is not None:
            command.append(f"--dbname={target.dbname}")
        env = (target or self.source).env
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    def check(self, args: list[Any], *, source: bool = False, connect: bool = True) -> str:
        """Run a step that must succeed; return its output."""
        done = self._run(args, (self.source if source else self.scratch) if connect else None)
        if done.returncode != 0:
            detail = redact_text(done.stderr.strip()).splitlines()
            raise PgwardenError(
                f"could not build the scratch copy: {Path(str(args[0])).name} failed: "
                f"{detail[-1] if detail else done.returncode}",
                hint="Check that the role can read the whole schema (pg_dump needs that).",
            )
        return done.stdout

    def restore(self, args: list[Any]) -> None:
        """Restore into the scratch database; note the objects that failed, go on."""
        done = self._run(args, self.scratch)
        errors = [
            line.split("error:", 1)[1].strip()
            for line in redact_text(done.stderr).splitlines()
            if "error:" in line and not any(benign in line for benign in _BENIGN)
        ]
        if errors:
            self.notes.append(
                f"the scratch copy lacks some objects ({len(errors)} restore errors; first: "
                f"{errors[0]})"
            )


def _left_out(line: str) -> bool:
    return not line.startswith(";") and any(kind in line for kind in _LEFT_OUT)


def _copy_rows(
    url: URL,
    scratch: str,
    tables: Sequence[Any],
    sample_rows: int,
    progress: Callable[[str, int, int], None] | None,
) -> list[SampledTable]:
    copied: list[SampledTable] = []
    with (
        psycopg.connect(_conninfo(url), application_name="pgwarden-advise") as source,
        psycopg.connect(_conninfo(url, scratch), application_name="pgwarden-advise") as target,
    ):
        source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for done, table in enumerate(tables):
            if progress is not None:
                progress("copying tables", done, len(tables))
            name = qualified(table["schema"], table["name"], plain=True)
            columns = ", ".join(quote_identifier(column, plain=True) for column in table["columns"])
            target.execute(f"ALTER TABLE {name} SET (autovacuum_enabled = false)")
            estimated = max(int(table["reltuples"]), 0)
            select = f"SELECT {columns} FROM ONLY {name}"
            if estimated > sample_rows:
                # a block sample a little larger than needed, cut to size
                percent = min(100.0, 120.0 * sample_rows / estimated)
                select += f" TABLESAMPLE SYSTEM ({percent:.6f}) REPEATABLE (0)"
            select += f" LIMIT {int(sample_rows)}"
            with (
                source.cursor().copy(f"COPY ({select}) TO STDOUT") as rows_out,
                target.cursor() as cursor,
            ):
                with cursor.copy(f"COPY {name} ({columns}) FROM STDIN") as rows_in:
                    for chunk in rows_out:
                        rows_in.write(chunk)
                rows = max(cursor.rowcount, 0)
            copied.append(SampledTable(table["schema"], table["name"], rows, max(estimated, rows)))
        target.commit()
        if progress is not None:
            progress("copying tables", len(tables), len(tables))
    return copied


def _analyze(url: URL, scratch: str, tables: list[SampledTable]) -> None:
    if not tables:
        return
    names = ", ".join(qualified(t.schema, t.table, plain=True) for t in tables)
    with psycopg.connect(_conninfo(url, scratch), autocommit=True) as target:
        # VACUUM too: the visibility map lets the planner cost index-only scans as on a
        # table autovacuum keeps (on PostgreSQL 18 the original's relallvisible follows)
        target.execute(f"VACUUM (ANALYZE) {names}")
