"""Transforms: rename, convert and anonymize columns as rows stream through an export or import.

Declared per table and column, in TOML, YAML (when PyYAML is installed) or Python::

    salt_env = "PGWARDEN_TRANSFER_SALT"        # where the salt comes from (the default)

    [tables."public.users"]
    email = "fake_email"
    display_name = "fake_name"
    password_hash = { kind = "constant", value = "!" }
    last_login_at = { kind = "noise", days = 7 }
    id = "hash"                                # referencing columns follow, see below

    [tables."public.profiles"]
    phone = ["phone", { kind = "mask", keep = 4 }]   # a chain, applied in order

Kinds: ``fake`` (``provider`` = a Faker method, ``locale``), the shortcuts ``fake_name``,
``fake_first_name``, ``fake_last_name``, ``fake_email``, ``fake_phone``, ``fake_address``,
``fake_company``, ``fake_username``, ``fake_city``, ``fake_url``, ``fake_ipv4``,
``fake_text``; ``hash`` (HMAC-SHA256: hex text, ``length``; a UUID for uuid columns; a
keyed permutation for integer columns, so keys stay unique); ``mask`` (``keep`` last N,
``char``); ``null``; ``constant`` (``value``, for non-NULL values); ``noise`` (numbers by
``ratio`` or ``amount``, dates and timestamps by ``days``); ``lower``, ``upper``, ``title``,
``strip``; ``email`` and ``phone`` (normalize; ``country_code``); ``date_format``
(``format``, strftime); ``rename`` (``to``); ``python`` (``function = "module:name"``, a
function of one value). Keyed kinds (fakes, hash, noise) are deterministic: the same
input gives the same output everywhere with the same salt (``namespace`` separates
uses; by default it is the kind, so ``fake_email`` of one address is the same in every
table). The salt never reaches a manifest or a log.

:meth:`TransformSpec.propagate` transforms both ends of every foreign key alike: hash
``users.id`` and every column referencing it is hashed the same way (and hashing
``content.author_id`` alone hashes ``users.id`` too), so joins survive anonymization.

The reusable interface, for export and import alike::

    spec = load_transforms("anonymize.toml").propagate(tables)
    transform = compile_transforms(spec, table)      # table: any TableSchema
    row = transform({"id": "1", "email": "a@b.c"})   # values: COPY text or JSONL values
    transform.columns                                # output column names (renames)
"""

from __future__ import annotations

import importlib
import os
import runpy
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from pgwarden._extras import importing_extra
from pgwarden.errors import UserError
from pgwarden.transfer.anonymize import _values
from pgwarden.transfer.bundle import TableSchema, TransformNote

__all__ = [
    "DEFAULT_SALT_ENV",
    "KINDS",
    "ColumnRule",
    "TableTransform",
    "TransformSpec",
    "compile_transforms",
    "load_transforms",
]

DEFAULT_SALT_ENV = "PGWARDEN_TRANSFER_SALT"

_FAKES = {
    "fake_name": "name",
    "fake_first_name": "first_name",
    "fake_last_name": "last_name",
    "fake_phone": "phone_number",
    "fake_address": "address",
    "fake_company": "company",
    "fake_username": "user_name",
    "fake_city": "city",
    "fake_url": "url",
    "fake_ipv4": "ipv4",
    "fake_text": "sentence",
}
_KEYED = {"fake", "fake_email", "hash", "noise", *_FAKES}
_PLAIN = {"mask", "null", "constant", "lower", "upper", "title", "strip", "email", "phone"}
KINDS = frozenset(_KEYED | _PLAIN | {"date_format", "rename", "python"})
# What the anonymize extra installs, by the module each is imported as.
_ANONYMIZE = {"numpy": "numpy", "faker": "Faker"}
_LENGTH_TYPES = ("character varying(", "character(")


@dataclass(frozen=True)
class ColumnRule:
    """One transform of a column: its kind and options (``fn`` for a Python function)."""

    kind: str
    options: tuple[tuple[str, Any], ...] = ()
    fn: Callable[[Any], Any] | None = field(default=None, compare=False)

    def option(self, name: str, default: Any = None) -> Any:
        """Return option ``name``, or ``default``."""
        return dict(self.options).get(name, default)

    @property
    def namespace(self) -> str:
        """Return what keys this rule's HMAC: the ``namespace`` option, else the kind."""
        explicit = self.option("namespace")
        if explicit:
            return str(explicit)
        return f"fake:{self.option('provider')}" if self.kind == "fake" else self.kind


@dataclass(frozen=True)
class TransformSpec:
    """Transforms by table (``schema.name``) and column, and the salt keyed ones use."""

    tables: Mapping[str, Mapping[str, tuple[ColumnRule, ...]]]
    salt: bytes | None = field(default=None, repr=False)
    salt_env: str = DEFAULT_SALT_ENV
    derived: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, salt: bytes | None = None) -> TransformSpec:
        """Build a spec from the parsed file (``tables``, ``salt_env``), checking every rule."""
        unknown = set(data) - {"tables", "salt_env"}
        if unknown:
            raise UserError(f"transforms: unknown key(s) {sorted(unknown)}; use tables, salt_env.")
        tables: dict[str, dict[str, tuple[ColumnRule, ...]]] = {}
        raw_tables = data.get("tables", {})
        if not isinstance(raw_tables, Mapping):
            raise UserError("transforms: `tables` must map table names to columns.")
        for table, columns in raw_tables.items():
            if not isinstance(columns, Mapping):
                raise UserError(f"transforms: {table} must map column names to transforms.")
            name = table if "." in table else f"public.{table}"
            tables[name] = {
                str(column): tuple(_rule(name, str(column), item) for item in _chain(rules))
                for column, rules in columns.items()
            }
        return cls(tables, salt=salt, salt_env=str(data.get("salt_env", DEFAULT_SALT_ENV)))

    @property
    def keyed(self) -> bool:
        """Return whether any rule needs the salt."""
        return any(
            r.kind in _KEYED for cols in self.tables.values() for rs in cols.values() for r in rs
        )

    def with_salt(self, salt: bytes | None = None, *, env: str | None = None) -> TransformSpec:
        """Return the spec with its salt: ``salt``, else the environment variable ``env``."""
        name = env or self.salt_env
        value = salt if salt is not None else os.environ.get(name, "").encode() or None
        return replace(self, salt=value, salt_env=name)

    def propagate(self, tables: Iterable[TableSchema]) -> TransformSpec:
        """Return the spec with both ends of every foreign key transformed alike.

        A transformed key is applied to every column referencing it; a transformed
        referencing column to the key it references (and so to that key's other
        references), transitively, so every join still matches. Two ends with different
        transforms of their own raise :class:`UserError`: the join would break.
        """
        result = {name: dict(columns) for name, columns in self.tables.items()}
        derived = set(self.derived)
        schemas = list(tables)

        def values(table: str, column: str) -> tuple[ColumnRule, ...]:
            return tuple(r for r in result.get(table, {}).get(column, ()) if r.kind != "rename")

        def give(table: str, column: str, rules: tuple[ColumnRule, ...]) -> None:
            mine = result.setdefault(table, {})
            renames = tuple(r for r in mine.get(column, ()) if r.kind == "rename")
            mine[column] = rules + renames
            derived.add((table, column))

        changed = True
        while changed:
            changed = False
            for table in schemas:
                for fk in table.foreign_keys:
                    for column, ref in zip(fk.columns, fk.ref_columns, strict=True):
                        child = values(table.qualified, column)
                        parent = values(fk.references, ref)
                        if child == parent:
                            continue
                        if child and parent:
                            raise UserError(
                                f"transforms: {table.qualified}.{column} references"
                                f" {fk.references}.{ref}, but is transformed differently.",
                                hint="Transform one end only; pgwarden applies it to the"
                                " other, and to every column joined to them.",
                            )
                        if parent:
                            give(table.qualified, column, parent)
                        else:
                            give(fk.references, ref, child)
                        changed = True
        return replace(self, tables=result, derived=frozenset(derived))

    def notes(self) -> list[TransformNote]:
        """Return what the manifest records: table, column and kind, nothing secret."""
        return [
            TransformNote(table, column, rule.kind)
            for table, columns in sorted(self.tables.items())
            for column, rules in sorted(columns.items())
            for rule in rules
        ]


@dataclass(frozen=True)
class TableTransform:
    """The compiled transforms of one table: call it with a row dict, get the new row dict.

    ``columns`` are the output column names in order (after renames); ``types`` their
    types, as the manifest records them; ``identity`` is true when nothing changes.
    :meth:`apply` does the same to a list of values in the table's column order, without
    building a dict; :attr:`copy_fields` to raw COPY text fields.
    """

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    steps: tuple[tuple[str, str, tuple[_values.ValueFunction, ...]], ...]
    positions: tuple[tuple[int, tuple[_values.ValueFunction, ...]], ...] = ()

    @property
    def identity(self) -> bool:
        """Return whether the transform leaves every row as it is."""
        return not self.steps

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for source, target, functions in self.steps:
            value = out.pop(source) if source in out else None
            for function in functions:
                value = function(value)
            out[target] = value
        return out

    def apply(self, values: list[Any]) -> list[Any]:
        """Transform ``values`` (the table's columns, in order) in place, and return them."""
        for index, functions in self.positions:
            value = values[index]
            for function in functions:
                value = function(value)
            values[index] = value
        return values

    @cached_property
    def copy_fields(self) -> tuple[tuple[int, _values.ColumnFunction], ...]:
        """Return, per changed column, its position and a function of its raw COPY text fields.

        Each function takes a list of the column's fields as COPY wrote them (escaped,
        ``\\N`` for NULL) and returns the new fields the same way: what :meth:`apply`
        does to the decoded values, without decoding fields no rule reads, a column at
        a time. The export's hot loop uses them.
        """
        return tuple(
            (index, _values.copy_column_function(functions))
            for index, functions in self.positions
            if functions
        )


def load_transforms(path: str | Path, *, salt_env: str | None = None) -> TransformSpec:
    """Read a transforms file (``.toml``, ``.yaml``/``.yml``, ``.py``) and take its salt.

    A ``.py`` file defines ``TRANSFORMS``, a mapping of the same shape as the TOML, whose
    rules may also be plain functions of one value.
    """
    file = Path(path)
    try:
        if file.suffix == ".toml":
            data: Any = tomllib.loads(file.read_text())
        elif file.suffix in (".yaml", ".yml"):
            data = _load_yaml(file)
        elif file.suffix == ".py":
            data = runpy.run_path(str(file)).get("TRANSFORMS")
        else:
            raise UserError(
                f"transforms: {file} is not .toml, .yaml or .py.", hint="Rename the file."
            )
    except OSError as exc:
        raise UserError(f"cannot read transforms file {file}: {exc.strerror}.") from exc
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise UserError(f"transforms file {file} is malformed: {exc}") from exc
    if not isinstance(data, Mapping):
        raise UserError(f"transforms file {file} holds no mapping of tables.")
    return TransformSpec.from_mapping(data).with_salt(env=salt_env)


def _load_yaml(file: Path) -> Any:
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError as exc:
        raise UserError(
            "YAML transforms need PyYAML, which is not installed.",
            hint="pip install pyyaml, or write the transforms in TOML.",
        ) from exc
    try:
        return yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from exc


def compile_transforms(spec: TransformSpec, table: TableSchema) -> TableTransform:
    """Return the callable applying ``spec``'s rules for ``table`` to one row dict.

    Checks the rules against the table now: unknown columns, ``null`` on a NOT NULL
    column, a keyed rule without a salt, all raise :class:`UserError`. Values may be COPY
    text or JSONL values; each function returns the kind it was given.
    """
    rules = spec.tables.get(table.qualified, {})
    types = {column.name: column.type for column in table.columns}
    nullable = {column.name: column.nullable for column in table.columns}
    if unknown := sorted(set(rules) - set(types)):
        raise UserError(
            f"transforms: {table.qualified} has no column(s) {', '.join(unknown)}.",
            hint=f"Its columns: {', '.join(types)}.",
        )
    names = {name: name for name in types}
    steps = []
    for column, chain in rules.items():
        functions: list[_values.ValueFunction] = []
        for rule in chain:
            if rule.kind == "rename":
                names[column] = str(rule.option("to"))
                continue
            if rule.kind == "null" and not nullable[column]:
                raise UserError(f"transforms: {table.qualified}.{column} is NOT NULL; null it not.")
            functions.append(_function(spec, rule, types[column], f"{table.qualified}.{column}"))
        limit = _length_limit(types[column])
        if limit is not None and functions:
            functions.append(_truncate(limit))
        if functions or names[column] != column:
            steps.append((column, names[column], tuple(functions)))
    output = [names[name] for name in types]
    if len(set(output)) != len(output):
        raise UserError(f"transforms: renames in {table.qualified} give two columns one name.")
    order = list(types)
    positions = tuple((order.index(source), functions) for source, _, functions in steps)
    return TableTransform(
        table.qualified, tuple(output), tuple(types.values()), tuple(steps), positions
    )


def _chain(rules: Any) -> Sequence[Any]:
    return rules if isinstance(rules, list | tuple) else [rules]


def _rule(table: str, column: str, item: Any) -> ColumnRule:
    where = f"transforms: {table}.{column}"
    if callable(item):
        return ColumnRule("python", (("function", getattr(item, "__name__", "function")),), item)
    if isinstance(item, str):
        item = {"kind": item}
    if not isinstance(item, Mapping) or "kind" not in item:
        raise UserError(f"{where}: write a kind, or a table with `kind` and options.")
    kind = str(item["kind"])
    if kind not in KINDS:
        raise UserError(
            f"{where}: unknown kind {kind!r}.", hint=f"Kinds: {', '.join(sorted(KINDS))}."
        )
    options = tuple(sorted((str(k), v) for k, v in item.items() if k != "kind"))
    rule = ColumnRule(kind, options)
    if kind == "rename" and not isinstance(rule.option("to"), str):
        raise UserError(f"{where}: rename needs `to`, the new column name.")
    if kind == "fake" and not isinstance(rule.option("provider"), str):
        raise UserError(f"{where}: fake needs `provider`, a Faker method name (name, city).")
    if kind == "date_format" and not isinstance(rule.option("format"), str):
        raise UserError(f"{where}: date_format needs `format`, a strftime pattern.")
    if kind == "python":
        return replace(rule, fn=_import_function(where, str(rule.option("function", ""))))
    return rule


def _import_function(where: str, spec: str) -> Callable[[Any], Any]:
    module, _, name = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UserError(
            f"{where}: cannot import {spec!r}: {exc}.", hint="Write module:function."
        ) from exc
    if not callable(function):
        raise UserError(f"{where}: {spec!r} is not a function.")
    return function  # type: ignore[no-any-return]


def _function(
    spec: TransformSpec, rule: ColumnRule, column_type: str, where: str
) -> _values.ValueFunction:
    kind = rule.kind
    if kind == "python":
        assert rule.fn is not None
        return rule.fn
    # Fakes, keyed hashes and masks run on numpy and Faker: the anonymize extra, imported
    # only here, so exports and imports without transforms work without it.
    with importing_extra("anonymize", "Transforms need {package}", _ANONYMIZE):
        from pgwarden.transfer.anonymize import _fakes, _hashes
    if kind in _KEYED and not spec.salt:
        raise UserError(
            f"transforms: {where} uses {kind}, which needs a salt, and ${spec.salt_env} is empty.",
            hint=f"export {spec.salt_env}=<a long random secret>, or pass --salt-env NAME.",
        )
    salt, namespace = spec.salt or b"", rule.namespace
    if kind in _FAKES or kind == "fake":
        provider = _FAKES.get(kind) or str(rule.option("provider"))
        return _fakes.fake(salt, namespace, provider, rule.option("locale"))
    simple: dict[str, _values.ValueFunction] = {
        "lower": lambda v: None if v is None else str(v).lower(),
        "upper": lambda v: None if v is None else str(v).upper(),
        "title": lambda v: None if v is None else str(v).title(),
        "strip": lambda v: None if v is None else str(v).strip(),
        "email": _values.normalize_email,
        "null": _values.Null(),
    }
    if kind in simple:
        return simple[kind]
    if kind == "fake_email":
        return _fakes.fake_email(salt, namespace)
    if kind == "hash":
        return _hashes.keyed_hash(salt, namespace, column_type, rule.option("length"))
    if kind == "noise":
        return _values.noise(
            salt, namespace, column_type,
            ratio=rule.option("ratio"), amount=rule.option("amount"), days=rule.option("days"),
        )  # fmt: skip
    if kind == "mask":
        return _values.mask(int(rule.option("keep", 4)), str(rule.option("char", "*")))
    if kind == "constant":
        return _values.Constant(rule.option("value"))
    if kind == "phone":
        return _values.normalize_phone(rule.option("country_code"))
    assert kind == "date_format"
    return _values.reformat_date(str(rule.option("format")))


def _length_limit(column_type: str) -> int | None:
    if column_type.startswith(_LENGTH_TYPES) and column_type.endswith(")"):
        return int(column_type[column_type.index("(") + 1 : -1])
    return None


def _truncate(limit: int) -> _values.ValueFunction:
    return _values.Truncate(limit)
