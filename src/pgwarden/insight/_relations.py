"""What the table modules share: which relations of ``pg_class`` are the user's tables."""

from __future__ import annotations

__all__ = ["USER_TABLES"]

# Tables and materialized views in user schemas, leaving out other sessions' temporary
# tables, which only their own session can read or vacuum. A condition on ``pg_class``
# as ``c`` and ``pg_namespace`` as ``n``.
USER_TABLES = """c.relkind IN ('r', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'
  AND NOT pg_is_other_temp_schema(n.oid)"""
