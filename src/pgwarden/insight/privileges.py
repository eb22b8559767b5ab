"""Find an application role that row-level security does not apply to.

Row-level security confines a role to the rows its policies allow, except for three
kinds of role that it never stops: a superuser, a role with ``BYPASSRLS``, and the
table's owner (unless the table has ``FORCE ROW LEVEL SECURITY``). An application that
connects as one of them reads and writes every tenant's rows, however carefully its
policies are written::

    with app_engine.connect() as conn:        # the application's own URL
        access = role_access(conn)
        for table in access.unprotected:
            print(access.role, table.name, access.bypass_reason(table))

The role examined is the connection's (``current_user``) unless one is named: run the
doctor with the application's database URL, or name its role
(``--set rls_bypassed.role=app``). Everything reads only catalogs, so any role can run it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pgwarden._sql import qualified, quote_identifier
from pgwarden.insight.errors import CheckSkipped
from pgwarden.insight.findings import Check, CheckResult, Finding

__all__ = [
    "RlsTable",
    "RoleAccess",
    "check_privileges",
    "rls_bypass_findings",
    "role_access",
]


@dataclass(frozen=True)
class RlsTable:
    """A table with row-level security enabled that the role may read or write.

    ``owned`` is true when the role owns it (or inherits from its owner); ``forced``
    when ``FORCE ROW LEVEL SECURITY`` makes the policies apply to the owner too.
    """

    schema: str
    table: str
    forced: bool
    owned: bool
    policies: int

    @property
    def name(self) -> str:
        """Return the table's qualified name, quoted where PostgreSQL needs it."""
        return qualified(self.schema, self.table, plain=True)


@dataclass(frozen=True)
class RoleAccess:
    """A role's attributes, and the tables under row-level security it can reach.

    ``owned_tables`` counts every table of the database the role owns, with or without
    row-level security: an application that owns a table can also alter or drop it.
    """

    role: str
    superuser: bool
    bypass_rls: bool
    owned_tables: int
    rls_tables: list[RlsTable]

    def bypass_reason(self, table: RlsTable) -> str | None:
        """Return why ``table``'s policies do not apply to the role, or ``None`` if they do."""
        if self.superuser:
            return "superuser"
        if self.bypass_rls:
            return "bypassrls"
        if table.owned and not table.forced:
            return "owner"
        return None

    @property
    def unprotected(self) -> list[RlsTable]:
        """Return the tables whose policies the role is not subject to."""
        return [table for table in self.rls_tables if self.bypass_reason(table)]


ROLE = text("""
SELECT r.rolname AS role,
       r.rolsuper AS superuser,
       r.rolbypassrls AS bypass_rls,
       (SELECT count(*)
        FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
          AND c.relowner = r.oid
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_toast%'
          AND NOT pg_is_other_temp_schema(n.oid)) AS owned_tables
FROM pg_roles AS r
WHERE r.rolname = COALESCE(:role, current_user)
""")

# Ownership counts as PostgreSQL counts it: the owner, or a role that inherits the
# owner's privileges. Partitions are left out: queries through the parent use its policies.
RLS_TABLES = text("""
SELECT n.nspname AS schema,
       c.relname AS "table",
       c.relforcerowsecurity AS forced,
       pg_has_role(:role, c.relowner, 'USAGE') AS owned,
       (SELECT count(*) FROM pg_policy AS p WHERE p.polrelid = c.oid) AS policies
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND c.relrowsecurity
  AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT pg_is_other_temp_schema(n.oid)
  AND has_table_privilege(:role, c.oid, 'SELECT, INSERT, UPDATE, DELETE')
ORDER BY schema, "table"
""")


def role_access(conn: Connection, *, role: str | None = None) -> RoleAccess:
    """Return what row-level security means for ``role`` (default: the connection's role).

    A ``role`` that does not exist raises :class:`~pgwarden.insight.errors.CheckSkipped`
    naming it.
    """
    found = conn.execute(ROLE, {"role": role}).one_or_none()
    if found is None:
        raise CheckSkipped(
            f"there is no role {role!r} on this server: name the role the application "
            "connects as (--set rls_bypassed.role=NAME), or run with its database URL"
        )
    tables = conn.execute(RLS_TABLES, {"role": found.role})
    return RoleAccess(
        role=found.role,
        superuser=found.superuser,
        bypass_rls=found.bypass_rls,
        owned_tables=found.owned_tables,
        rls_tables=[RlsTable(**row._mapping) for row in tables],
    )


_WHY = {
    "superuser": "is a superuser, and no policy applies to a superuser, even with FORCE ROW "
    "LEVEL SECURITY",
    "bypassrls": "has BYPASSRLS, so no policy applies to it, even with FORCE ROW LEVEL SECURITY",
    "owner": "owns the table, and a table's policies do not apply to its owner unless the "
    "table has FORCE ROW LEVEL SECURITY",
}


def _fix(reason: str, role: str, table: str) -> str:
    if reason == "bypassrls":
        return f"ALTER ROLE {role} NOBYPASSRLS;"
    if reason == "owner":
        return (
            f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY;  -- or, better, let the role "
            f"that migrates own it: ALTER TABLE {table} OWNER TO <migration role>; then "
            f"GRANT {role} only the privileges it needs"
        )
    return (
        "CREATE ROLE app LOGIN PASSWORD '...' NOSUPERUSER NOBYPASSRLS;  "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO app;  "
        "-- and connect the application as app"
    )


def rls_bypass_findings(access: RoleAccess) -> list[Finding]:
    """Turn the tables whose row-level security ``access.role`` escapes into findings."""
    role = quote_identifier(access.role, plain=True)
    findings = []
    for table in access.rls_tables:
        reason = access.bypass_reason(table)
        if reason is None:
            continue
        findings.append(
            Finding(
                check="rls_bypassed",
                severity="warning",
                what=f"row-level security on {table.name} does not apply to role {role}",
                why=f"The role {_WHY[reason]}: any query it sends, one that forgets its "
                "tenant or one crafted by a caller, reads and changes every tenant's rows. "
                "An application should connect as a role that is not a superuser, has no "
                "BYPASSRLS and owns none of the tables it queries.",
                fix=_fix(reason, role, table.name),
                subject=table.name,
                details={
                    "role": access.role,
                    "reason": reason,
                    "policies": table.policies,
                    "forced": table.forced,
                },
            )
        )
    return findings


def _rls_bypassed(conn: Connection, *, role: str = "") -> list[Finding]:
    return rls_bypass_findings(role_access(conn, role=role or None))


CHECKS = (
    Check(
        "rls_bypassed",
        "privileges",
        "tables with row-level security that the application's role bypasses "
        "(superuser, BYPASSRLS, or owner)",
        _rls_bypassed,
    ),
)


def check_privileges(conn: Connection, *, role: str = "") -> CheckResult:
    """Check whether row-level security applies to ``role`` (default: the connection's)."""
    [check] = CHECKS
    return check(conn, role=role)
