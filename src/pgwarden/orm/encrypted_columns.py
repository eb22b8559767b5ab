"""Store a column encrypted, each value bound to the table, column and row it belongs to.

An :class:`EncryptedString` column holds AES-256-GCM tokens (see
:mod:`pgwarden.orm.encryption`) whose associated data is the table, the column and the
row's primary key. A token copied into another row or another column, by anyone with
write access to the table, fails to decrypt instead of showing another row's secret::

    class Patient(IdPrimaryKey, Base):
        __tablename__ = "patient"
        national_id: Mapped[str] = mapped_column(EncryptedString())  # PGWARDEN_ENCRYPTION_KEYS

How each side learns the row (a column type alone sees only the value):

- reading: when the column is selected, its SQL brings the row's primary key along
  (``key || 0x00 || token``, the key as JSON text), so entity loads, ``select(Patient.
  national_id)`` and Core selects decrypt with it, from the table or an alias of it;
- writing: the ORM seals each value just before its row is inserted or updated, when
  the key is known. A key the database would generate (an identity, a sequence, a
  default) is fetched first and given to the row. A Core statement has no row: it
  writes a token made by :func:`seal`.

Tokens written by earlier releases are not bound (version 1). :func:`rotate` binds them,
and they are read only by columns made with ``read_unbound=True``, meant for the time
between deploying and rotating.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    CHAR,
    Column,
    Enum,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    Uuid,
    and_,
    bindparam,
    cast,
    event,
    func,
    inspect,
    literal,
    literal_column,
    select,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import ColumnProperty, InstrumentedAttribute, Mapper, Session
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import TypeDecorator

from pgwarden.errors import DecryptionFailed, UserError
from pgwarden.orm._row_keys import KEY_HINT as _KEY_HINT
from pgwarden.orm._row_keys import generate_key, key_text
from pgwarden.orm.encryption import (
    UNBOUND,
    WITH_ASSOCIATED_DATA,
    Keyring,
    header,
    keyring_from_settings,
)

__all__ = ["EncryptedString", "rotate", "seal"]

# What separates the key from the token in a selected value: JSON text never holds NUL.
_SEPARATOR = b"\x00"
_KEY_TYPES = (Integer, String, Uuid)


class EncryptedString(TypeDecorator[str]):
    """Store a ``str`` encrypted in a ``bytea`` column, bound to its row; read it back.

    ``keyring`` is a :class:`~pgwarden.orm.Keyring`, a function returning one (called on
    each use, so it can follow a reload), or None for
    :func:`~pgwarden.orm.keyring_from_settings`. Values are encrypted with a random
    nonce, so equal strings give different bytes: the column cannot be compared, sorted
    or indexed on its plaintext.

    ``bound_as`` is the ``(schema, table, column)`` the values are bound to, by default
    the column's own; after renaming a table or column, set it to the old names.
    ``read_unbound`` also reads tokens of earlier releases, which any row could have
    been given: set it only until :func:`rotate` has bound them.
    """

    impl = LargeBinary
    cache_ok = True

    def __init__(
        self,
        keyring: Keyring | Callable[[], Keyring] | None = None,
        *,
        bound_as: tuple[str | None, str, str] | None = None,
        read_unbound: bool = False,
    ) -> None:
        super().__init__()
        self.keyring = keyring
        self.bound_as = bound_as
        self.read_unbound = read_unbound

    @property
    def python_type(self) -> type[str]:
        return str

    def _set_parent(self, parent: Any, outer: bool = False, **kw: Any) -> None:
        super()._set_parent(parent, outer=outer, **kw)
        if not isinstance(parent, Column):
            return
        # A copy (of a mixin's column, say) shares the dict, and so the first column.
        owner, column = self.__dict__.get("_owner"), self.__dict__.get("_column")
        if owner == id(self) and column is not None and column is not parent:
            raise UserError(
                f"one EncryptedString is the type of two columns, {column.name!r} and "
                f"{parent.name!r}; each binds its values to itself.",
                hint="Give each encrypted column its own EncryptedString().",
            )
        self.__dict__.update(_owner=id(self), _column=parent)

    def get_keyring(self) -> Keyring:
        """Return the keyring this column encrypts and decrypts with now."""
        if self.keyring is None:
            return keyring_from_settings()
        if isinstance(self.keyring, Keyring):
            return self.keyring
        return self.keyring()

    def column(self) -> Column[Any]:
        """Return the table column of this type, checked to have a usable primary key."""
        column = self.__dict__.get("_column")
        if not isinstance(column, Column) or not isinstance(column.table, Table):
            raise UserError(
                "an EncryptedString is used outside a table column; its values are bound "
                "to the row they belong to.",
                hint="Use EncryptedString as the type of a table's column.",
            )
        key = list(column.table.primary_key.columns)
        if not key:
            raise UserError(
                f"table {column.table.fullname} has no primary key to bind encrypted values to.",
                hint=_KEY_HINT,
            )
        for part in key:
            if not isinstance(part.type, _KEY_TYPES) or isinstance(part.type, (CHAR, Enum)):
                raise UserError(
                    f"the primary key column {part.name!r} of {column.table.fullname} is "
                    f"{part.type}, which encrypted values cannot be bound to.",
                    hint=_KEY_HINT,
                )
        return column

    def associated_data(self, key: Sequence[str]) -> bytes:
        """Return the associated data of the value of the row whose key reads ``key``."""
        column = self.column()
        schema, table, name = self.bound_as or (column.table.schema, column.table.name, column.name)
        bound = ["pgwarden.row", schema, table, name, list(key)]
        return json.dumps(bound, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def column_expression(self, colexpr: ColumnElement[Any]) -> ColumnElement[Any]:
        # Bring the row's key along: the key columns of the same table, or of the same
        # alias of it. Where they cannot be reached (a subquery without them), the bare
        # token comes back and reading it says why.
        column = self.__dict__.get("_column")
        source = getattr(colexpr, "table", None)
        if not isinstance(column, Column) or source is None or column.table is None:
            return colexpr
        parts = []
        for part in column.table.primary_key.columns:
            found = source.corresponding_column(part)
            if found is None:
                return colexpr
            parts.append(cast(found, Text))
        if not parts:
            return colexpr
        as_json = cast(func.pg_catalog.json_build_array(*parts), Text)
        key = func.pg_catalog.convert_to(as_json, "UTF8")
        separator = literal_column("pg_catalog.decode('00', 'hex')", LargeBinary)
        return type_coerce(key.op("||")(separator).op("||")(colexpr), self)

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)  # a token, sealed for its row by seal() or at flush
        if isinstance(value, str):
            raise UserError(
                "an encrypted value was written without its row, so it cannot be bound "
                "to it (a Core or bulk statement, or a comparison with plaintext).",
                hint="Set it on the ORM object and flush, or write the token of "
                "seal(Model.column, value, *primary_key). Encrypted values cannot be "
                "compared with plaintext.",
            )
        raise UserError(
            f"an encrypted string column was given a {type(value).__name__}, not a str."
        )

    def process_result_value(self, value: Any | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        data = bytes(value)
        if data[:1] != b"[":
            return self.open(data, None)
        key, _, token = data.partition(_SEPARATOR)
        return self.open(token, json.loads(key))

    def open(self, token: bytes, key: Sequence[str] | None) -> str:
        """Return the plaintext of ``token``, the value of the row whose key reads ``key``."""
        keyring = self.get_keyring()
        if keyring.version(token) == UNBOUND:
            if not self.read_unbound:
                raise DecryptionFailed(
                    f"a value of {self._names()} is not bound to its row: it was written "
                    "by an earlier release, or copied from such a value.",
                    hint="Bind the column's values with pgwarden.orm.rotate(session, "
                    "Model.column); until then, read them with EncryptedString(..., "
                    "read_unbound=True).",
                )
            return keyring.decrypt(token).decode("utf-8")
        if key is None:
            raise UserError(
                f"a value of {self._names()} was read without its row's primary key, "
                "which it is bound to.",
                hint="Select the column from its table or entity (or an alias of it), "
                "not from a subquery or text() that leaves the primary key out.",
            )
        return keyring.decrypt(token, aad=self.associated_data(key)).decode("utf-8")

    def _names(self) -> str:
        column = self.__dict__.get("_column")
        return f"{column.table.fullname}.{column.name}" if isinstance(column, Column) else "it"


def _encrypted_type(attribute: InstrumentedAttribute[Any]) -> tuple[Column[Any], EncryptedString]:
    prop = getattr(attribute, "property", None)
    target = prop.columns[0] if isinstance(prop, ColumnProperty) else None
    if not isinstance(target, Column) or not isinstance(target.type, EncryptedString):
        raise UserError(
            f"{attribute} is not a column of type EncryptedString.",
            hint="Pass the mapped attribute of an encrypted column, such as Patient.national_id.",
        )
    target.type.column()
    return target, target.type


def seal(attribute: InstrumentedAttribute[Any], plaintext: str, *key: Any) -> bytes:
    """Return the token of ``plaintext`` for the row whose primary key is ``key``.

    For writing without the ORM, where no object tells the row:
    ``insert(Patient).values(id=7, national_id=seal(Patient.national_id, "123", 7))``.
    ``key`` holds the primary key's values in the order of its columns.
    """
    column, kind = _encrypted_type(attribute)
    if len(key) != len(column.table.primary_key.columns):
        raise UserError(
            f"seal() needs the {len(column.table.primary_key.columns)} value(s) of the "
            f"primary key of {column.table.fullname}, got {len(key)}."
        )
    aad = kind.associated_data([key_text(value) for value in key])
    return kind.get_keyring().encrypt(plaintext.encode("utf-8"), aad=aad)


class _Sealed(bytes):
    """A token standing in an object's attribute while its row is written."""

    plaintext: str


# -- Sealing at flush: each encrypted attribute is swapped for its token just before the
# row's INSERT or UPDATE is built, and swapped back after it.


def _encrypted_attributes(mapper: Mapper[Any]) -> list[tuple[str, EncryptedString]]:
    found = []
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if isinstance(column, Column) and isinstance(column.type, EncryptedString):
            column.type.column()  # a table without a usable key fails here, at configure
            found.append((prop.key, column.type))
    return found


def _row_key(mapper: Mapper[Any], target: Any, table: Table, conn: Connection) -> list[str]:
    state_dict = inspect(target).dict
    values = []
    for part in table.primary_key.columns:
        key = mapper.get_property_by_column(part).key
        value = state_dict.get(key)
        if value is None:
            value = generate_key(conn, part)
            setattr(target, key, value)
        values.append(key_text(value))
    return values


def _seal_rows(mapper: Mapper[Any], encrypted: list[tuple[str, EncryptedString]]) -> None:
    def seal_row(mapper: Mapper[Any], conn: Connection, target: Any, inserting: bool) -> None:
        state = inspect(target)
        state_dict, changed = state.dict, state.committed_state
        rekeyed = not inserting and any(
            mapper.get_property_by_column(part).key in changed
            for _, kind in encrypted
            for part in kind.column().table.primary_key.columns
        )
        for name, kind in encrypted:
            value = state_dict.get(name)
            if isinstance(value, _Sealed):
                value = value.plaintext  # a flush that failed, tried again
            if not isinstance(value, str):
                if rekeyed and name not in state_dict:
                    raise UserError(
                        f"the primary key of a {mapper.class_.__name__} changes while its "
                        f"encrypted {name} is not loaded, so it cannot be bound to the new key.",
                        hint=f"Load {name} (read it) before changing the primary key.",
                    )
                continue
            if not (inserting or rekeyed or name in changed):
                continue
            table = kind.column().table
            aad = kind.associated_data(_row_key(mapper, target, table, conn))
            token = _Sealed(kind.get_keyring().encrypt(value.encode("utf-8"), aad=aad))
            token.plaintext = value
            state_dict[name] = token
            if rekeyed and name not in changed:
                flag_modified(target, name)

    def unseal_row(mapper: Mapper[Any], conn: Connection, target: Any) -> None:
        state_dict = inspect(target).dict
        for name, _ in encrypted:
            value = state_dict.get(name)
            if isinstance(value, _Sealed):
                state_dict[name] = value.plaintext

    event.listen(mapper, "before_insert", lambda m, c, t: seal_row(m, c, t, True))
    event.listen(mapper, "before_update", lambda m, c, t: seal_row(m, c, t, False))
    event.listen(mapper, "after_insert", unseal_row)
    event.listen(mapper, "after_update", unseal_row)


@event.listens_for(Mapper, "mapper_configured")
def _bind_encrypted_columns(mapper: Mapper[Any], class_: type) -> None:
    encrypted = _encrypted_attributes(mapper)
    if encrypted:
        _seal_rows(mapper, encrypted)


def rotate(session: Session, column: InstrumentedAttribute[Any], *, batch_size: int = 500) -> int:
    """Re-encrypt, bound to its row and under the primary key, every value of ``column``
    that is not both; return how many.

    ``column`` is a mapped attribute of type :class:`EncryptedString` (``Patient.national_id``).
    It reads values under any key of the keyring, unbound ones (of earlier releases)
    included. Rows are read in primary key order, ``batch_size`` at a time, and updated
    in the session's transaction: commit it afterwards.
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be 1 or more, not {batch_size}.")
    target, kind = _encrypted_type(column)
    table = target.table
    key = list(table.primary_key.columns)
    keyring = kind.get_keyring()
    token = type_coerce(target, LargeBinary)
    prefix = header(keyring.primary, WITH_ASSOCIATED_DATA)
    stale = and_(
        target.is_not(None),
        func.substring(token, 1, len(prefix)) != literal(prefix, LargeBinary),
    )
    write = (
        update(table)
        .where(*(col == bindparam(f"pgwarden_key_{i}") for i, col in enumerate(key)))
        .values({target: bindparam("pgwarden_token", type_=LargeBinary)})
    )
    rotated = 0
    last: tuple[Any, ...] | None = None
    while True:
        query = select(*key, token).where(stale).order_by(*key).limit(batch_size)
        if last is not None:
            query = query.where(
                tuple_(*key) > tuple_(*(literal(v, c.type) for c, v in zip(key, last, strict=True)))
            )
        rows = session.execute(query).all()
        if not rows:
            return rotated
        changes = []
        for row in rows:
            old = bytes(row[-1])
            aad = kind.associated_data([key_text(value) for value in row[:-1]])
            plaintext = keyring.decrypt(old, aad=b"" if keyring.version(old) == UNBOUND else aad)
            change = {f"pgwarden_key_{i}": value for i, value in enumerate(row[:-1])}
            change["pgwarden_token"] = keyring.encrypt(plaintext, aad=aad)
            changes.append(change)
        session.execute(write, changes)
        rotated += len(rows)
        last = tuple(rows[-1][:-1])
