from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import NullPool

from pgwarden.config import load_settings
from pgwarden.db.engines import create_engine
from pgwarden.errors import ConfigError, DecryptionFailed, UnknownKey, UserError
from pgwarden.orm import EncryptedString, IdPrimaryKey, Keyring, keyring_from_settings, rotate

KEY1, KEY2, KEY9 = (os.urandom(32) for _ in range(3))


class Keys:
    """The keyring the application would load from its configuration right now."""

    current = Keyring({"k1": KEY1}, primary="k1")


class Base(DeclarativeBase):
    pass


class Patient(IdPrimaryKey, Base):
    __tablename__ = "patient"
    name: Mapped[str]
    national_id: Mapped[str | None] = mapped_column(EncryptedString(lambda: Keys.current))


class Contact(IdPrimaryKey, Base):
    __tablename__ = "contact"
    phone: Mapped[str] = mapped_column(EncryptedString())  # keys from the settings


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    Keys.current = Keyring({"k1": KEY1}, primary="k1")
    Base.metadata.create_all(pg_engine)
    return pg_engine


def raw_tokens(engine: Engine) -> list[bytes]:
    with engine.connect() as conn:
        query = sa.text("SELECT national_id FROM patient WHERE national_id IS NOT NULL ORDER BY id")
        return [bytes(token) for token in conn.execute(query).scalars()]


def encoded(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_a_keyring_round_trips_and_authenticates_the_associated_data() -> None:
    ring = Keyring({"k1": KEY1}, primary="k1")
    token = ring.encrypt(b"secret", aad=b"patient.national_id")
    assert ring.decrypt(token, aad=b"patient.national_id") == b"secret"
    assert ring.key_id(token) == "k1"
    assert ring.encrypt(b"secret") != ring.encrypt(b"secret")  # a fresh nonce each time
    with pytest.raises(DecryptionFailed) as info:
        ring.decrypt(token, aad=b"contact.phone")
    assert info.value.hint


def test_a_keyring_never_shows_its_keys() -> None:
    ring = Keyring({"k2": KEY2, "k1": KEY1}, primary="k2")
    assert repr(ring) == "Keyring(key_ids=('k2', 'k1'), primary='k2')"
    assert encoded(KEY1) not in repr(ring) and str(KEY1) not in repr(ring)


def test_generated_keys_are_32_random_bytes() -> None:
    first, second = Keyring.generate_key(), Keyring.generate_key()
    assert len(base64.b64decode(first)) == 32 and first != second
    assert Keyring.from_setting(f"new:{first}").primary == "new"


@pytest.mark.parametrize(
    ("keys", "primary", "expected"),
    [
        ({}, "k1", "at least one key"),
        ({"k1": b"short"}, "k1", "not 32 bytes"),
        ({"k1": KEY1}, "k2", "primary key id 'k2' is not in the keyring"),
        ({"k 1": KEY1}, "k 1", "key id must be"),
    ],
)
def test_a_bad_keyring_is_a_config_error(
    keys: dict[str, bytes], primary: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        Keyring(keys, primary=primary)


def test_the_setting_names_the_primary_first_and_every_key_decrypts() -> None:
    old = Keyring.from_setting(f"k1:{encoded(KEY1)}")
    ring = Keyring.from_setting(f" k2:{encoded(KEY2)} , k1:{encoded(KEY1)} ")
    assert (ring.primary, ring.key_ids) == ("k2", ("k2", "k1"))
    assert ring.decrypt(old.encrypt(b"x")) == b"x"
    assert ring.key_id(ring.encrypt(b"x")) == "k2"
    urlsafe = base64.urlsafe_b64encode(KEY1).decode()
    assert Keyring.from_setting(f"k1:{urlsafe}").decrypt(old.encrypt(b"y")) == b"y"


SECRET = encoded(KEY9)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "entry 1 is not of the form"),
        (SECRET, "entry 1 is not of the form"),
        (f"k1:{SECRET},{SECRET}", "entry 2 is not of the form"),
        (f"k1:{SECRET}!", "not valid base64"),
        (f"k1:{SECRET[:-8]}", r"not valid base64|bytes long"),
        (f"k1:{encoded(KEY9[:16])}", "16 bytes long, not 32"),
        (f"{SECRET}:{SECRET}", "entry 1 has an unusable key id"),
        (f"k1:{SECRET},k1:{SECRET}", "'k1' appears more than once"),
    ],
)
def test_a_malformed_setting_is_explained_without_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        Keyring.from_setting(text)
    shown = f"{info.value.message} {info.value.hint}"
    assert "PGWARDEN_ENCRYPTION_KEYS" in shown
    assert SECRET[:12] not in shown


def test_a_malformed_environment_variable_is_a_config_error_without_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGWARDEN_ENCRYPTION_KEYS", f"k1:{SECRET[:-8]}")
    with pytest.raises(ConfigError) as info:
        EncryptedString().get_keyring()
    assert SECRET[:12] not in f"{info.value.message} {info.value.hint}"


def test_no_keys_configured_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PGWARDEN_ENCRYPTION_KEYS is not set") as info:
        keyring_from_settings()
    assert info.value.hint is not None and "generate_key" in info.value.hint


def test_settings_read_the_keys_but_never_show_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PGWARDEN_ENCRYPTION_KEYS", f"k9:{SECRET}")
    settings = load_settings()
    assert settings.encryption_keys == f"k9:{SECRET}"
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert "encryption_keys" not in repr(settings)
    monkeypatch.delenv("PGWARDEN_ENCRYPTION_KEYS")
    config = tmp_path / "keys.toml"
    config.write_text(f'encryption_keys = ["k9:{SECRET}", "k1:{encoded(KEY1)}"]\n')
    ring = Keyring.from_setting(load_settings(config).encryption_keys or "")
    assert ring.key_ids == ("k9", "k1")


def test_values_round_trip_through_the_database_encrypted(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(
            [Patient(name="ada", national_id="123-45-6789"), Patient(name="bob", national_id=None)]
        )
    with Session(engine) as session:
        found = {p.name: p.national_id for p in session.scalars(sa.select(Patient))}
    assert found == {"ada": "123-45-6789", "bob": None}
    (token,) = raw_tokens(engine)
    assert b"123-45-6789" not in token and b"6789" not in token
    assert Keys.current.key_id(token) == "k1"
    with engine.connect() as conn:
        column_type = conn.execute(
            sa.text(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = 'patient' AND column_name = 'national_id'"
            )
        ).scalar()
    assert column_type == "bytea"


def test_the_settings_keyring_is_used_when_none_is_given(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGWARDEN_ENCRYPTION_KEYS", f"k1:{encoded(KEY1)}")
    with Session(engine) as session, session.begin():
        session.add(Contact(phone="+44 20 7946 0000"))
    with Session(engine) as session:
        assert session.scalars(sa.select(Contact.phone)).one() == "+44 20 7946 0000"


def test_a_tampered_value_fails_to_decrypt(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(Patient(name="ada", national_id="123-45-6789"))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE patient SET national_id = set_byte(national_id, length(national_id) - 1,"
                " get_byte(national_id, length(national_id) - 1) # 1)"
            )
        )
    with Session(engine) as session, pytest.raises(DecryptionFailed, match="does not auth") as info:
        session.scalars(sa.select(Patient.national_id)).one()
    assert info.value.hint is not None


def test_a_truncated_value_fails_to_decrypt(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO patient (name, national_id) VALUES ('ada', '\\x0102'::bytea)")
        )
    with Session(engine) as session, pytest.raises(DecryptionFailed, match="too short"):
        session.scalars(sa.select(Patient.national_id)).one()


def test_a_value_under_a_key_not_in_the_keyring_names_the_key_id(engine: Engine) -> None:
    bound = Patient.national_id.type.associated_data(["1"])
    foreign = Keyring({"k9": KEY9}, primary="k9").encrypt(b"123-45-6789", aad=bound)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO patient (id, name, national_id) VALUES (1, 'ada', :token)"),
            {"token": foreign},
        )
    with Session(engine) as session, pytest.raises(UnknownKey, match="key id 'k9'") as info:
        session.scalars(sa.select(Patient.national_id)).one()
    shown = f"{info.value.message} {info.value.hint}"
    assert "k1" in shown
    assert encoded(KEY1)[:12] not in shown and encoded(KEY9)[:12] not in shown


def test_rotation_re_encrypts_under_the_new_primary(engine: Engine) -> None:
    ids = [f"{n:03d}-00-0000" for n in range(7)]
    with Session(engine) as session, session.begin():
        session.add_all([Patient(name=f"p{i}", national_id=v) for i, v in enumerate(ids)])
        session.add(Patient(name="none", national_id=None))
    Keys.current = Keyring({"k2": KEY2, "k1": KEY1}, primary="k2")
    with Session(engine) as session, session.begin():
        session.add(Patient(name="new", national_id="999-99-9999"))  # written under k2
    expected = [*ids, "999-99-9999"]
    read = sa.select(Patient.national_id).where(Patient.national_id.is_not(None))
    with Session(engine) as session:  # old rows still decrypt before rotation
        assert list(session.scalars(read.order_by(Patient.id))) == expected
    with Session(engine) as session, session.begin():
        assert rotate(session, Patient.national_id, batch_size=3) == 7
    assert {Keys.current.key_id(token) for token in raw_tokens(engine)} == {"k2"}
    with Session(engine) as session, session.begin():
        assert rotate(session, Patient.national_id) == 0
    Keys.current = Keyring({"k2": KEY2}, primary="k2")  # the old key can now go
    with Session(engine) as session:
        assert list(session.scalars(read.order_by(Patient.id))) == expected


def test_rotate_needs_an_encrypted_column(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(UserError, match="not a column of type"):
        rotate(session, Patient.name)


def test_a_key_error_while_flushing_is_raised_as_it_is_without_the_plaintext(
    engine: Engine,
) -> None:
    with Session(engine) as session:
        session.add(Contact(phone="+44 20 7946 0000"))
        with pytest.raises(ConfigError, match="PGWARDEN_ENCRYPTION_KEYS is not set") as info:
            session.flush()
    assert "7946" not in f"{info.value.message} {info.value.hint}"


def test_plaintext_in_a_core_statement_comes_wrapped_and_hide_parameters_keeps_it_out(
    engine: Engine, pg_url: str
) -> None:
    hidden = create_engine(pg_url, poolclass=NullPool, hide_parameters=True)
    try:
        with hidden.begin() as conn, pytest.raises(sa.exc.StatementError) as info:
            conn.execute(sa.insert(Patient).values(name="ada", national_id="123-45-6789"))
    finally:
        hidden.dispose()
    assert isinstance(info.value.orig, UserError)
    assert "written without its row" in str(info.value.orig)
    assert "6789" not in str(info.value)
