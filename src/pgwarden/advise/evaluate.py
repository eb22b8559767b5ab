"""Ask the planner what a query would cost with a candidate index, without building it.

Two ways, one interface (:class:`Planner`):

- **hypopg**, when the extension is installed in the database, or available on the
  server and the role may create it: a hypothetical index exists only in this
  session's planner, so the plan is the one the real database would choose, at its
  real size. Everything runs in one transaction that is rolled back, so an extension
  created for the run is gone afterwards.
- **scratch copy** otherwise (see :mod:`pgwarden.advise.scratch`): each candidate is
  really built on a sampled copy of the tables, inside a transaction that is rolled
  back.

Queries with parameters (``$1``, as ``pg_stat_statements`` shows them) get their
generic plan: ``EXPLAIN (GENERIC_PLAN)`` on PostgreSQL 16 and later; before that, the
statement is prepared (the server infers the parameters' types) and explained with
``plan_cache_mode = force_generic_plan``, which plans it without parameter values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import psycopg
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified, quote_identifier
from pgwarden.advise.candidates import Candidate
from pgwarden.advise.catalog import QueriedTable
from pgwarden.advise.errors import PlanFailed
from pgwarden.advise.parsing import ParsedQuery
from pgwarden.errors import NotEnabled

if TYPE_CHECKING:
    from pgwarden.advise.scratch import SampledTable

__all__ = [
    "HYPOPG_METHODS",
    "Method",
    "Plan",
    "PlanFailed",
    "Planner",
    "Probe",
    "explain",
    "open_planner",
]

log = logging.getLogger(__name__)

Method = Literal["auto", "hypopg", "scratch"]
Progress = Callable[[str, int, int], None]

_PREPARED = "pgwarden_advise_plan"
_INSUFFICIENT_PRIVILEGE = "42501"
# How long planning may wait for a lock (a table locked by a migration, say).
_LOCK_TIMEOUT = "5s"


@dataclass(frozen=True)
class Plan:
    """A plan's estimated total cost and rows, and the indexes it reads."""

    cost: float
    rows: float
    indexes: frozenset[str]


@dataclass(frozen=True)
class Probe:
    """A candidate index the planner can see: its names in plans, and size if known.

    ``names`` maps each name a plan may show to the table it indexes: one for a
    plain table, one per partition for a partitioned one.
    """

    names: dict[str, str]
    size_bytes: int | None

    def used(self, plan: Plan) -> set[str]:
        """Return the tables (partitions) on which ``plan`` reads this index."""
        return {table for name, table in self.names.items() if name in plan.indexes}


class Planner(Protocol):
    """Plans statements, with or without one candidate index present."""

    method: str

    def plan(self, query: ParsedQuery) -> Plan:
        """Return the (generic) plan of ``query``; raise :class:`PlanFailed` if none."""
        ...

    def plan_sql(self, sql: str) -> Plan:
        """Return the plan of a statement without parameters."""
        ...

    def hypothetical(self, candidate: Candidate) -> AbstractContextManager[Probe]:
        """Make ``candidate`` visible to :meth:`plan` inside the ``with`` block."""
        ...


def explain(conn: psycopg.Connection[Any], sql: str, *, params: int = 0) -> Plan:
    """Return the plan of ``sql``, generic when it has ``params`` parameters.

    Runs in a savepoint (or its own transaction), so a statement that fails to plan
    leaves the session usable.
    """
    try:
        if params and conn.info.server_version < 160000:
            return _explain_prepared(conn, sql, params)
        options = "GENERIC_PLAN, FORMAT JSON" if params else "FORMAT JSON"
        with conn.transaction():
            row = conn.execute(f"EXPLAIN ({options}) {sql}").fetchone()
    except psycopg.Error as error:
        raise PlanFailed(_first_line(error)) from error
    assert row is not None
    return _plan(row[0])


def _explain_prepared(conn: psycopg.Connection[Any], sql: str, params: int) -> Plan:
    prepared = False
    try:
        with conn.transaction():
            conn.execute(f"PREPARE {_PREPARED} AS {sql}")
            prepared = True
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            nulls = ", ".join(["NULL"] * params)
            row = conn.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {_PREPARED}({nulls})").fetchone()
    finally:
        if prepared:  # prepared statements outlive a rollback
            conn.execute(f"DEALLOCATE {_PREPARED}")
    assert row is not None
    return _plan(row[0])


def _plan(document: Any) -> Plan:
    root = document[0]["Plan"]
    indexes: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if "Index Name" in node:
            indexes.add(node["Index Name"])
        stack.extend(node.get("Plans", ()))
    return Plan(float(root["Total Cost"]), float(root["Plan Rows"]), frozenset(indexes))


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# Access methods hypopg can make hypothetical indexes of (1.3: no GIN, no GiST).
HYPOPG_METHODS = frozenset({"btree", "brin", "hash"})


class HypoPG:
    """Plan on the database itself, with hypothetical indexes from the hypopg extension.

    A candidate on a partitioned table becomes one hypothetical index per partition
    (hypopg releases differ in what they do with one on the parent), so plans show
    which partitions use it.
    """

    method = "hypopg"

    def __init__(
        self, conn: psycopg.Connection[Any], schema: str, leaves: dict[int, list[str]]
    ) -> None:
        self.conn = conn
        # Every call passes parameters: quote_identifier writes a "%" so psycopg leaves it.
        self.schema = quote_identifier(schema)
        self.leaves = leaves

    def plan(self, query: ParsedQuery) -> Plan:
        return explain(self.conn, query.query.sql, params=query.params)

    def plan_sql(self, sql: str) -> Plan:
        return explain(self.conn, sql)

    @contextmanager
    def hypothetical(self, candidate: Candidate) -> Iterator[Probe]:
        if candidate.using not in HYPOPG_METHODS:
            raise PlanFailed(f"hypopg cannot make {candidate.using} indexes")
        leaves = self.leaves.get(candidate.table_oid)
        targets = leaves if leaves is not None else [None]
        made: list[int] = []
        names: dict[str, str] = {}
        size = 0
        try:
            try:
                with self.conn.transaction():
                    for target in targets:
                        row = self.conn.execute(
                            f"SELECT indexrelid, indexname "
                            f"FROM {self.schema}.hypopg_create_index(%s)",
                            [candidate.definition(table=target)],
                        ).fetchone()
                        assert row is not None
                        made.append(row[0])
                        names[row[1]] = target or candidate.table
                        found = self.conn.execute(
                            f"SELECT {self.schema}.hypopg_relation_size(%s)", [row[0]]
                        ).fetchone()
                        size += int(found[0]) if found else 0
            except psycopg.Error as error:
                raise PlanFailed(_first_line(error)) from error
            yield Probe(names, size)
        finally:
            for oid in made:
                try:
                    self.conn.execute(f"SELECT {self.schema}.hypopg_drop_index(%s)", [oid])
                except psycopg.Error:  # interrupted mid-statement: reset() tries again
                    log.debug("could not drop hypothetical index %s", oid, exc_info=True)

    def reset(self) -> bool:
        """Drop every hypothetical index of this session; return whether that worked."""
        try:
            self.conn.execute(f"SELECT {self.schema}.hypopg_reset()", [])
        except psycopg.Error:
            log.debug("hypopg_reset() failed", exc_info=True)
            return False
        return True


_HYPOPG_SCHEMA = """
SELECT n.nspname
FROM pg_extension AS e
JOIN pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = 'hypopg'
"""


def _enable_hypopg(conn: psycopg.Connection[Any]) -> tuple[str | None, str]:
    """Return hypopg's schema and how it came to be usable, or None and why it is not."""
    row = conn.execute(_HYPOPG_SCHEMA).fetchone()
    if row is not None:
        return row[0], "installed in the database"
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'")
    if available.fetchone() is None:
        return None, "hypopg is not installed on the server"
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
    except psycopg.Error as error:
        reason = _first_line(error)
        if error.sqlstate == _INSUFFICIENT_PRIVILEGE:
            return None, (
                f"hypopg is available but this role cannot create it ({reason}); "
                "a superuser can run CREATE EXTENSION hypopg"
            )
        return None, f"hypopg is available but could not be created ({reason})"
    row = conn.execute(_HYPOPG_SCHEMA).fetchone()
    assert row is not None
    return row[0], "created for this run only (rolled back afterwards)"


@dataclass(frozen=True)
class Opened:
    """The planner in use, why this method was chosen, and for a scratch copy its tables
    and what went wrong building it."""

    planner: Planner
    method: str
    reason: str
    tables: list[SampledTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@contextmanager
def open_planner(
    conn: Connection,
    tables: list[QueriedTable],
    *,
    method: Method = "auto",
    sample_rows: int = 100_000,
    progress: Progress | None = None,
) -> Iterator[Opened]:
    """Yield a planner: hypopg if it can be used (unless ``method`` says scratch), else a
    scratch copy of ``tables``. Whatever happens, nothing is left behind: hypothetical
    indexes are dropped, a created extension is rolled back, a scratch database dropped.
    """
    from pgwarden.advise.scratch import scratch_copy

    raw: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    reason = "method 'scratch' was asked for"
    if method != "scratch":
        planner: HypoPG | None = None
        clean = True
        try:
            with raw.transaction(force_rollback=True):
                raw.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
                schema, reason = _enable_hypopg(raw)
                if schema is not None:
                    leaves = {
                        t.oid: [
                            qualified(p.schema, p.name, plain=True)
                            for p in t.partitions
                            if not p.partitioned
                        ]
                        for t in tables
                        if t.partitioned
                    }
                    planner = HypoPG(raw, schema, leaves)
                    try:
                        yield Opened(planner, "hypopg", f"hypopg {reason}")
                    finally:
                        clean = planner.reset()
        finally:
            # Hypothetical indexes live in the session, not the transaction: a session
            # that could not drop them must not go back to a pool.
            if planner is not None and not clean and not planner.reset():
                conn.invalidate()
        if planner is not None:
            return
        if method == "hypopg":
            raise NotEnabled(
                f"cannot use hypopg: {reason}.",
                hint="Install hypopg on the server (apt-get install postgresql-NN-hypopg) and "
                "run CREATE EXTENSION hypopg as a superuser, or use --method scratch.",
            )
    with scratch_copy(conn, tables, sample_rows=sample_rows, progress=progress) as copy:
        yield Opened(copy, "scratch copy", reason, tables=copy.tables, notes=copy.notes)
