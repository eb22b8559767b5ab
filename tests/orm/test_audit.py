from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from orm_support import Role
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


@pytest.fixture
def writer(engine: Engine, app_role: Role) -> Engine:
    """Return an engine of an ordinary role that may write ``account`` and create schemas."""
    with engine.begin() as conn:
        database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        conn.execute(sa.text(f'GRANT CREATE, TEMP ON DATABASE "{database}" TO {app_role.quoted}'))
        conn.execute(
            sa.text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON account TO {app_role.quoted}")
        )
        conn.execute(sa.text(f"GRANT INSERT ON audit_log TO {app_role.quoted}"))
        conn.execute(sa.text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {app_role.quoted}"))
    return app_role.engine()


# The log's shape, written out: the writer may insert into audit_log but not read it.
LOG_COLUMNS = (
    "(id bigint GENERATED BY DEFAULT AS IDENTITY, table_name text, row_pk jsonb, action text,"
    " old_values jsonb, new_values jsonb, actor text, at timestamptz DEFAULT now())"
)


def write_insert_update_delete(conn: Connection) -> None:
    set_actor(conn, "writer")
    conn.execute(sa.text("INSERT INTO public.account (id, owner, balance) VALUES (7, 'ada', 1)"))
    conn.execute(sa.text("UPDATE public.account SET balance = 2 WHERE id = 7"))
    conn.execute(sa.text("DELETE FROM public.account WHERE id = 7"))


def assert_audited_in_the_real_log(engine: Engine) -> None:
    logged = entries(engine)
    assert [(e["action"], e["actor"], e["row_pk"]) for e in logged] == [
        ("INSERT", "writer", {"id": 7}),
        ("UPDATE", "writer", {"id": 7}),
        ("DELETE", "writer", {"id": 7}),
    ]
    assert logged[1]["old_values"]["balance"] == 1 and logged[1]["new_values"]["balance"] == 2


@pytest.mark.parametrize("argument", ["as generated", "unqualified, by an older release"])
def test_a_temporary_audit_log_does_not_hide_a_writers_changes(
    engine: Engine, writer: Engine, argument: str
) -> None:
    if argument != "as generated":  # an older trigger names its log without a schema
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER pgwarden_audit ON account"))
            conn.execute(
                sa.text(
                    "CREATE TRIGGER pgwarden_audit AFTER INSERT OR UPDATE OR DELETE ON account"
                    " FOR EACH ROW EXECUTE FUNCTION pgwarden_audit('audit_log')"
                )
            )
    with writer.connect() as conn:
        conn.execute(sa.text(f"CREATE TEMP TABLE audit_log {LOG_COLUMNS}"))
        conn.commit()
        with conn.begin():
            write_insert_update_delete(conn)
        assert conn.execute(sa.text("SELECT count(*) FROM pg_temp.audit_log")).scalar() == 0
    assert_audited_in_the_real_log(engine)


def test_the_trigger_names_its_log_with_the_schema(engine: Engine) -> None:
    with engine.connect() as conn:
        arguments = conn.execute(
            sa.text("SELECT tgargs FROM pg_trigger WHERE tgname = 'pgwarden_audit'")
        ).scalars()
        assert {bytes(a) for a in arguments} == {b"public.audit_log\x00"}


HOSTILE_SCHEMA = [
    "CREATE SCHEMA evil",
    f"CREATE TABLE evil.audit_log {LOG_COLUMNS}",
    # Every function and operator the trigger functions call, shadowed ahead of pg_catalog.
    "CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text"
    " LANGUAGE sql AS $$ SELECT 'mallory' $$",
    "CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb"
    " LANGUAGE sql AS $$ SELECT '{}'::pg_catalog.jsonb $$",
    "CREATE FUNCTION evil.parse_ident(text, boolean DEFAULT true) RETURNS text[]"
    " LANGUAGE sql AS $$ SELECT ARRAY['evil', 'audit_log'] $$",
    "CREATE FUNCTION evil.quote_ident(text) RETURNS text LANGUAGE sql AS $$ SELECT 'evil' $$",
    "CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz"
    " LANGUAGE sql AS $$ SELECT '2000-01-01'::pg_catalog.timestamptz $$",
    "CREATE FUNCTION evil.same(jsonb, text) RETURNS jsonb"
    " LANGUAGE sql AS $$ SELECT '{}'::pg_catalog.jsonb $$",
    # Makes every UPDATE look as if it changed nothing but updated_at.
    "CREATE OPERATOR evil.- (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = evil.same)",
    "SET search_path = evil, pg_catalog, public",
]


def test_a_hostile_search_path_can_neither_divert_nor_forge_the_audit(
    engine: Engine, writer: Engine
) -> None:
    with writer.connect() as conn:
        for statement in HOSTILE_SCHEMA:
            conn.execute(sa.text(statement))
        conn.commit()
        with conn.begin():
            write_insert_update_delete(conn)
            conn.execute(
                sa.text("INSERT INTO public.account (id, owner, balance) VALUES (8, 'b', 0)")
            )
            conn.execute(sa.text("UPDATE public.account SET balance = 1 WHERE id = 8"))
            stamp = conn.execute(sa.text("SELECT updated_at FROM public.account WHERE id = 8"))
            assert stamp.scalar_one().year > 2000
        assert conn.execute(sa.text("SELECT count(*) FROM evil.audit_log")).scalar() == 0
    with engine.begin() as conn:
        conn.execute(audit_log.delete().where(audit_log.c.row_pk == {"id": 8}))
    assert_audited_in_the_real_log(engine)
