from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, Session
from sqlalchemy.pool import NullPool

from orm_support import Role
from pgwarden.db.engines import create_async_engine, create_engine
from pgwarden.errors import UserError
from pgwarden.orm import IdPrimaryKey, install_rls, rls_policy_sql, set_tenant


class Base(DeclarativeBase):
    pass


class Note(IdPrimaryKey, Base):
    __tablename__ = "note"
    tenant_id: Mapped[int]
    body: Mapped[str]


install_rls(Note.__table__)

SEED = [
    {"tenant_id": 1, "body": "one-a"},
    {"tenant_id": 1, "body": "one-b"},
    {"tenant_id": 2, "body": "two-a"},
]


@pytest.fixture
def app_url(pg_engine: Engine, app_role: Role) -> sa.URL:
    """Return the URL of an ordinary role (not the tables' owner) that may use ``note``."""
    Base.metadata.create_all(pg_engine)
    with pg_engine.begin() as conn:  # as the superuser owner, which RLS does not bind
        conn.execute(sa.insert(Note), SEED)
        conn.execute(sa.text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON note TO {app_role.quoted}"))
        conn.execute(sa.text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {app_role.quoted}"))
    return app_role.url


@pytest.fixture
def app_engine(app_url: sa.URL) -> Iterator[Engine]:
    engine = create_engine(app_url, poolclass=NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


def bodies(session: Session) -> list[str]:
    return list(session.scalars(sa.select(Note.body).order_by(Note.body)))


def test_a_tenant_sees_only_its_own_rows(app_engine: Engine) -> None:
    with Session(app_engine) as session, session.begin():
        set_tenant(session, 1)
        assert bodies(session) == ["one-a", "one-b"]
    with Session(app_engine) as session, session.begin():
        set_tenant(session, "2")
        assert bodies(session) == ["two-a"]


def test_with_no_tenant_nothing_is_visible(app_engine: Engine) -> None:
    with Session(app_engine) as session, session.begin():
        assert bodies(session) == []
        set_tenant(session, None)
        assert bodies(session) == []


def test_a_crafted_query_cannot_reach_another_tenant(app_engine: Engine) -> None:
    with app_engine.begin() as conn:
        set_tenant(conn, 1)
        crafted = conn.execute(sa.text("SELECT body FROM note WHERE tenant_id = 2 OR 1=1"))
        assert sorted(crafted.scalars()) == ["one-a", "one-b"]
        assert conn.execute(sa.text("SELECT count(*) FROM note")).scalar() == 2


def test_writing_into_another_tenant_is_refused(app_engine: Engine) -> None:
    with Session(app_engine) as session, session.begin():
        set_tenant(session, 1)
        session.add(Note(tenant_id=1, body="one-c"))  # its own tenant: fine
        session.flush()
    with Session(app_engine) as session, session.begin():
        set_tenant(session, 1)
        session.add(Note(tenant_id=2, body="planted"))
        with pytest.raises(sa.exc.ProgrammingError, match="row-level security policy"):
            session.flush()
        session.rollback()
    with app_engine.connect() as conn:
        with conn.begin():
            set_tenant(conn, 1)
            with pytest.raises(sa.exc.ProgrammingError, match="row-level security policy"):
                conn.execute(sa.text("UPDATE note SET tenant_id = 2 WHERE body = 'one-a'"))
        with conn.begin():
            set_tenant(conn, 1)
            changed = conn.execute(sa.text("UPDATE note SET body = 'x' WHERE tenant_id = 2"))
            removed = conn.execute(sa.text("DELETE FROM note WHERE tenant_id = 2"))
            assert (changed.rowcount, removed.rowcount) == (0, 0)


def test_the_tenant_lasts_until_the_transaction_ends(app_engine: Engine) -> None:
    with app_engine.connect() as conn:
        with conn.begin():
            set_tenant(conn, 1)
            assert conn.execute(sa.text("SELECT count(*) FROM note")).scalar() == 2
        with conn.begin():
            assert conn.execute(sa.text("SELECT count(*) FROM note")).scalar() == 0


def test_the_tenant_value_is_bound_not_spliced(app_engine: Engine) -> None:
    with app_engine.connect() as conn:
        with conn.begin():
            set_tenant(conn, "1) OR (1=1")
            with pytest.raises(sa.exc.DataError, match="invalid input syntax"):
                conn.execute(sa.text("SELECT count(*) FROM note"))
        with conn.begin():
            set_tenant(conn, 2)
            assert conn.execute(sa.text("SELECT count(*) FROM note")).scalar() == 1


def test_async_code_sets_the_tenant_with_run_sync(app_url: sa.URL) -> None:
    async def run() -> list[str]:
        engine = create_async_engine(app_url, poolclass=NullPool)
        try:
            async with async_sessionmaker(engine)() as session, session.begin():
                await session.run_sync(set_tenant, 2)
                return list(await session.scalars(sa.select(Note.body)))
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == ["two-a"]


def test_the_policy_is_forced_on_the_owner_too(pg_engine: Engine, app_url: sa.URL) -> None:
    with pg_engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class"
                " WHERE oid = 'note'::regclass"
            )
        ).one()
        assert tuple(row) == (True, True)


@pytest.mark.parametrize(
    "setting",
    [
        "tenant",
        "a.b.c",
        "pgwarden.tenant_id', true)) OR true --",
        "x.y'); DROP TABLE note; --",
        "pgwarden.tenant id",
        "",
    ],
)
def test_a_setting_name_that_could_carry_sql_is_refused(setting: str) -> None:
    with pytest.raises(UserError, match="not a custom setting name"):
        rls_policy_sql("note", setting=setting)


@pytest.mark.parametrize(
    "cast", ["bigint; DROP TABLE note", "bigint) OR (true", "pg_catalog.text", "int4[]", ""]
)
def test_a_cast_outside_the_allow_list_is_refused(cast: str) -> None:
    with pytest.raises(UserError, match="not a type a tenant id can be cast to") as info:
        rls_policy_sql("note", cast=cast)
    assert info.value.hint is not None and "bigint" in info.value.hint


def test_the_policy_sql_reads_as_documented() -> None:
    *_, create = rls_policy_sql("note", cast="UUID", schema="app")
    assert create == (
        "CREATE POLICY tenant_isolation ON app.note\n"
        "USING (tenant_id = NULLIF(current_setting('pgwarden.tenant_id', true), '')::uuid)\n"
        "WITH CHECK (tenant_id = NULLIF(current_setting('pgwarden.tenant_id', true), '')::uuid)"
    )


def test_hostile_names_are_quoted(pg_engine: Engine) -> None:
    metadata = sa.MetaData()
    hostile = sa.Table(
        'note"; DROP TABLE note; --',
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column('tenant"id', sa.Text),
    )
    install_rls(hostile, column='tenant"id', cast="text", policy="p'; DROP TABLE note; --")
    Base.metadata.create_all(pg_engine)
    metadata.create_all(pg_engine)
    with pg_engine.connect() as conn:
        policy = conn.execute(
            sa.text("SELECT policyname, qual FROM pg_policies WHERE tablename = :t"),
            {"t": hostile.name},
        ).one()
        assert policy.policyname == "p'; DROP TABLE note; --"
        assert "current_setting('pgwarden.tenant_id'" in policy.qual
        assert conn.execute(sa.text("SELECT to_regclass('note') IS NOT NULL")).scalar()


def test_install_rls_needs_the_tenant_column() -> None:
    with pytest.raises(UserError, match="no column 'org_id'"):
        install_rls(Note.__table__, column="org_id")
