"""Erase one person's data: their row and every row linked to it, deleted or anonymized.

::

    with engine.connect() as conn:
        report = erase_user(conn, "public.users", 42, dry_run=True)
        for table in report.tables:
            print(table.table, table.deleted, table.nullified)

The rows to erase are found by following, from the user's row, every foreign key that
points at a row already chosen, recursively. What happens to a referencing row follows
the key's ON DELETE rule, read as a statement about ownership:

``CASCADE``
    the row belongs to the parent: it is erased too (and its own children followed).
``SET NULL`` / ``SET DEFAULT``
    the row outlives the parent: its key columns are set to NULL (or their default).
``NO ACTION`` / ``RESTRICT``
    the row cannot exist without the parent when a key column is NOT NULL, so it is
    erased (a user's comments, ratings, content); when every key column is nullable it
    outlives the parent with the link set to NULL (``content_versions.editor_id``).

``also`` names columns that hold the user's id without a foreign key
(``public.events.user_id``); their rows are erased too.

With ``anonymize``, the chosen rows stay and their personal values are replaced in
place: text becomes a deterministic fake (``anon-<16 hex>``, an address at
``example.invalid`` for columns named like ``email``; NULL and empty stay so), derived
from the row's key, the column and ``salt``, never from the value; binary, network,
JSON, UUID and array values become NULL (or their default when NOT NULL). Keys and
other values (numbers, dates, flags, enum values, and text a CHECK constraint limits to
a fixed list) stay, so the rows still add up in reports. ``keep`` and ``clear`` name
columns (``TABLE.COLUMN``) to leave as they are or to set to NULL; when a fake breaks
another CHECK constraint, the erase stops naming it, and changes nothing.

Everything runs in one transaction, with user triggers off (an audit trigger would
copy the personal data into its log), and is journaled as a run that
``pgwarden import rollback`` can undo. The journal holds the erased values until
:func:`pgwarden.transfer.journal.runs.purge_run` (or ``purge_journal=True``) deletes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from pgwarden._sql import quote_identifier as quote
from pgwarden._sql import resolve_table, split_table_key, table_key
from pgwarden.errors import UserError
from pgwarden.transfer.catalog import CatalogForeignKey, CatalogTable, load_catalog, load_tables
from pgwarden.transfer.journal._fakes import (
    KeptColumn,
    anonymized_values,
    check_constraints,
    refused,
)
from pgwarden.transfer.journal.runs import finish_run, pin_settings, purge_run, start_run
from pgwarden.transfer.load._clauses import key_json, triggers_off
from pgwarden.transfer.load._job import transaction

__all__ = ["EraseReport", "EraseTable", "erase_user"]

_MAX_ROUNDS = 1000

_CHOSEN = """
CREATE TEMPORARY TABLE pgw_erase (
  schema_name name NOT NULL,
  table_name name NOT NULL,
  key jsonb NOT NULL,
  action text NOT NULL,
  columns text[],
  round int NOT NULL,
  PRIMARY KEY (schema_name, table_name, key)
) ON COMMIT DROP
"""

_JOURNAL = (
    "INSERT INTO pgwarden.import_journal\n"
    "  (run_id, schema_name, table_name, action, key, previous, previous_row, new_hash)\n"
)


@dataclass
class EraseTable:
    """What an erase did to one table: rows erased (``deleted`` or ``anonymized``), or
    unlinked (``nullified``: their key to an erased row set to NULL or its default)."""

    table: str
    deleted: int = 0
    anonymized: int = 0
    nullified: int = 0


@dataclass
class EraseReport:
    """An erase done (``run_id`` names its run) or, with ``dry_run``, rehearsed."""

    user_table: str
    user_id: str
    anonymize: bool
    dry_run: bool
    run_id: int | None = None
    journal_purged: bool = False
    tables: list[EraseTable] = field(default_factory=list)
    kept: list[KeptColumn] = field(default_factory=list)


@dataclass(frozen=True)
class _Link:
    """A foreign key (or an ``also`` column) and what it does to the referencing row."""

    fk: CatalogForeignKey
    action: str  # "delete" or "nullify"


def erase_user(
    conn: Connection,
    user_table: str,
    user_id: str | int,
    *,
    anonymize: bool = False,
    dry_run: bool = False,
    also: Sequence[str] = (),
    salt: str = "",
    purge_journal: bool = False,
    keep: Sequence[str] = (),
    clear: Sequence[str] = (),
) -> EraseReport:
    """Delete (or anonymize) user ``user_id`` of ``user_table`` and every row linked to it.

    ``user_table`` needs a one-column primary key; ``user_id`` is its value. Raises
    :class:`UserError` when there is no such user, or a table to change has no
    primary key (its rows could not be journaled).
    """
    report = EraseReport(str(user_table), str(user_id), anonymize, dry_run)
    with transaction(conn, dry_run):
        pin_settings(conn)
        schema, name = resolve_table(conn, user_table)
        report.user_table = table_key(schema, name)
        eraser = _Eraser(conn, report.user_table, also, keep=keep, clear=clear)
        eraser.choose(str(user_id))
        run_id = start_run(
            conn,
            kind="erase",
            mode="anonymize" if anonymize else "delete",
            source={"user_table": report.user_table, "user_id": str(user_id)},
        )
        counts = eraser.apply(run_id, anonymize, salt)
        report.tables = list(counts.values())
        report.kept = eraser.kept
        if not dry_run:
            finish_run(
                conn,
                run_id,
                {
                    t.table: {k: v for k, v in vars(t).items() if k != "table"}
                    for t in counts.values()
                },
            )
            report.run_id = run_id
            if purge_journal:
                purge_run(conn, run_id)
                report.journal_purged = True
    return report


class _Eraser:
    """Find the rows linked to one user's row, then erase them."""

    def __init__(
        self,
        conn: Connection,
        user_table: str,
        also: Sequence[str],
        *,
        keep: Sequence[str] = (),
        clear: Sequence[str] = (),
    ) -> None:
        self.conn = conn
        self.user_table = user_table
        self.targets: dict[str, CatalogTable] = {}
        self.user = self._target(user_table)
        if len(self.user.primary_key) != 1:
            raise UserError(
                f"{user_table} needs a one-column primary key to name a user by id.",
            )
        self.also = [self._also(spec) for spec in also]
        self.keep = self._columns("--keep", keep)
        self.clear = self._columns("--clear", clear)
        for table, columns in self.keep.items():
            if both := columns & self.clear.get(table, set()):
                raise UserError(f"{table}.{sorted(both)[0]} is given to both --keep and --clear.")
        self.kept: list[KeptColumn] = []

    def _target(self, name: str) -> CatalogTable:
        if name not in self.targets:
            self.targets.update(load_tables(self.conn, [split_table_key(name)]))
        target = self.targets[name]
        if not target.primary_key:
            raise UserError(
                f"{name} is linked to the user's rows but has no primary key,"
                " so its rows could not be journaled; nothing was changed.",
                hint="Add a primary key to the table.",
            )
        return target

    def _column(self, option: str, spec: str) -> tuple[CatalogTable, str]:
        table, _, column = spec.rpartition(".")
        if not table:
            raise UserError(f"{option} {spec}: name a column as TABLE.COLUMN.")
        if "." not in table:
            table = f"public.{table}"
        target = self._target(table)
        if column not in target.by_name:
            raise UserError(f"{option} {spec}: {table} has no column {column!r}.")
        return target, column

    def _columns(self, option: str, specs: Sequence[str]) -> dict[str, set[str]]:
        chosen: dict[str, set[str]] = {}
        for spec in specs:
            target, column = self._column(option, spec)
            chosen.setdefault(target.qualified, set()).add(column)
        return chosen

    def _also(self, spec: str) -> _Link:
        target, column = self._column("--also", spec)
        table = target.qualified
        fk = CatalogForeignKey(
            columns=(column,),
            ref_schema=self.user.schema,
            ref_table=self.user.name,
            ref_columns=self.user.primary_key,
            name=f"also {spec}",
            table=table,
            on_delete="c",
            deferrable=False,
        )
        return _Link(fk, "delete")

    def _links(self, name: str) -> list[_Link]:
        links = [link for link in self.also if link.fk.references == name]
        for fk in self._target(name).referenced_by:
            child = self._target(fk.table)
            nullable = all(child.by_name[c].nullable for c in fk.columns)
            owned = fk.on_delete == "c" or (fk.on_delete in ("a", "r") and not nullable)
            links.append(_Link(fk, "delete" if owned else "nullify"))
        return links

    def _defs(self, target: CatalogTable) -> str:
        return ", ".join(f"{quote(c)} {target.by_name[c].type}" for c in target.primary_key)

    def choose(self, user_id: str) -> None:
        """Fill ``pgw_erase`` with every row to erase or unlink, from the user's row out."""
        self.conn.exec_driver_sql(_CHOSEN)
        column = self.user.primary_key[0]
        params = {"schema": self.user.schema, "table": self.user.name, "id": user_id}
        seed = key_json([column], "pgw_t", params, "k")
        found = self.conn.execute(
            text(
                "INSERT INTO pgw_erase (schema_name, table_name, key, action, round)\n"
                f"SELECT :schema, :table, {seed}, 'delete', 0\n"
                f"FROM {self.user.sql} AS pgw_t\n"
                f"WHERE pgw_t.{quote(column)} = CAST(:id AS {self.user.by_name[column].base_type})"
                "\nRETURNING 1"
            ),
            params,
        ).first()
        if found is None:
            raise UserError(f"{self.user_table} has no row with {column} = {user_id}.")
        for round in range(1, _MAX_ROUNDS):
            grown = 0
            tables = self.conn.execute(
                text(
                    "SELECT DISTINCT schema_name, table_name FROM pgw_erase"
                    " WHERE round = :prev AND action = 'delete'"
                ),
                {"prev": round - 1},
            ).all()
            for row in tables:
                for link in self._links(table_key(row.schema_name, row.table_name)):
                    grown += self._follow(link, round)
            if not grown:
                return

    def _follow(self, link: _Link, round: int) -> int:
        parent, child = self._target(link.fk.references), self._target(link.fk.table)
        params: dict[str, Any] = {
            "ps": parent.schema, "pt": parent.name, "cs": child.schema, "ct": child.name,
            "prev": round - 1, "round": round, "columns": list(link.fk.columns),
            "action": link.action,
        }  # fmt: skip
        key = key_json(child.primary_key, "pgw_c", params, "k")
        join = " AND ".join(
            f"pgw_c.{quote(c)} = pgw_p.{quote(r)}"
            for c, r in zip(link.fk.columns, link.fk.ref_columns, strict=True)
        )
        matched = " AND ".join(f"pgw_p.{quote(c)} = pgw_k.{quote(c)}" for c in parent.primary_key)
        on_conflict = (
            "DO UPDATE SET action = 'delete', columns = NULL, round = EXCLUDED.round\n"
            "  WHERE pgw_erase.action <> 'delete'"
            if link.action == "delete"
            else "DO UPDATE SET columns = ARRAY(SELECT DISTINCT unnest("
            "pgw_erase.columns || EXCLUDED.columns) ORDER BY 1)\n"
            "  WHERE pgw_erase.action = 'nullify' AND NOT pgw_erase.columns @> EXCLUDED.columns"
        )
        sql = text(
            "INSERT INTO pgw_erase (schema_name, table_name, key, action, columns, round)\n"
            f"SELECT DISTINCT :cs, :ct, {key}, :action,"
            " CASE WHEN :action = 'nullify' THEN CAST(:columns AS text[]) END, :round\n"
            "FROM pgw_erase AS e\n"
            f"CROSS JOIN LATERAL jsonb_to_record(e.key) AS pgw_k({self._defs(parent)})\n"
            f"JOIN {parent.sql} AS pgw_p ON {matched}\n"
            f"JOIN {child.sql} AS pgw_c ON {join}\n"
            "WHERE e.schema_name = :ps AND e.table_name = :pt AND e.action = 'delete'"
            " AND e.round = :prev\n"
            f"ON CONFLICT (schema_name, table_name, key) {on_conflict}\n"
            "RETURNING action"
        )
        rows = self.conn.execute(sql, params).scalars().all()
        return sum(1 for action in rows if action == "delete")

    def apply(self, run_id: int, anonymize: bool, salt: str) -> dict[str, EraseTable]:
        """Unlink, then delete (children first) or anonymize the chosen rows, journaled."""
        pairs = self.conn.execute(text("SELECT DISTINCT schema_name, table_name FROM pgw_erase"))
        chosen = [table_key(schema, name) for schema, name in pairs]
        order, _ = load_catalog(self.conn).dependency_order(chosen)
        counts = {name: EraseTable(name) for name in order}
        self.conn.exec_driver_sql("SET CONSTRAINTS ALL DEFERRED")
        with triggers_off(self.conn, [self._target(name) for name in order]):
            if anonymize:
                for name in order:
                    counts[name].anonymized = self._anonymize(self._target(name), run_id, salt)
            else:
                for name in order:
                    counts[name].nullified = self._nullify(self._target(name), run_id)
                for name in reversed(order):
                    counts[name].deleted = self._delete(self._target(name), run_id)
        self.conn.exec_driver_sql("SET CONSTRAINTS ALL IMMEDIATE")
        return {name: table for name, table in counts.items() if any(vars(table).values())}

    def _update(
        self, target: CatalogTable, run_id: int, action: str, sets: str, params: dict[str, Any]
    ) -> int:
        """Run ``UPDATE target SET sets`` on its rows chosen with ``action``, journaled."""
        params.update(run=run_id, schema=target.schema, table=target.name, action=action)
        keys = target.primary_key
        journal_key = key_json(keys, "pgw_up", params, "j")
        previous_keys = ", ".join(f"pgw_t.{quote(c)} AS pgw_k{i}" for i, c in enumerate(keys))
        matched = " AND ".join(f"pgw_t.{quote(c)} = pgw_k.{quote(c)}" for c in keys)
        joined = " AND ".join(f"pgw_p.pgw_k{i} = pgw_t.{quote(c)}" for i, c in enumerate(keys))
        back = " AND ".join(f"pgw_p.pgw_k{i} = pgw_up.{quote(c)}" for i, c in enumerate(keys))
        sql = text(
            "WITH pgw_prev AS MATERIALIZED (\n"
            f"  SELECT {previous_keys}, e.key AS pgw_key, e.columns AS pgw_columns,"
            " to_jsonb(pgw_t.*) AS previous, CAST(ROW(pgw_t.*) AS text) AS previous_row\n"
            "  FROM pgw_erase AS e\n"
            f"  CROSS JOIN LATERAL jsonb_to_record(e.key) AS pgw_k({self._defs(target)})\n"
            f"  JOIN {target.sql} AS pgw_t ON {matched}\n"
            "  WHERE e.schema_name = :schema AND e.table_name = :table AND e.action = :action\n"
            "),\n"
            f"pgw_up AS (\n  UPDATE {target.sql} AS pgw_t SET {sets}\n"
            f"  FROM pgw_prev AS pgw_p WHERE {joined}\n  RETURNING pgw_t.*\n),\n"
            f"pgw_j AS (\n{_JOURNAL}"
            f"  SELECT :run, :schema, :table, 'update', {journal_key}, pgw_p.previous,"
            " pgw_p.previous_row, md5(ROW(pgw_up.*)::text)\n"
            f"  FROM pgw_up JOIN pgw_prev AS pgw_p ON {back}\n  RETURNING 1\n)\n"
            "SELECT count(*) FROM pgw_j"
        )
        return int(self.conn.execute(sql, params).scalar_one())

    def _nullify(self, target: CatalogTable, run_id: int) -> int:
        links = [
            link
            for parent in {fk.references for fk in target.foreign_keys}
            for link in self._links(parent) if link.fk.table == target.qualified
            and link.action == "nullify"
        ]  # fmt: skip
        replace: dict[str, str] = {}
        for link in links:
            for column in link.fk.columns:
                default = target.by_name[column].default
                replace.setdefault(
                    column, default if link.fk.on_delete == "d" and default else "NULL"
                )
        if not replace:
            return 0
        params: dict[str, Any] = {}
        sets = []
        for i, (column, value) in enumerate(sorted(replace.items())):
            params[f"n{i}"] = column
            sets.append(
                f"{quote(column)} = CASE WHEN CAST(:n{i} AS text) = ANY(pgw_p.pgw_columns)"
                f" THEN {value} ELSE pgw_t.{quote(column)} END"
            )
        return self._update(target, run_id, "nullify", ", ".join(sets), params)

    def _anonymize(self, target: CatalogTable, run_id: int, salt: str) -> int:
        checks = check_constraints(self.conn, target)
        params: dict[str, Any] = {"salt": salt}
        sets, kept = anonymized_values(
            target,
            checks,
            params,
            keep=self.keep.get(target.qualified, set()),
            clear=self.clear.get(target.qualified, set()),
        )
        self.kept.extend(kept)
        if not sets:
            return 0
        try:
            return self._update(target, run_id, "delete", ", ".join(sets), params)
        except IntegrityError as exc:
            diag = getattr(exc.orig, "diag", None)
            constraint = getattr(diag, "constraint_name", None)
            reason = getattr(diag, "message_primary", None) or "the server refused them"
            raise refused(target, checks, constraint, reason) from None

    def _delete(self, target: CatalogTable, run_id: int) -> int:
        params: dict[str, Any] = {"run": run_id, "schema": target.schema, "table": target.name}
        journal_key = key_json(target.primary_key, "pgw_up", params, "j")
        matched = " AND ".join(f"pgw_t.{quote(c)} = pgw_k.{quote(c)}" for c in target.primary_key)
        sql = text(
            f"WITH pgw_up AS (\n  DELETE FROM {target.sql} AS pgw_t\n"
            "  USING pgw_erase AS e\n"
            f"  CROSS JOIN LATERAL jsonb_to_record(e.key) AS pgw_k({self._defs(target)})\n"
            "  WHERE e.schema_name = :schema AND e.table_name = :table"
            f" AND e.action = 'delete' AND {matched}\n"
            "  RETURNING pgw_t.*\n),\n"
            f"pgw_j AS (\n{_JOURNAL}"
            f"  SELECT :run, :schema, :table, 'delete', {journal_key}, to_jsonb(pgw_up.*),"
            " CAST(ROW(pgw_up.*) AS text), NULL\n"
            "  FROM pgw_up\n  RETURNING 1\n)\n"
            "SELECT count(*) FROM pgw_j"
        )
        return int(self.conn.execute(sql, params).scalar_one())
