"""Cancel a session's query, or end the session: the two signals behind ``pgwarden cancel``.

:func:`cancel` looks the session up first and refuses what would surprise a user: a
pid that does not exist, the caller's own session, and server processes that are not
client sessions (the WAL sender of a replica, the checkpointer, a parallel worker whose
leader is the one to stop, an autovacuum worker preventing wraparound). A plain
autovacuum worker may be stopped: it blocks schema changes, and the server simply
starts it again later::

    with engine.connect() as conn:
        plan = cancel(conn, 4321, dry_run=True)  # who would be hit, nothing sent
        result = cancel(conn, 4321, terminate=True)
        print(result.delivered, result.ended)

Signalling another role's session takes membership in that role or in
``pg_signal_backend``; only a superuser may signal a superuser's session. A role that
may not is told so before anything is sent, and on a dry run too.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from pgwarden._sql import quote_identifier
from pgwarden.errors import UserError
from pgwarden.insight.activity import ServerSession
from pgwarden.insight.sessions import SESSION_COLUMNS

__all__ = ["CancelResult", "cancel"]

# SQLSTATE of "insufficient privilege".
_INSUFFICIENT_PRIVILEGE = "42501"
_SESSION_FIELDS = [f.name for f in dataclasses.fields(ServerSession)]


@dataclass(frozen=True)
class CancelResult:
    """What :func:`cancel` did to a session, or would do on a dry run.

    ``statement`` is the SQL it runs. ``delivered`` says the server sent the signal
    (false on a dry run, or when the process ended first). ``ended`` is for
    ``terminate``: whether the session was gone before the wait ran out; ``None`` for
    a cancel and on a dry run.
    """

    pid: int
    action: Literal["cancel", "terminate"]
    statement: str
    session: ServerSession
    dry_run: bool
    delivered: bool
    ended: bool | None


# permitted follows the server's own rule (pg_signal_backend() in signalfuncs.c); it
# is NULL for a process with no role (autovacuum) and a caller who is no superuser,
# where the rule changed across versions: the server decides.
TARGET = text(
    f"""
SELECT {SESSION_COLUMNS},
       a.pid = pg_backend_pid() AS own,
       current_user AS caller,
       CASE
         WHEN me.rolsuper THEN true
         WHEN a.usesysid IS NULL THEN NULL
         WHEN target.rolsuper THEN false
         ELSE pg_has_role(current_user, a.usesysid, 'USAGE')
           OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE')
       END AS permitted,
       COALESCE(target.rolsuper, false) AS superuser_session
FROM pg_stat_activity AS a
JOIN pg_roles AS me ON me.rolname = current_user
LEFT JOIN pg_roles AS target ON target.oid = a.usesysid
WHERE a.pid = :pid
"""
)

CANCEL = text("SELECT pg_cancel_backend(:pid)")
TERMINATE = text("SELECT pg_terminate_backend(:pid)")
SESSION_EXISTS = text("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = :pid)")


def cancel(
    conn: Connection,
    pid: int,
    *,
    terminate: bool = False,
    dry_run: bool = False,
    wait_s: float = 5.0,
) -> CancelResult:
    """Cancel the query of session ``pid``, or with ``terminate`` end the session.

    Cancelling stops the running statement (rolling back the transaction it is in)
    and keeps the connection; terminating closes the connection, rolling back any
    open transaction, and then waits up to ``wait_s`` seconds for the session to be
    gone. A pid that cannot or should not be signalled is a
    :class:`~pgwarden.errors.UserError` saying why, raised on a dry run too.
    """
    session, caller = _target(conn, pid)
    action: Literal["cancel", "terminate"] = "terminate" if terminate else "cancel"
    function = "pg_terminate_backend" if terminate else "pg_cancel_backend"
    statement = f"SELECT {function}({pid});"
    if dry_run:
        return CancelResult(pid, action, statement, session, True, delivered=False, ended=None)
    try:
        delivered = bool(conn.execute(TERMINATE if terminate else CANCEL, {"pid": pid}).scalar())
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != _INSUFFICIENT_PRIVILEGE:
            raise
        detail = str(error.orig).splitlines()[0]
        raise UserError(
            f"the server refused to signal pid {pid}: {detail}", hint=_grant_hint(caller)
        ) from None
    ended = _wait_until_gone(conn, pid, wait_s) if terminate and delivered else None
    return CancelResult(pid, action, statement, session, False, delivered=delivered, ended=ended)


def _target(conn: Connection, pid: int) -> tuple[ServerSession, str]:
    """Return the session ``pid`` and the caller's role, or raise why not to signal it."""
    conn.execute(text("SELECT pg_stat_clear_snapshot()"))
    row = conn.execute(TARGET, {"pid": pid}).mappings().one_or_none()
    if row is None:
        raise UserError(
            f"no session with pid {pid} on this server.",
            hint="List sessions with `pgwarden queries --all`; the session may have ended.",
        )
    session = ServerSession(**{name: row[name] for name in _SESSION_FIELDS})
    if row["own"]:
        raise UserError(
            f"pid {pid} is pgwarden's own session.",
            hint="Give the pid of another session; `pgwarden queries` lists them.",
        )
    kind = session.backend_type
    if kind == "parallel worker":
        raise UserError(
            f"pid {pid} is a parallel worker of pid {session.leader_pid}.",
            hint=f"Signal its leader, pid {session.leader_pid}: that stops its workers too.",
        )
    if kind == "autovacuum worker" and "to prevent wraparound" in (session.query or ""):
        raise UserError(
            f"pid {pid} is an autovacuum worker preventing transaction ID wraparound.",
            hint="Stopping it only makes the server start it again, closer to the limit; "
            "let it finish, and find what it waits for with `pgwarden queries`.",
        )
    if kind not in ("client backend", "autovacuum worker"):
        raise UserError(
            f"pid {pid} is a {kind or 'server process'}, not a client session.",
            hint="pgwarden signals client sessions and autovacuum workers only: stopping "
            "a server process can break replication or the server's own work. If you mean "
            f"it, run SELECT pg_terminate_backend({pid}); yourself.",
        )
    if row["permitted"] is False:
        if row["superuser_session"]:
            raise UserError(
                f"pid {pid} is a session of superuser {session.user}; "
                f"role {row['caller']} is not a superuser.",
                hint="Only a superuser may signal a superuser's session; connect as one.",
            )
        raise UserError(
            f"role {row['caller']} may not signal pid {pid}, a session of role {session.user}.",
            hint=_grant_hint(row["caller"]),
        )
    return session, str(row["caller"])


def _grant_hint(role: str) -> str:
    return (
        "Signalling another role's session takes membership in that role or in "
        f"pg_signal_backend: GRANT pg_signal_backend TO {quote_identifier(role, plain=True)};"
    )


def _wait_until_gone(conn: Connection, pid: int, wait_s: float) -> bool:
    """Poll until session ``pid`` has left pg_stat_activity; false if ``wait_s`` ran out."""
    deadline = time.monotonic() + wait_s
    pause = 0.02
    while True:
        # The activity view is read once per transaction unless the snapshot is cleared.
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        if not conn.execute(SESSION_EXISTS, {"pid": pid}).scalar():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
