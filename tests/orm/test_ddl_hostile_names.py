"""The DDL helpers (audit, updated_at, row-level security, search) on tables whose names
are legal but hostile: each installs, and each works on the table it names."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column

from hostile_names import distinct, examples, quoted, raw, schema_names
from orm_support import Role
from pgwarden.orm import (
    audit_log_table,
    gin_index,
    install_audit,
    install_rls,
    install_updated_at_triggers,
    search,
    set_actor,
    set_tenant,
    tsvector_column,
)


def model(schema: str, names: list[str]) -> tuple[Any, sa.Table]:
    """Define a model and its audit log in ``schema``, every pattern installed."""
    table, key, tenant, title, index, policy = names

    class Base(DeclarativeBase):
        pass

    attributes = {
        "__tablename__": table,
        "__table_args__": (gin_index(index, "search_vector"), {"schema": schema}),
        "id": mapped_column(key, sa.BigInteger, sa.Identity(), primary_key=True),
        "tenant": mapped_column(tenant, sa.BigInteger),
        "title": mapped_column(title, sa.Text),
        "updated_at": mapped_column(
            sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        "search_vector": tsvector_column((title, "A")),
    }
    cls = type("Hostile", (Base,), attributes)
    log = audit_log_table(Base.metadata, schema=schema)
    install_updated_at_triggers(Base.metadata)
    install_audit(Base.metadata, [cls.__table__], audit_table=log)
    install_rls(cls.__table__, column=tenant, policy=policy)
    return cls, log


@examples(25)
@given(
    schema=schema_names,
    names=distinct(6).filter(lambda n: "audit_log" not in n and n[0] + "_pkey" not in n),
    word=st.sampled_from(["postgres", "elephant"]),
)
def test_every_ddl_helper_works_on_a_hostile_table(
    pg_engine: Engine, app_role: Role, schema: str, names: list[str], word: str
) -> None:
    table_name, key = names[0], names[1]
    cls, log = model(schema, names)
    with pg_engine.begin() as conn:
        raw(conn, f"CREATE SCHEMA {quoted(schema)}")
        cls.metadata.create_all(conn)
    try:
        with Session(pg_engine) as session, session.begin():
            set_actor(session, "tester")
            mine = cls(tenant=1, title=f"a {word} here")
            session.add_all([mine, cls(tenant=2, title="other")])
            session.flush()
            row_id = mine.id
        with pg_engine.begin() as conn:
            before = conn.execute(sa.select(cls.updated_at).where(cls.id == row_id)).scalar()
            conn.execute(sa.update(cls).where(cls.id == row_id).values(title=f"{word} again"))
            after = conn.execute(sa.select(cls.updated_at).where(cls.id == row_id)).scalar()
            assert after > before
            conn.execute(sa.delete(cls).where(cls.tenant == 2))

        with Session(pg_engine) as session:
            found = session.execute(search(sa.select(cls.id), cls.search_vector, word)).all()
            assert [row.id for row in found] == [row_id]
            audit = session.execute(
                sa.select(log.c.table_name, log.c.row_pk, log.c.action, log.c.actor).order_by(
                    log.c.id
                )
            ).all()
        assert {(a.table_name, a.action) for a in audit} == {
            (table_name, "INSERT"),
            (table_name, "UPDATE"),
            (table_name, "DELETE"),
        }
        assert {"id": row_id} not in [a.row_pk for a in audit]  # keyed by the column's name
        assert {key: row_id} in [a.row_pk for a in audit]

        with pg_engine.begin() as conn:
            target = f"{quoted(schema)}.{quoted(table_name)}"
            raw(conn, f"GRANT USAGE ON SCHEMA {quoted(schema)} TO {app_role.quoted}")
            raw(conn, f"GRANT SELECT ON {target} TO {app_role.quoted}")
            raw(conn, f"SET LOCAL ROLE {app_role.quoted}")
            set_tenant(conn, 1)
            visible = conn.execute(sa.select(cls.tenant)).scalars().all()
        assert visible == [1]
    finally:
        with pg_engine.begin() as conn:
            raw(conn, f"DROP SCHEMA {quoted(schema)} CASCADE")
