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

from collections.abc import Callable
from typing import Any, Literal

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden.insight.findings import quote
from pgwarden.transfer._reports import RowError, TableReport, is_row_level, row_error
from pgwarden.transfer._staging import ROW_NUMBER, NotDirect, Stage
from pgwarden.transfer._target import Target, UniqueKey, column_list, key_json, sql_name

__all__ = ["Mode", "RowError", "TableMerge", "TableReport", "row_error"]

Mode = Literal["insert", "upsert", "replace"]

_JOURNAL = (
    "INSERT INTO pgwarden.import_journal\n"
    "  (run_id, schema_name, table_name, action, key, keys, previous, previous_row,"
    " written_xmin)\n"
)
# Key types whose values cannot be gathered into one array of them and unnested again.
_NOT_IN_ARRAYS = ("A", "C", "P")


class TableMerge:
    """Merge one staged table into its target in ``mode``, journaling under ``run_id``."""

    def __init__(
        self,
        conn: Connection,
        target: Target,
        stage: Stage,
        *,
        mode: Mode,
        conflict: UniqueKey,
        run_id: int,
        report: TableReport,
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
        self.columns = [c for c in stage.columns if not target.columns[c].generated]
        shown = self.row_key if set(self.row_key) <= set(stage.columns) else conflict.columns
        self.params: dict[str, Any] = {"run": run_id, "schema": target.schema, "table": target.name}
        self._shown_key = key_json(shown, "pgw_s", self.params, "pgw_r")
        self._journal_key = key_json(self.row_key, "pgw_up", self.params, "pgw_k")
        # The keys of a batch's inserted rows go in one journal row, an array a column.
        self._batch_keys = all(
            target.columns[c].category not in _NOT_IN_ARRAYS for c in self.row_key
        )
        self.order = ROW_NUMBER  # the column batches are ranges of

    # -- SQL --

    def _cast(self, column: str, alias: str = "pgw_s") -> str:
        return f"CAST({alias}.{quote(column)} AS {self.target.columns[column].base_type})"

    def _staged_match(self, alias: str) -> str:
        return " AND ".join(f"{alias}.{quote(c)} = {self._cast(c)}" for c in self.conflict.columns)

    def _range(self) -> str:
        return f"pgw_s.{self.order} > :lo AND pgw_s.{self.order} <= :hi"

    def _insert(self) -> str:
        overriding = (
            " OVERRIDING SYSTEM VALUE"
            if any(self.target.columns[c].identity == "a" for c in self.columns)
            else ""
        )
        values = ", ".join(self._cast(c) for c in self.columns)
        return (
            f"INSERT INTO {self.target.sql} AS pgw_t ({column_list(self.columns)}){overriding}\n"
            f"  SELECT {values}\n"
            f"  FROM {self.stage.name} AS pgw_s\n"
            f"  WHERE {self._range()}\n"
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
        keys = self.conflict.columns
        unchanged = set(keys) | set(self.target.primary_key)
        updates = [
            c for c in self.columns if c not in unchanged and self.target.columns[c].identity != "a"
        ]
        if updates:
            old = ", ".join(f"pgw_t.{quote(c)}::text" for c in updates)
            new = ", ".join(f"EXCLUDED.{quote(c)}::text" for c in updates)
            sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in updates)
            action = f"DO UPDATE SET {sets}\n  WHERE ({old}) IS DISTINCT FROM ({new})"
            staged = ", ".join(f"{self._cast(c)}::text" for c in updates)
            # Only rows whose values differ can be updated: the rest need no previous
            # version (to_jsonb of every matched row made upserts about 30 % slower).
            differs = f"({old}) IS DISTINCT FROM ({staged})"
        else:
            action, differs = "DO NOTHING", "false"
        previous_keys = ", ".join(f"pgw_t.{quote(c)} AS pgw_k{i}" for i, c in enumerate(keys))
        joined = " AND ".join(f"pgw_p.pgw_k{i} = pgw_up.{quote(c)}" for i, c in enumerate(keys))
        return (
            "WITH pgw_prev AS MATERIALIZED (\n"
            f"  SELECT {previous_keys}, to_jsonb(pgw_t.*) AS previous,"
            " CAST(ROW(pgw_t.*) AS text) AS previous_row\n"
            f"  FROM {self.target.sql} AS pgw_t\n"
            f"  JOIN {self.stage.name} AS pgw_s ON {self._staged_match('pgw_t')}\n"
            f"  WHERE {self._range()} AND {differs}\n"
            "),\n"
            f"pgw_up AS (\n{self._insert()}"
            f"  ON CONFLICT ({column_list(keys)}) {action}\n{returning},\n"
            f"pgw_ju AS (\n{_JOURNAL}"
            f"  SELECT :run, :schema, :table, 'update', {self._journal_key}, NULL,"
            " pgw_p.previous, pgw_p.previous_row, pgw_up.pgw_xmin\n"
            f"  FROM pgw_up\n  JOIN pgw_prev AS pgw_p ON {joined}\n"
            "  RETURNING 1\n),\n"
            + self._journal_inserts(
                f"\n  WHERE NOT EXISTS (SELECT FROM pgw_prev AS pgw_p WHERE {joined})"
            )
            + "\nSELECT (SELECT count(*) FROM pgw_up) - (SELECT count(*) FROM pgw_ju) AS inserted,"
            "\n       (SELECT count(*) FROM pgw_ju) AS updated"
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
                c not in target.columns
                or target.columns[c].generated
                or target.columns[c].identity == "a"
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
            f"ORDER BY pgw_s.{ROW_NUMBER}\nLIMIT :limit"
        )
        rows = self._checked(sql, {**self.params, "limit": limit})
        if rows:
            self.report.conflicts = int(rows[0].total)
            self.report.conflict_keys = [dict(row.key) for row in rows]

    def find_duplicates(self, limit: int) -> None:
        """Report staged rows that repeat a key: the bundle cannot hold two versions of a row."""
        casts = ", ".join(self._cast(c) for c in self.conflict.columns)
        present = " AND ".join(f"pgw_s.{quote(c)} IS NOT NULL" for c in self.conflict.columns)
        sql = text(
            f"SELECT min(pgw_s.{ROW_NUMBER}) AS first, max(pgw_s.{ROW_NUMBER}) AS row,"
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
        return self._row_at(row, ROW_NUMBER)[1]

    def _row_at(self, position: int, column: str) -> tuple[int, dict[str, Any] | None]:
        """Return the file row number and key of the staged row at ``position`` of ``column``."""
        sql = text(
            f"SELECT pgw_s.{ROW_NUMBER} AS row, {self._shown_key} AS key"
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
            if fk.ref_table == self.target.qualified
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
        stage, n = self.stage.name, ROW_NUMBER
        self.conn.exec_driver_sql(f"ALTER TABLE {stage} ADD COLUMN _pgw_order bigint")
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
            f"UPDATE {stage} AS pgw_s SET _pgw_order = pgw_o.position\n"
            f"FROM pgw_o WHERE pgw_o.n = pgw_s.{n}"
        )
        self.conn.exec_driver_sql(f"CREATE INDEX ON {stage} (_pgw_order)")
        self.conn.exec_driver_sql(f"ANALYZE {stage}")
        self.order = "_pgw_order"

    # -- the merge --

    def merge(self, batch_size: int, on_batch: Callable[[int], None]) -> None:
        """Merge every staged row, ``batch_size`` at a time, calling ``on_batch(rows)``."""
        if self.target.self_referencing():
            self.order_parents_first()
        self._sql = text(self._merge_sql())
        total = self.stage.rows
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
                self.report.errors.append(row_error(error, *self._row_at(hi, self.order)))
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
            column = self.target.columns[name]
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
