from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pgwarden.db.engines import create_async_engine
from pgwarden.errors import UserError
from pgwarden.orm import (
    IdPrimaryKey,
    Timestamps,
    audit_log_table,
    audit_trigger_sql,
    install_audit,
    install_updated_at_triggers,
    set_actor,
)


class Base(DeclarativeBase):
    pass


class Account(IdPrimaryKey, Timestamps, Base):
    __tablename__ = "account"
    owner: Mapped[str]
    balance: Mapped[int]


class Membership(Base):
    __tablename__ = "membership"
    org: Mapped[str] = mapped_column(primary_key=True)
    member: Mapped[str] = mapped_column(primary_key=True)
    role: Mapped[str]


audit_log = audit_log_table(Base.metadata)
install_updated_at_triggers(Base.metadata)
install_audit(Base.metadata, [Account.__table__, Membership.__table__], audit_table=audit_log)


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    Base.metadata.create_all(pg_engine)
    return pg_engine


def entries(conn: Connection | Engine) -> list[dict[str, Any]]:
    query = sa.select(audit_log).order_by(audit_log.c.id)
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return [dict(row._mapping) for row in c.execute(query)]
    return [dict(row._mapping) for row in conn.execute(query)]


def test_insert_update_and_delete_are_recorded_with_the_actor(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        set_actor(session, "alice")
        account = Account(owner="ada", balance=10)
        session.add(account)
        session.flush()
        account_id = account.id
    with Session(engine) as session, session.begin():
        set_actor(session, "bob")
        found = session.get(Account, account_id)
        assert found is not None
        found.balance = 25
    with Session(engine) as session, session.begin():
        set_actor(session, "carol")
        session.execute(sa.delete(Account).where(Account.id == account_id))

    insert, update, delete = entries(engine)
    assert [e["action"] for e in (insert, update, delete)] == ["INSERT", "UPDATE", "DELETE"]
    assert [e["actor"] for e in (insert, update, delete)] == ["alice", "bob", "carol"]
    assert all(e["table_name"] == "account" for e in (insert, update, delete))
    assert all(e["row_pk"] == {"id": account_id} for e in (insert, update, delete))
    assert insert["old_values"] is None
    assert insert["new_values"]["owner"] == "ada" and insert["new_values"]["balance"] == 10
    assert update["old_values"]["balance"] == 10 and update["new_values"]["balance"] == 25
    assert delete["old_values"]["balance"] == 25 and delete["new_values"] is None
    assert insert["at"] <= update["at"] <= delete["at"]


def test_raw_sql_is_audited_and_the_actor_is_null_when_unset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO account (owner, balance) VALUES ('ada', 1)"))
    (entry,) = entries(engine)
    assert entry["action"] == "INSERT"
    assert entry["actor"] is None


def test_an_update_that_changes_nothing_is_not_recorded(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO account (owner, balance) VALUES ('ada', 1)"))
    with engine.begin() as conn:
        # The updated_at trigger still moves updated_at; that alone is not a change.
        conn.execute(sa.text("UPDATE account SET owner = owner"))
        assert conn.execute(sa.text("SELECT updated_at > created_at FROM account")).scalar()
    assert [e["action"] for e in entries(engine)] == ["INSERT"]


def test_the_actor_lasts_until_the_transaction_ends(engine: Engine) -> None:
    with engine.connect() as conn:
        with conn.begin():
            set_actor(conn, "alice")
            conn.execute(sa.insert(Account).values(owner="ada", balance=1))
        with conn.begin():  # the same connection, a new transaction
            conn.execute(sa.insert(Account).values(owner="bob", balance=2))
        with conn.begin():
            set_actor(conn, "alice")
            set_actor(conn, None)
            conn.execute(sa.insert(Account).values(owner="cy", balance=3))
        with conn.begin():
            set_actor(conn, "dora")
            conn.execute(sa.insert(Account).values(owner="dee", balance=4))
            conn.rollback()
        assert [e["actor"] for e in entries(conn)] == ["alice", None, None]


def test_a_composite_primary_key_is_recorded_as_an_object(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(Membership(org="acme", member="ada", role="admin"))
    (entry,) = entries(engine)
    assert entry["table_name"] == "membership"
    assert entry["row_pk"] == {"org": "acme", "member": "ada"}


def test_the_history_of_a_row_is_found_by_its_key(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(Account), [{"owner": f"o{i}", "balance": i} for i in range(5)])
        conn.execute(sa.text("UPDATE account SET balance = balance + 1 WHERE id = 3"))
    history = sa.select(audit_log.c.action).where(
        audit_log.c.table_name == "account", audit_log.c.row_pk == {"id": 3}
    )
    with engine.connect() as conn:
        assert list(conn.execute(history.order_by(audit_log.c.id)).scalars()) == [
            "INSERT",
            "UPDATE",
        ]


def test_trigger_sql_in_a_migration_with_schemas_and_awkward_names(pg_engine: Engine) -> None:
    metadata = sa.MetaData()
    log = audit_log_table(metadata, schema="audit")
    with pg_engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA audit"))
        conn.execute(sa.text('CREATE SCHEMA "App\'s"'))
        metadata.create_all(conn)
        conn.execute(sa.text('CREATE TABLE "App\'s"."Item""s" (sku text PRIMARY KEY, qty int)'))
        for _ in range(2):  # a migration run again does no harm
            for statement in audit_trigger_sql('Item"s', schema="App's", audit_schema="audit"):
                conn.execute(sa.text(statement))
        set_actor(conn, "migrator")
        conn.execute(sa.text('INSERT INTO "App\'s"."Item""s" VALUES (\'x-1\', 2)'))
    with pg_engine.connect() as conn:
        row = conn.execute(sa.select(log)).one()
    assert (row.table_name, row.row_pk, row.actor) == ('Item"s', {"sku": "x-1"}, "migrator")
    assert row.new_values == {"sku": "x-1", "qty": 2}


def test_async_code_sets_the_actor_with_run_sync(pg_url: str, engine: Engine) -> None:
    async def run() -> None:
        aengine = create_async_engine(pg_url)
        try:
            async with async_sessionmaker(aengine)() as session, session.begin():
                await session.run_sync(set_actor, "async-alice")
                session.add(Account(owner="ada", balance=1))
        finally:
            await aengine.dispose()

    asyncio.run(run())
    assert [e["actor"] for e in entries(engine)] == ["async-alice"]


def test_the_audit_log_cannot_audit_itself() -> None:
    metadata = sa.MetaData()
    log = audit_log_table(metadata)
    with pytest.raises(UserError, match="cannot audit itself"):
        install_audit(metadata, [log], audit_table=log)
