from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    aliased,
    mapped_column,
    relationship,
    selectinload,
)

from pgwarden.errors import DecryptionFailed, UserError
from pgwarden.orm import EncryptedString, IdPrimaryKey, Keyring, rotate, seal

KEY1, KEY2 = os.urandom(32), os.urandom(32)


class Keys:
    """The keyring the application would load from its configuration right now."""

    current = Keyring({"k1": KEY1}, primary="k1")


def keys() -> Keyring:
    return Keys.current


class Base(DeclarativeBase):
    pass


class Patient(IdPrimaryKey, Base):
    __tablename__ = "patient"
    name: Mapped[str]
    national_id: Mapped[str | None] = mapped_column(EncryptedString(keys))
    diagnosis: Mapped[str | None] = mapped_column(EncryptedString(keys))


class Visit(IdPrimaryKey, Base):
    """Loads its patient joined, through an anonymous alias of the patient table."""

    __tablename__ = "visit"
    patient_id: Mapped[int] = mapped_column(sa.ForeignKey("patient.id"))
    patient: Mapped[Patient] = relationship(lazy="joined")


class Member(Base):
    """A composite key of text and integer, given by the application."""

    __tablename__ = "member"
    org: Mapped[str] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    pin: Mapped[str] = mapped_column(EncryptedString(keys))


class Device(Base):
    """A uuid key that a Python default gives."""

    __tablename__ = "device"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    secret: Mapped[str] = mapped_column(EncryptedString(keys))


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    Keys.current = Keyring({"k1": KEY1}, primary="k1")
    Base.metadata.create_all(pg_engine)
    with Session(pg_engine) as session, session.begin():
        session.add_all(
            [
                Patient(name="ada", national_id="111-11-1111", diagnosis="flu"),
                Patient(name="bob", national_id="222-22-2222", diagnosis="cold"),
            ]
        )
    return pg_engine


def read_patients(engine: Engine) -> dict[str, tuple[str | None, str | None]]:
    with Session(engine) as session:
        return {p.name: (p.national_id, p.diagnosis) for p in session.scalars(sa.select(Patient))}


def run(engine: Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement))


def test_values_are_bound_and_read_back_through_the_orm_and_core(engine: Engine) -> None:
    assert read_patients(engine) == {
        "ada": ("111-11-1111", "flu"),
        "bob": ("222-22-2222", "cold"),
    }
    with engine.connect() as conn:
        tokens = conn.execute(sa.text("SELECT national_id FROM patient")).scalars().all()
        assert {Keyring.version(bytes(t)) for t in tokens} == {2}
        core = sa.select(Patient.__table__.c.national_id).order_by(Patient.__table__.c.id)
        assert conn.execute(core).scalars().all() == ["111-11-1111", "222-22-2222"]
    with Session(engine) as session:
        other = aliased(Patient)
        found = session.scalars(sa.select(other.national_id).where(other.name == "bob"))
        assert found.one() == "222-22-2222"


def test_related_objects_loaded_joined_or_by_selectin_are_read(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add_all([Visit(patient_id=1), Visit(patient_id=2)])
    with Session(engine) as session:
        joined = session.scalars(sa.select(Visit).order_by(Visit.id)).unique().all()
        assert [v.patient.national_id for v in joined] == ["111-11-1111", "222-22-2222"]
    with Session(engine) as session:
        query = sa.select(Visit).options(selectinload(Visit.patient)).order_by(Visit.id)
        assert [v.patient.diagnosis for v in session.scalars(query)] == ["flu", "cold"]


def test_a_value_swapped_between_rows_fails_to_decrypt(engine: Engine) -> None:
    run(
        engine,
        "UPDATE patient SET national_id ="
        " (SELECT national_id FROM patient WHERE name = 'ada') WHERE name = 'bob'",
    )
    with Session(engine) as session:
        ada = session.scalars(sa.select(Patient).where(Patient.name == "ada")).one()
        assert ada.national_id == "111-11-1111"
    with pytest.raises(DecryptionFailed, match="does not authenticate") as info:
        read_patients(engine)
    assert info.value.hint is not None


def test_a_value_swapped_between_columns_fails_to_decrypt(engine: Engine) -> None:
    run(engine, "UPDATE patient SET diagnosis = national_id WHERE name = 'ada'")
    with Session(engine) as session, pytest.raises(DecryptionFailed, match="does not auth"):
        session.scalars(sa.select(Patient.diagnosis).where(Patient.name == "ada")).one()


def test_a_value_swapped_into_another_table_fails_to_decrypt(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(Member(org="1", number=1, pin="0000"))
    # Patient 1 and member ("1", 1) have keys that read alike; the table still differs.
    run(engine, "UPDATE member SET pin = (SELECT national_id FROM patient WHERE id = 1)")
    with Session(engine) as session, pytest.raises(DecryptionFailed, match="does not auth"):
        session.scalars(sa.select(Member.pin)).one()


def unbound_rows(engine: Engine) -> None:
    """Write rows as an earlier release did: tokens without associated data."""
    old = Keyring({"k0": KEY2}, primary="k0")
    with engine.begin() as conn:
        for number, value in [(10, "old-10"), (11, "old-11"), (12, None)]:
            token = None if value is None else old.encrypt(value.encode())
            conn.execute(
                sa.text("INSERT INTO patient (id, name, national_id) VALUES (:id, :name, :t)"),
                {"id": number, "name": f"p{number}", "t": token},
            )


def test_unbound_values_are_refused_until_rotate_binds_them(engine: Engine) -> None:
    unbound_rows(engine)
    Keys.current = Keyring({"k1": KEY1, "k0": KEY2}, primary="k1")
    with pytest.raises(DecryptionFailed, match="not bound to its row") as info:
        read_patients(engine)
    assert info.value.hint is not None and "rotate" in info.value.hint

    # The migration window: the column, declared to read unbound values too.
    legacy = sa.Table(
        "patient",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("national_id", EncryptedString(keys, read_unbound=True)),
    )
    with engine.connect() as conn:
        read = sa.select(legacy.c.national_id).where(legacy.c.id == 10)
        assert conn.execute(read).scalar_one() == "old-10"

    with Session(engine) as session, session.begin():
        assert rotate(session, Patient.national_id, batch_size=1) == 2
    with engine.connect() as conn:
        tokens = conn.execute(sa.text("SELECT national_id FROM patient WHERE id >= 10"))
        assert {Keys.current.key_id(bytes(t)) for t in tokens.scalars() if t} == {"k1"}
    assert read_patients(engine)["p11"] == ("old-11", None)
    with Session(engine) as session, session.begin():
        assert rotate(session, Patient.national_id) == 0


def test_a_bound_value_of_an_old_key_is_rotated_to_the_new_one(engine: Engine) -> None:
    Keys.current = Keyring({"k2": KEY2, "k1": KEY1}, primary="k2")
    with Session(engine) as session, session.begin():
        assert rotate(session, Patient.diagnosis) == 2
    Keys.current = Keyring({"k2": KEY2}, primary="k2")
    with Session(engine) as session:
        assert set(session.scalars(sa.select(Patient.diagnosis))) == {"flu", "cold"}


def test_changing_the_primary_key_binds_the_values_to_the_new_one(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        ada = session.scalars(sa.select(Patient).where(Patient.name == "ada")).one()
        ada.id = 100
    assert read_patients(engine)["ada"] == ("111-11-1111", "flu")


def test_keys_the_database_or_the_model_generate_are_fetched_first(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        device = Device(secret="s3")
        session.add_all([device, Member(org="acme", number=7, pin="1234")])
        session.flush()
        assert isinstance(device.id, uuid.UUID)
        assert device.secret == "s3"  # the object still holds the plaintext
    with Session(engine) as session:
        assert session.scalars(sa.select(Device.secret)).one() == "s3"
        assert session.scalars(sa.select(Member.pin)).one() == "1234"


def test_core_statements_write_tokens_made_by_seal(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Patient).values(
                id=50, name="cy", national_id=seal(Patient.national_id, "333-33-3333", 50)
            )
        )
    assert read_patients(engine)["cy"] == ("333-33-3333", None)
    with pytest.raises(UserError, match="needs the 2 value"):
        seal(Member.pin, "x", "acme")


def test_a_column_read_without_its_key_says_what_to_select(engine: Engine) -> None:
    inner = sa.select(Patient.national_id).subquery()
    with Session(engine) as session, pytest.raises(UserError, match="without its row's primary"):
        session.execute(sa.select(inner.c.national_id)).all()


def test_one_type_object_cannot_serve_two_columns() -> None:
    shared = EncryptedString(keys)
    sa.Column("a", shared)
    with pytest.raises(UserError, match="type of two columns"):
        sa.Column("b", shared)


def test_a_table_without_a_usable_key_is_refused() -> None:
    metadata = sa.MetaData()
    loose = sa.Table("loose", metadata, sa.Column("v", EncryptedString(keys)))
    with pytest.raises(UserError, match="no primary key"):
        loose.c.v.type.column()
    dated = sa.Table(
        "dated",
        metadata,
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("v", EncryptedString(keys)),
    )
    with pytest.raises(UserError, match="cannot be bound"):
        dated.c.v.type.column()
