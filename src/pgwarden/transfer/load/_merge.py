"""Merge a staging table into its target, journaling every row it changes, set-based.

One statement per batch of staged rows does the write and the journal together: the
``INSERT ... ON CONFLICT`` returns the rows as written (with their ``xmin``), a CTE
holding the previous versions is joined to them, and ``INSERT INTO
pgwarden.import_journal ... SELECT`` takes the lot: one journal row per updated row
(its previous version), and one per batch for the inserted rows, their keys as arrays.
Each batch runs in a savepoint; a batch that breaks a constraint is split in halves
until the offending rows are found, so a report can name them and the rest can still
be counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden._sql import quote_identifier as quote
from pgwarden.transfer.catalog import CatalogTable, UniqueKey
from pgwarden.transfer.load._clauses import column_list, key_json, sql_name
from pgwarden.transfer.load._staging import NotDirect, Stage
from pgwarden.transfer.load.reports import (
    ImportedTable,
    Mode,
    RowError,
    is_row_level,
    row_error,
)

__all__ = ["TableMerge"]

_JOURNAL = (
    "INSERT INTO pgwarden.import_journal\n"
    "  (run_id, schema_name, table_name, action, key, keys, previous, previous_row,"
    " written_xmin)\n"
)
# Key types whose values cannot be gathered into one array of them and unnested again.
_NOT_IN_ARRAYS = ("A", "C", "P")


@contextmanager
def planner_settings(conn: Connection, **settings: bool) -> Iterator[None]:
    """Set planner switches (``enable_hashjoin=False``...) inside, as they were after."""
    names = list(settings)
    before = [
        conn.execute(text("SELECT current_setting(:n)"), {"n": n}).scalar_one() for n in names
    ]
    for name, on in settings.items():
        conn.execute(
            text("SELECT set_config(:n, :v, true)"), {"n": name, "v": "on" if on else "off"}
        )
    yield
    # Not after an error: the transaction is then rolled back, and the settings with it.
    for name, value in zip(names, before, strict=True):
        conn.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})


class TableMerge:
    """Merge one staged table into its target in ``mode``, journaling under ``run_id``."""

    def __init__(
        self,
        conn: Connection,
        target: CatalogTable,
        stage: Stage,
        *,
        mode: Mode,
        conflict: UniqueKey,
        run_id: int,
        report: ImportedTable,
        max_errors: int = 10,
    ) -> None:
        self.conn = conn
        self.target = target
        self.stage = stage
        self.mode = mode
        self.conflict = conflict
        self.report = report
        self.max_errors = max_errors
        self.row_key = target.row_key(conflict)
        self.columns = [c for c in stage.columns if not target.by_name[c].generated]
        shown = self.row_key if set(self.row_key) <= set(stage.columns) else conflict.columns
        self.params: dict[str, Any] = {"run": run_id, "schema": target.schema, "table": target.name}
        self._shown_key = key_json(shown, "pgw_s", self.params, "pgw_r", as_text=True)
        self._journal_key = key_json(self.row_key, "pgw_up", self.params, "pgw_k")
        # The keys of a batch's inserted rows go in one journal row, an array a column.
        self._batch_keys = all(
            target.by_name[c].category not in _NOT_IN_ARRAYS for c in self.row_key
        )
        self._order: str | None = None  # the column batches are ranges of: stage.n

    # -- SQL --

    def _cast(self, column: str, alias: str = "pgw_s") -> str:
        """Return a staged value as the column's type: as it is when staged typed."""
        if self.stage.typed:
            return f"{alias}.{quote(column)}"
        return f"CAST({alias}.{quote(column)} AS {self.target.by_name[column].base_type})"

    def _differs(self, columns: list[str], old: str, new: str | None = None) -> str:
        """Return SQL true when ``old``'s ``columns`` differ from the staged (or ``new``) ones.

        Typed values compare by their binary images (``*=``), which every type has, and
        which tell ``1.0`` from ``1.00`` and ``-0`` from ``0``; staged text compares as
        text after the cast.
        """
        if new is not None or self.stage.typed:
            new = new or "pgw_s"
            # Columns whose = means identical compare directly (cheap); the rest as one
            # record of binary images, which costs building two records a row.
            plain = [c for c in columns if self.target.by_name[c].equal_is_identical]
            imaged = [c for c in columns if c not in plain]
            tests = [f"{old}.{quote(c)} IS DISTINCT FROM {new}.{quote(c)}" for c in plain]
            if imaged:
                ours = ", ".join(f"{old}.{quote(c)}" for c in imaged)
                theirs = ", ".join(f"{new}.{quote(c)}" for c in imaged)
                tests.append(f"NOT (ROW({ours})::record *= ROW({theirs})::record)")
            return "(" + " OR ".join(tests) + ")"
        ours = ", ".join(f"{old}.{quote(c)}::text" for c in columns)
        theirs = ", ".join(f"{self._cast(c)}::text" for c in columns)
        return f"({ours}) IS DISTINCT FROM ({theirs})"

    def _staged_match(self, alias: str) -> str:
        return " AND ".join(f"{alias}.{quote(c)} = {self._cast(c)}" for c in self.conflict.columns)

    @property
    def order(self) -> str:
        """Return the stage's column that orders the rows to merge."""
        return self._order or self.stage.n

    @property
    def changes(self) -> str:
        """Return the temporary table of the change set that upserts and replaces merge.

        It holds the staged rows that are new or differ from the target's, numbered in
        merge order (``pgw_pos``).
        """
        return f"pgw_changes_{self.stage.number}"

    def _x(self, name: str) -> str:
        """Return the name of a column pgwarden adds (``_pgw_pos``...): no staged column's."""
        return f"{self.stage.internal}{name}"

    def _found(self) -> str:
        """Return SQL true when the staged row matched a row ``pgw_t`` of the target."""
        return f"pgw_t.{quote(self.conflict.columns[0])} IS NOT NULL"  # matched: not NULL

    def _updated_columns(self) -> list[str]:
        unchanged = set(self.conflict.columns) | set(self.target.primary_key)
        return [
            c for c in self.columns if c not in unchanged and self.target.by_name[c].identity != "a"
        ]

    def find_changes(self) -> int:
        """Gather the change set in one pass (a join of the stage and the target); count it.

        The change set holds the staged rows that are new or differ from the row they
        match, numbered in merge order (``_pgw_pos``), with whether they matched
        (``_pgw_found``) and the matched row's previous version for the journal. One
        set-based pass costs about a scan of each table; matching batch by batch made
        the planner scan both once a batch, and locked every unchanged row.
        """
        updates = self._updated_columns()
        differs = self._differs(updates, "pgw_t") if updates else "false"
        found = self._found()
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.changes}")
        # Both tables have a unique index on the key: walking them side by side (a merge
        # join) beats hashing a million rows, which the planner prefers.
        with planner_settings(self.conn, enable_hashjoin=not self.stage.typed):
            self._gather_changes(found, differs)
        self.conn.exec_driver_sql(f"CREATE UNIQUE INDEX ON {self.changes} ({self._x('pos')})")
        self.conn.exec_driver_sql(f"ANALYZE {self.changes} ({self._x('pos')})")
        count = self.conn.exec_driver_sql(f"SELECT count(*) FROM {self.changes}").scalar_one()
        return int(count)

    def _gather_changes(self, found: str, differs: str) -> None:
        self.conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {self.changes} ON COMMIT DROP AS\n"
            f"SELECT row_number() OVER (ORDER BY pgw_s.{self.order}) AS {self._x('pos')},\n"
            "  pgw_s.*,\n"
            f"  {found} AS {self._x('found')},\n"
            f"  CASE WHEN {found} THEN to_jsonb(pgw_t.*) END AS {self._x('previous')},\n"
            f"  CASE WHEN {found} THEN CAST(ROW(pgw_t.*) AS text) END"
            f" AS {self._x('previous_row')}\n"
            f"FROM {self.stage.name} AS pgw_s\n"
            f"LEFT JOIN {self.target.sql} AS pgw_t ON {self._staged_match('pgw_t')}\n"
            f"WHERE NOT ({found}) OR {differs}"
        )

    def _range(self) -> str:
        return f"pgw_s.{self.order} > :lo AND pgw_s.{self.order} <= :hi"

    def _insert(self, *, source: str | None = None) -> str:
        overriding = (
            " OVERRIDING SYSTEM VALUE"
            if any(self.target.by_name[c].identity == "a" for c in self.columns)
            else ""
        )
        values = ", ".join(self._cast(c) for c in self.columns)
        # An upsert inserts from its change set (``source``), not from the whole stage.
        source = source or f"{self.stage.name} AS pgw_s\n  WHERE {self._range()}"
        return (
            f"INSERT INTO {self.target.sql} AS pgw_t ({column_list(self.columns)}){overriding}\n"
            f"  SELECT {values}\n"
            f"  FROM {source}\n"
        )

    def _journal_inserts(self, where: str = "") -> str:
        """Return the CTE journaling the rows of ``pgw_up`` (``where`` filters) as inserted."""
        if not self._batch_keys:
            return (
                f"pgw_ji AS (\n{_JOURNAL}"
                f"  SELECT :run, :schema, :table, 'insert', {self._journal_key}, NULL, NULL, NULL,"
                " pgw_up.pgw_xmin\n"
                f"  FROM pgw_up{where}\n  RETURNING 1\n)"
            )
        # Every row one statement wrote has the same xmin: its (sub)transaction's id.
        return (
            f"pgw_ji AS (\n{_JOURNAL}"
            f"  SELECT :run, :schema, :table, 'insert', NULL, {self._key_arrays('pgw_up')},"
            " NULL, NULL, (array_agg(pgw_up.pgw_xmin))[1]\n"
            f"  FROM pgw_up{where}\n  HAVING count(*) > 0\n  RETURNING 1\n)"
        )

    def _key_arrays(self, alias: str) -> str:
        """Return ``jsonb_build_object(:a0, array_agg(alias.k0)::text, ...)`` over the row key.

        Each key column's values go as the text of one array (``{"id": "{1,2,3}"}``),
        read back typed by ``jsonb_to_record``; ``array_agg`` costs a third of
        ``jsonb_agg``.
        """
        arrays = []
        for i, name in enumerate(self.row_key):
            self.params[f"pgw_a{i}"] = name
            arrays.append(f"CAST(:pgw_a{i} AS text), array_agg({alias}.{quote(name)})::text")
        return f"jsonb_build_object({', '.join(arrays)})"

    def _merge_sql(self) -> str:
        returned = column_list(dict.fromkeys([*self.row_key, *self.conflict.columns]), "pgw_t")
        # A partitioned table cannot return xmin: its journal rows then record none,
        # and stand for it with their own, written by the same (sub)transaction.
        xmin = "NULL::xid" if self.target.partitioned else "pgw_t.xmin"
        returning = f"  RETURNING {returned}, {xmin} AS pgw_xmin\n)"
        if self.mode == "insert":
            # Conflicts stop a real import before this; a dry run goes on without them.
            skip_conflicts = (
                f"    AND NOT EXISTS (SELECT FROM {self.target.sql} AS pgw_x"
                f" WHERE {self._staged_match('pgw_x')})\n"
                if self.report.conflicts
                else ""
            )
            return (
                f"WITH pgw_up AS (\n{self._insert()}{skip_conflicts}{returning},\n"
                f"{self._journal_inserts()}\n"
                "SELECT (SELECT count(*) FROM pgw_up) AS inserted, 0 AS updated"
            )
        # The batch's rows of the change set, as pgw_s: rows that differ from the row
        # they match (found, with its previous version) are updated by a join, new
        # rows inserted. Both read the same snapshot and touch different rows. A plain
        # update, unlike INSERT ... ON CONFLICT DO UPDATE, writes no row lock first.
        pos = self._x("pos")
        batch = f"pgw_s.{pos} > :lo AND pgw_s.{pos} <= :hi"
        updates = self._updated_columns() or self.conflict.columns[:1]
        sets = ", ".join(f"{quote(c)} = {self._cast(c)}" for c in updates)
        updated_key = key_json(self.row_key, "pgw_upd", self.params, "pgw_u")
        return (
            f"WITH pgw_upd AS (\n  UPDATE {self.target.sql} AS pgw_t SET {sets}\n"
            f"  FROM {self.changes} AS pgw_s\n"
            f"  WHERE pgw_s.{self._x('found')} AND {batch} AND {self._staged_match('pgw_t')}\n"
            f"  RETURNING {returned}, {xmin} AS pgw_xmin,"
            f" pgw_s.{self._x('previous')}, pgw_s.{self._x('previous_row')}\n),\n"
            f"pgw_ju AS (\n{_JOURNAL}"
            f"  SELECT :run, :schema, :table, 'update', {updated_key}, NULL,"
            f" pgw_upd.{self._x('previous')}, pgw_upd.{self._x('previous_row')},"
            " pgw_upd.pgw_xmin\n"
            "  FROM pgw_upd\n  RETURNING 1\n),\n"
            f"pgw_up AS (\n{self._insert(source=f'{self.changes} AS pgw_s')}"
            f"  WHERE NOT pgw_s.{self._x('found')} AND {batch}\n{returning},\n"
            f"{self._journal_inserts()}\n"
            "SELECT (SELECT count(*) FROM pgw_up) AS inserted,"
            " (SELECT count(*) FROM pgw_ju) AS updated"
        )

    # -- the fast path: COPY straight into an empty table --

    def can_load_directly(self) -> bool:
        """Return whether the rows can be COPYed straight into the target, unstaged.

        Only an insert into a table that holds no row yet (so no key can conflict),
        whose columns COPY writes as they are (none generated or identity ALWAYS), not
        partitioned, nor referencing itself (the rows' order would matter).
        """
        target = self.target
        if (
            self.mode != "insert"
            or not self._batch_keys
            or target.partitioned
            or target.self_referencing()
            or any(
                c not in target.by_name
                or target.by_name[c].generated
                or target.by_name[c].identity == "a"
                for c in self.stage.columns
            )
        ):
            return False
        return not self.conn.execute(text(f"SELECT EXISTS (SELECT FROM {target.sql})")).scalar()

    def load_directly(self, load: Callable[[], None]) -> bool:
        """COPY the rows into the target by ``load`` and journal them; False if that failed.

        In a savepoint: a journal row is written first, to learn the subtransaction's
        id (the ``xmin`` of every row the COPY then writes), and filled afterwards with
        the keys of the target's rows that carry it. On any error the savepoint is
        rolled back, and the caller stages the rows to find the ones to blame.
        """
        mark = text(
            f"{_JOURNAL}VALUES (:run, :schema, :table, 'insert', NULL, '{{}}', NULL, NULL, NULL)\n"
            "RETURNING xmin::text AS xid, ctid::text AS ctid"
        )
        keys = text(
            "UPDATE pgwarden.import_journal\n"
            "SET written_xmin = CAST(:xid AS xid),\n"
            f"    keys = (SELECT {self._key_arrays('pgw_t')} FROM {self.target.sql} AS pgw_t"
            " WHERE pgw_t.xmin = CAST(:xid AS xid))\n"
            "WHERE ctid = CAST(:ctid AS tid)"
        )
        try:
            with self.conn.begin_nested():
                row = self.conn.execute(mark, self.params).one()
                load()
                self.conn.execute(keys, {**self.params, "xid": row.xid, "ctid": row.ctid})
        except (psycopg.Error, DBAPIError, NotDirect):
            return False
        self.report.rows = self.report.inserted = self.stage.finish()
        return True

    # -- checks before merging --

    def find_conflicts(self, limit: int) -> None:
        """Count staged rows whose key the target has already (insert mode), keeping the first."""
        sql = text(
            f"SELECT {self._shown_key} AS key, count(*) OVER () AS total\n"
            f"FROM {self.stage.name} AS pgw_s\n"
            f"WHERE EXISTS (SELECT FROM {self.target.sql} AS pgw_x"
            f" WHERE {self._staged_match('pgw_x')})\n"
            f"ORDER BY pgw_s.{self.stage.n}\nLIMIT :limit"
        )
        rows = self._checked(sql, {**self.params, "limit": limit})
        if rows:
            self.report.conflicts = int(rows[0].total)
            self.report.conflict_keys = [dict(row.key) for row in rows]

    def find_duplicates(self, limit: int) -> None:
        """Report staged rows that repeat a key: the bundle cannot hold two versions of a row.

        A typed stage first tries a unique index on the key, which succeeds (for about a
        quarter of what grouping every row costs) unless there is something to report;
        the index then serves the merge's joins too.
        """
        if self.stage.typed:
            try:
                with self.conn.begin_nested():
                    self.conn.exec_driver_sql(
                        f"CREATE UNIQUE INDEX ON {self.stage.name}"
                        f" ({column_list(self.conflict.columns)})"
                    )
                    return
            except DBAPIError as error:
                if not is_row_level(error):
                    raise
        casts = ", ".join(self._cast(c) for c in self.conflict.columns)
        present = " AND ".join(f"pgw_s.{quote(c)} IS NOT NULL" for c in self.conflict.columns)
        sql = text(
            f"SELECT min(pgw_s.{self.stage.n}) AS first, max(pgw_s.{self.stage.n}) AS row,"
            " count(*) AS copies\n"
            f"FROM {self.stage.name} AS pgw_s\nWHERE {present}\n"
            f"GROUP BY {casts}\nHAVING count(*) > 1\nORDER BY 1\nLIMIT :limit"
        )
        for dup in self._checked(sql, {"limit": limit}):
            self.report.errors.append(
                RowError(
                    row=int(dup.row),
                    key=self._key_of(int(dup.row)),
                    error=f"the key of row {dup.row} repeats row {dup.first}"
                    f" ({dup.copies} rows share it)",
                    constraint=self.conflict.name,
                )
            )
            self.report.failed += int(dup.copies) - 1

    def _checked(self, sql: Any, params: dict[str, Any]) -> list[Any]:
        try:
            with self.conn.begin_nested():
                return list(self.conn.execute(sql, params).all())
        except DBAPIError as error:
            if not is_row_level(error):
                raise
            self.report.errors.append(row_error(error))
            return []

    def _key_of(self, row: int) -> dict[str, Any] | None:
        return self._row_at(row, self.stage.n)[1]

    def _row_at_position(self, position: int) -> tuple[int, dict[str, Any] | None]:
        """Return the file row number and key of the row merged at ``position``."""
        if self.mode == "insert":
            return self._row_at(position, self.order)
        sql = text(
            f"SELECT pgw_ch.{self.stage.n} FROM {self.changes} AS pgw_ch"
            f" WHERE pgw_ch.{self._x('pos')} = :n"
        )
        row = int(self.conn.execute(sql, {"n": position}).scalar_one())
        return self._row_at(row, self.stage.n)

    def _row_at(self, position: int, column: str) -> tuple[int, dict[str, Any] | None]:
        """Return the file row number and key of the staged row at ``position`` of ``column``."""
        sql = text(
            f"SELECT pgw_s.{self.stage.n} AS row, {self._shown_key} AS key"
            f" FROM {self.stage.name} AS pgw_s WHERE pgw_s.{column} = :n"
        )
        found = self.conn.execute(sql, {**self.params, "n": position}).one()
        return int(found.row), dict(found.key) if found.key is not None else None

    def order_parents_first(self) -> None:
        """Number the staged rows of a self-referencing table so parents come before children.

        A row's depth is the length of its chain of parents among the staged rows (a
        recursive walk along each self-referencing foreign key); merging by depth lets
        batches and their splits hold every parent before its children. Rows on a
        cycle come last.
        """
        links = [
            fk
            for fk in self.target.foreign_keys
            if fk.references == self.target.qualified
            and set(fk.columns) | set(fk.ref_columns) <= set(self.stage.columns)
        ]
        if not links:
            return
        child_of = " OR ".join(
            "("
            + " AND ".join(
                f"pgw_c.{quote(c)} = pgw_p.{quote(r)}"
                for c, r in zip(fk.columns, fk.ref_columns, strict=True)
            )
            + ")"
            for fk in links
        )
        stage, n = self.stage.name, self.stage.n
        self.conn.exec_driver_sql(f"ALTER TABLE {stage} ADD COLUMN {self._x('order')} bigint")
        self.conn.exec_driver_sql(
            "WITH RECURSIVE pgw_d (n, depth, path) AS (\n"
            f"  SELECT pgw_c.{n}, 0, ARRAY[pgw_c.{n}] FROM {stage} AS pgw_c\n"
            f"  WHERE NOT EXISTS (SELECT FROM {stage} AS pgw_p\n"
            f"    WHERE ({child_of}) AND pgw_p.{n} <> pgw_c.{n})\n"
            "  UNION ALL\n"
            f"  SELECT pgw_c.{n}, pgw_d.depth + 1, pgw_d.path || pgw_c.{n}\n"
            f"  FROM pgw_d JOIN {stage} AS pgw_p ON pgw_p.{n} = pgw_d.n\n"
            f"  JOIN {stage} AS pgw_c ON ({child_of}) AND pgw_c.{n} <> ALL(pgw_d.path)\n"
            "),\n"
            "pgw_o AS (\n"
            f"  SELECT pgw_s.{n} AS n, row_number() OVER"
            f" (ORDER BY max(pgw_d.depth) NULLS LAST, pgw_s.{n}) AS position\n"
            f"  FROM {stage} AS pgw_s LEFT JOIN pgw_d ON pgw_d.n = pgw_s.{n}\n"
            f"  GROUP BY pgw_s.{n}\n"
            ")\n"
            f"UPDATE {stage} AS pgw_s SET {self._x('order')} = pgw_o.position\n"
            f"FROM pgw_o WHERE pgw_o.n = pgw_s.{n}"
        )
        self.conn.exec_driver_sql(f"CREATE INDEX ON {stage} ({self._x('order')})")
        self.conn.exec_driver_sql(f"ANALYZE {stage}")
        self._order = self._x("order")

    # -- the merge --

    def merge(self, batch_size: int, on_batch: Callable[[int], None]) -> None:
        """Merge every staged row, ``batch_size`` at a time, calling ``on_batch(rows)``."""
        if self.mode == "insert" or self.target.self_referencing():
            self.stage.index()
        if self.target.self_referencing():
            self.order_parents_first()
        self._sql = text(self._merge_sql())
        total = self.stage.rows
        if self.mode != "insert":
            total = self.find_changes()
            on_batch(self.stage.rows - total)  # the rows equal to the target's: done
        # A batch of the change set finds its target rows through the key's index; the
        # planner, costing random reads as if from disk, would hash the whole target
        # once a batch instead.
        with planner_settings(
            self.conn, enable_hashjoin=self.mode == "insert", enable_mergejoin=self.mode == "insert"
        ):
            for lo in range(0, total, batch_size):
                hi = min(lo + batch_size, total)
                self._merge_range(lo, hi)
                on_batch(hi - lo)
        if self.mode != "insert":
            self.report.unchanged = max(
                self.report.rows - self.report.inserted - self.report.updated - self.report.failed,
                0,
            )

    def _merge_range(self, lo: int, hi: int) -> None:
        """Merge the rows at ``lo < position <= hi``; split a refused range to find the rows."""
        try:
            with self.conn.begin_nested():
                row = self.conn.execute(self._sql, {**self.params, "lo": lo, "hi": hi}).one()
        except DBAPIError as error:
            if not is_row_level(error):
                raise
            if hi - lo == 1:
                self.report.errors.append(row_error(error, *self._row_at_position(hi)))
                self.report.failed += 1
            elif len(self.report.errors) >= self.max_errors:
                self.report.failed += hi - lo
            else:
                middle = (lo + hi) // 2
                self._merge_range(lo, middle)
                self._merge_range(middle, hi)
            return
        self.report.inserted += int(row.inserted)
        self.report.updated += int(row.updated)

    # -- replace: rows of the target that the bundle does not have --

    def cascades(self) -> list[str]:
        """Return why deleting the rows missing from the bundle would reach unjournaled rows.

        A foreign key with ON DELETE CASCADE, SET NULL or SET DEFAULT would change rows
        of the referencing table behind the journal's back; any such row refuses.
        """
        problems = []
        missing = (
            f"NOT EXISTS (SELECT FROM {self.stage.name} AS pgw_s"
            f" WHERE {self._staged_match('pgw_t')})"
        )
        for fk in self.target.referenced_by:
            if fk.on_delete not in ("c", "n", "d"):
                continue
            survives = ""
            if fk.table == self.target.qualified:
                survives = (
                    f" AND EXISTS (SELECT FROM {self.stage.name} AS pgw_s"
                    f" WHERE {self._staged_match('pgw_r')})"
                )
            join = " AND ".join(
                f"pgw_r.{quote(c)} = pgw_t.{quote(r)}"
                for c, r in zip(fk.columns, fk.ref_columns, strict=True)
            )
            sql = text(
                f"SELECT count(*) FROM {sql_name(fk.table)} AS pgw_r\n"
                f"JOIN {self.target.sql} AS pgw_t ON {join}\n"
                f"WHERE {missing}{survives}"
            )
            count = int(self.conn.execute(sql).scalar_one())
            if count:
                action = {"c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}[fk.on_delete]
                problems.append(
                    f"{count} row(s) of {fk.table} reference rows to delete"
                    f" (ON DELETE {action} of {fk.name})"
                )
        return problems

    def delete_missing(self) -> None:
        """Delete (and journal) the target's rows whose key the bundle does not have."""
        deleted_key = key_json(self.row_key, "pgw_up", self.params, "pgw_k")
        sql = text(
            "WITH pgw_up AS (\n"
            f"  DELETE FROM {self.target.sql} AS pgw_t\n"
            f"  WHERE NOT EXISTS (SELECT FROM {self.stage.name} AS pgw_s"
            f" WHERE {self._staged_match('pgw_t')})\n"
            "  RETURNING pgw_t.*\n),\n"
            f"pgw_j AS (\n{_JOURNAL}"
            f"  SELECT :run, :schema, :table, 'delete', {deleted_key}, NULL, to_jsonb(pgw_up.*),"
            " CAST(ROW(pgw_up.*) AS text), NULL\n"
            "  FROM pgw_up\n  RETURNING action\n)\n"
            "SELECT count(*) FROM pgw_j"
        )
        problems = self.cascades()
        if problems:
            self.report.errors.append(
                RowError(
                    None,
                    None,
                    "replace would delete rows the journal cannot restore: " + "; ".join(problems),
                )
            )
            return
        try:
            with self.conn.begin_nested():
                self.report.deleted = int(self.conn.execute(sql, self.params).scalar_one())
        except DBAPIError as error:
            if not is_row_level(error):
                raise
            self.report.errors.append(row_error(error))

    def sync_sequences(self) -> None:
        """Move each column's sequence past the largest value now in the table, never back."""
        for name in self.columns:
            column = self.target.by_name[name]
            if column.sequence is None:
                continue
            self.conn.execute(
                text(
                    "SELECT setval(CAST(:seq AS regclass), pgw_m.m)\n"
                    f"FROM (SELECT max({quote(name)}) AS m FROM {self.target.sql}) AS pgw_m\n"
                    "WHERE pgw_m.m > coalesce("
                    "pg_sequence_last_value(CAST(:seq AS regclass)), 0)"
                ),
                {"seq": column.sequence},
            )
