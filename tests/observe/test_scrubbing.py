"""The query log hides the passwords that role statements carry as literals."""

from __future__ import annotations

import logging
import secrets

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden import observe


def _statements(role: str, secret: str) -> list[str]:
    return [
        f"CREATE ROLE {role} LOGIN PASSWORD '{secret}-1'",
        f"ALTER ROLE {role} ENCRYPTED PASSWORD '{secret}-''2'",
        f"ALTER USER {role} WITH PASSWORD $${secret}-3$$",
        f"ALTER ROLE {role} PASSWORD $pw${secret}-'4$pw$ VALID UNTIL 'infinity'",
        f"ALTER ROLE {role} PASSWORD E'{secret}-\\'5'",
        f"ALTER ROLE {role}_missing PASSWORD '{secret}-6'",  # fails: logged all the same
    ]


@pytest.mark.parametrize("slow", [False, True], ids=["debug", "slow"])
def test_role_passwords_never_reach_the_query_log(
    pg_engine: Engine, records: list[logging.LogRecord], slow: bool
) -> None:
    role = f"pgwarden_scrub_{secrets.token_hex(4)}"
    secret = f"hunter{secrets.token_hex(6)}"
    # slow_ms=0: every statement is also a slow-query WARNING, whose message quotes it.
    observe.instrument(pg_engine, metrics=False, slow_ms=0 if slow else 60_000)
    try:
        with pg_engine.connect() as conn:
            for statement in _statements(role, secret):
                try:
                    conn.execute(sa.text(statement))
                    conn.commit()
                except sa.exc.ProgrammingError:
                    conn.rollback()
    finally:
        observe.uninstrument(pg_engine)
        with pg_engine.begin() as conn:
            conn.execute(sa.text(f"DROP ROLE IF EXISTS {role}"))
    logged = [r for r in records if role in str(getattr(r, "statement", ""))]
    assert len(logged) == 6
    for record in logged:
        assert secret not in f"{record.getMessage()} {vars(record)}"
        assert "PASSWORD '***'" in record.statement  # type: ignore[attr-defined]
    if slow:
        assert all(
            r.levelno == logging.WARNING and "PASSWORD '***'" in r.getMessage() for r in logged
        )
