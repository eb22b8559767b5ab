"""Transforms: deterministic anonymization, keys that still join, conversions, spec files."""

from __future__ import annotations

import hmac
import re
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from faker import Faker
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwarden.errors import UserError
from pgwarden.transfer import TransformSpec, compile_transforms, load_transforms
from pgwarden.transfer.anonymize import _hashes, _values
from pgwarden.transfer.anonymize._prf import ValuePRF
from pgwarden.transfer.bundle import BundleColumn, BundleForeignKey, TableSchema
from pgwarden.transfer.copytext import format_copy_row

USERS = TableSchema(
    "public", "users",
    (BundleColumn("id", "bigint", False), BundleColumn("email", "character varying(40)", False),
     BundleColumn("name", "text", True), BundleColumn("phone", "text", True),
     BundleColumn("born", "date", True), BundleColumn("seen_at", "timestamp with time zone", True),
     BundleColumn("score", "numeric(6,2)", True), BundleColumn("visits", "integer", True),
     BundleColumn("token", "uuid", True)),
    ("id",), (),
)  # fmt: skip
POSTS = TableSchema(
    "public", "posts",
    (BundleColumn("id", "integer", False), BundleColumn("author_id", "bigint", True),
     BundleColumn("author_email", "text", True)),
    ("id",),
    (BundleForeignKey(("author_id",), "public", "users", ("id",)),),
)  # fmt: skip
REPLIES = TableSchema(
    "public", "replies",
    (BundleColumn("id", "integer", False), BundleColumn("post_author", "bigint", True)),
    ("id",),
    (BundleForeignKey(("post_author",), "public", "posts", ("author_id",)),),
)  # fmt: skip
ROW = {
    "id": "42", "email": " Ada@Example.COM ", "name": "Ada Lovelace", "phone": "020 7946 0018",
    "born": "1815-12-10", "seen_at": "2026-03-04 05:06:07.5+00", "score": "12.30",
    "visits": "7", "token": "0b7c9d2e-8f6a-4c3b-9d1e-2f3a4b5c6d7e",
}  # fmt: skip


def spec(rules: dict[str, object], salt: bytes | None = b"salt-one", table: str = "public.users"):
    return TransformSpec.from_mapping({"tables": {table: rules}}, salt=salt)


def run(rules: dict[str, object], row: dict[str, object] | None = None, **kw: object) -> dict:
    return compile_transforms(spec(rules, **kw), USERS)(dict(row or ROW))  # type: ignore[arg-type]


def test_the_same_input_gives_the_same_fake_in_every_table_and_run() -> None:
    users = run({"email": "fake_email", "name": "fake_name"})
    again = run({"email": "fake_email", "name": "fake_name"})
    assert users == again
    assert users["email"] != ROW["email"] and "@example." in users["email"]
    # another table, another column: the same value gets the same fake (joins match)
    other = TransformSpec.from_mapping(
        {"tables": {"public.posts": {"author_email": "fake_email"}}}, salt=b"salt-one"
    )
    posts = compile_transforms(other, POSTS)(
        {"id": "1", "author_id": None, "author_email": ROW["email"]}
    )
    assert posts["author_email"] == users["email"]


def test_a_different_salt_gives_different_output() -> None:
    rules = {"email": "fake_email", "name": "fake_name", "id": "hash", "phone": "hash"}
    one, two = run(rules), run(rules, salt=b"salt-two")
    assert all(one[column] != two[column] for column in rules)


def test_output_is_stable_across_processes() -> None:
    code = (
        "from pgwarden.transfer.anonymize.transforms import TransformSpec, compile_transforms\n"
        "from test_transfer_transforms import USERS, ROW\n"
        "s = TransformSpec.from_mapping({'tables': {'public.users': {'email': 'fake_email',"
        " 'name': 'fake_name', 'id': 'hash', 'score': {'kind': 'noise'}}}}, salt=b'salt-one')\n"
        "print(compile_transforms(s, USERS)(dict(ROW)))\n"
    )
    here = str(Path(__file__).parent)
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True,
            env={"PYTHONPATH": here, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }  # fmt: skip
    assert len(outputs) == 1
    assert str(run({"email": "fake_email", "name": "fake_name", "id": "hash",
                    "score": {"kind": "noise"}})) + "\n" in outputs  # fmt: skip


def test_a_hashed_key_is_hashed_alike_in_every_column_referencing_it() -> None:
    rules = spec({"id": "hash"}).propagate([USERS, POSTS, REPLIES])
    user = compile_transforms(rules, USERS)(dict(ROW))
    post = compile_transforms(rules, POSTS)({"id": "1", "author_id": "42", "author_email": None})
    assert post["author_id"] == user["id"] != "42"
    assert post["id"] == "1"  # not referenced by a transformed key
    # transitively: replies.post_author references posts.author_id, which follows users.id
    reply = compile_transforms(rules, REPLIES)({"id": "9", "post_author": "42"})
    assert reply["post_author"] == user["id"]
    notes = {(n.table, n.column, n.kind) for n in rules.notes()}
    assert ("public.replies", "post_author", "hash") in notes


def test_a_transformed_referencing_column_takes_its_key_along() -> None:
    rules = TransformSpec.from_mapping(
        {"tables": {"public.replies": {"post_author": "hash"}}}, salt=b"x"
    ).propagate([USERS, POSTS, REPLIES])
    # replies.post_author -> posts.author_id -> users.id, and back down to every reference
    assert {(n.table, n.column) for n in rules.notes()} == {
        ("public.replies", "post_author"),
        ("public.posts", "author_id"),
        ("public.users", "id"),
    }
    user = compile_transforms(rules, USERS)(dict(ROW))
    reply = compile_transforms(rules, REPLIES)({"id": "9", "post_author": "42"})
    assert reply["post_author"] == user["id"] != "42"


def test_a_referencing_column_transformed_otherwise_is_refused() -> None:
    rules = TransformSpec.from_mapping(
        {"tables": {"public.users": {"id": "hash"}, "public.posts": {"author_id": "null"}}},
        salt=b"x",
    )
    with pytest.raises(UserError, match="transformed differently"):
        rules.propagate([USERS, POSTS])


def test_integer_hashes_are_a_permutation_keeping_sign_and_kind() -> None:
    function = compile_transforms(spec({"visits": "hash"}), USERS)
    outputs = {function({"visits": str(n)})["visits"] for n in range(5000)}
    assert len(outputs) == 5000
    assert all(0 <= int(value) < 2**31 for value in outputs)
    assert int(function({"visits": "-5"})["visits"]) < 0
    assert isinstance(function({"visits": 5})["visits"], int)  # a JSONL number stays one
    token = run({"token": "hash"})["token"]
    assert len(token) == 36 and token.count("-") == 4 and token != ROW["token"]


def test_fake_emails_are_unique_and_fit_the_column() -> None:
    function = compile_transforms(spec({"email": "fake_email"}), USERS)
    emails = {function({"email": f"user{n}@corp.example"})["email"] for n in range(3000)}
    assert len(emails) == 3000
    assert all(len(email) <= 40 for email in emails)  # character varying(40)


def test_mask_null_constant_and_normalizers() -> None:
    row = run({
        "phone": [{"kind": "phone", "country_code": "44"}, {"kind": "mask", "keep": 4}],
        "email": "email", "name": {"kind": "constant", "value": "someone"},
        "token": "null", "born": {"kind": "date_format", "format": "%d/%m/%Y"},
    })  # fmt: skip
    assert row["phone"] == "*********0018"  # +442079460018, all but 4 hidden
    assert row["email"] == "ada@example.com"
    assert row["name"] == "someone" and row["token"] is None
    assert row["born"] == "10/12/1815"
    assert run({"name": "upper"})["name"] == "ADA LOVELACE"
    assert run({"name": "constant"}, {"name": None})["name"] is None  # NULL stays NULL


def test_noise_is_bounded_deterministic_and_keeps_the_form() -> None:
    rules = {
        "score": {"kind": "noise", "ratio": 0.5}, "visits": {"kind": "noise", "amount": 3},
        "born": {"kind": "noise", "days": 10}, "seen_at": {"kind": "noise", "days": 1},
    }  # fmt: skip
    row = run(rules)
    assert row == run(rules)
    assert abs(Decimal(row["score"]) - Decimal("12.30")) <= Decimal("6.15")
    assert Decimal(row["score"]).as_tuple().exponent == -2
    assert abs(int(row["visits"]) - 7) <= 3
    born = datetime.fromisoformat(row["born"])
    assert abs(born - datetime(1815, 12, 10)) <= timedelta(days=10) and len(row["born"]) == 10
    seen = datetime.fromisoformat(row["seen_at"])
    assert abs(seen - datetime.fromisoformat(ROW["seen_at"])) <= timedelta(days=1)
    assert row["seen_at"].endswith("+00")
    json_row = run(rules, {"score": Decimal("12.30"), "visits": 7, "born": None, "seen_at": None})
    assert isinstance(json_row["score"], Decimal) and isinstance(json_row["visits"], int)
    assert run(rules, {"seen_at": "infinity"})["seen_at"] == "infinity"


def test_renames_change_the_output_columns() -> None:
    function = compile_transforms(
        spec({"name": [{"kind": "rename", "to": "full_name"}, "upper"]}), USERS
    )
    assert function.columns[:3] == ("id", "email", "full_name")
    assert function(dict(ROW))["full_name"] == "ADA LOVELACE"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"email": "scramble"}, "unknown kind 'scramble'"),
        ({"nope": "null"}, "has no column(s) nope"),
        ({"email": "null"}, "is NOT NULL"),
        ({"name": {"kind": "fake", "provider": "_secret"}}, "Faker has no provider"),
        ({"name": {"kind": "fake"}}, "fake needs `provider`"),
        ({"name": "rename"}, "rename needs `to`"),
        ({"name": {"kind": "python", "function": "os:nope"}}, "cannot import 'os:nope'"),
    ],
)
def test_mistakes_in_rules_are_user_errors(rules: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(rules)


def test_a_keyed_rule_without_a_salt_says_where_the_salt_comes_from() -> None:
    rules = spec({"email": "fake_email"}, salt=None).with_salt(env="UNSET_SALT_VAR")
    with pytest.raises(UserError, match="UNSET_SALT_VAR"):
        compile_transforms(rules, USERS)
    compile_transforms(spec({"email": "email"}, salt=None), USERS)  # unkeyed: no salt needed


def test_spec_files_in_toml_yaml_and_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SALT", "pepper")
    toml = tmp_path / "t.toml"
    toml.write_text(
        'salt_env = "MY_SALT"\n[tables."public.users"]\nemail = "fake_email"\n'
        'phone = ["phone", { kind = "mask", keep = 2 }]\n'
    )
    yaml = tmp_path / "t.yaml"
    yaml.write_text(
        "salt_env: MY_SALT\ntables:\n  public.users:\n    email: fake_email\n"
        "    phone: [phone, {kind: mask, keep: 2}]\n"
    )
    python = tmp_path / "t.py"
    python.write_text(
        "def shout(value):\n    return None if value is None else value.upper() + '!'\n"
        "TRANSFORMS = {'salt_env': 'MY_SALT', 'tables': {'users': {'email': 'fake_email',"
        " 'phone': ['phone', {'kind': 'mask', 'keep': 2}], 'name': shout}}}\n"
    )
    results = [
        compile_transforms(load_transforms(f), USERS)(dict(ROW)) for f in (toml, yaml, python)
    ]
    assert results[0] == results[1]
    assert results[2]["email"] == results[0]["email"] and results[2]["name"] == "ADA LOVELACE!"
    assert "pepper" not in repr(load_transforms(toml))
    # the salt comes from the variable the caller names, over the file's
    monkeypatch.setenv("OTHER_SALT", "other")
    other = compile_transforms(load_transforms(toml, salt_env="OTHER_SALT"), USERS)(dict(ROW))
    assert other["email"] != results[0]["email"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[tables\n")
    with pytest.raises(UserError, match="malformed"):
        load_transforms(bad)


# -- the export's fast path: functions of raw COPY text fields ---------------------------

TRICKY = [
    ["42", " Ada@Example.COM ", "Ada Lovelace", "020 7946 0018", "1815-12-10",
     "2026-03-04 05:06:07.5+00", "12.30", "7", "0b7c9d2e-8f6a-4c3b-9d1e-2f3a4b5c6d7e"],
    ["-9", "tab\there@x.org", None, None, None, None, None, "-2147483647", None],
    ["0", "back\\slash\nnew\rline@é.example", "Zoë \\ O'Brien\t", "+44 (0)20", "infinity",
     "not a date", "NaN", "0", "00000000-0000-0000-0000-000000000000"],
    ["9223372036854775807", "a" * 60 + "@long.example", "", "", "2000-02-29",
     "1999-12-31 23:59:59+05:30", "-0.01", "2147483647", "ffffffff-ffff-ffff-ffff-ffffffffffff"],
]  # fmt: skip


def rewrite(transform, line: bytes) -> bytes:  # type: ignore[no-untyped-def]
    fields = line.split(b"\t")
    for index, function in transform.copy_fields:
        (fields[index],) = function([fields[index]])
    return b"\t".join(fields)


@pytest.mark.parametrize(
    "rules",
    [
        {
            "id": "hash",
            "email": "fake_email",
            "name": "fake_name",
            "visits": "hash",
            "token": "hash",
        },
        {
            "email": {"kind": "hash", "length": 12},
            "name": ["strip", "title"],
            "born": "null",
            "phone": [{"kind": "phone", "country_code": "44"}, {"kind": "mask", "keep": 2}],
        },
        {
            "name": {"kind": "constant", "value": "tab\tand \\ slash"},
            "visits": "null",
            "score": {"kind": "noise", "ratio": 0.5},
            "seen_at": {"kind": "noise", "days": 3},
            "born": {"kind": "date_format", "format": "%d/%m/%Y"},
        },
        {
            "name": {"kind": "fake", "provider": "city"},
            "phone": "fake_phone",
            "email": {"kind": "fake", "provider": "first_name", "locale": "de_DE"},
        },
        {"name": lambda value: None if value is None else len(value)},  # returns an int
        {
            "name": {"kind": "mask", "keep": 3, "char": "\t"},
            "email": {"kind": "mask", "keep": 0},
            "phone": {"kind": "mask", "keep": 40},
        },
    ],
)
def test_copy_fields_do_what_the_value_functions_do(rules: dict[str, object]) -> None:
    transform = compile_transforms(spec(rules), USERS)
    assert transform.copy_fields
    for values in TRICKY:
        line = format_copy_row(values)[:-1]
        expected = format_copy_row(
            [
                v if v is None or isinstance(v, str) else str(v)
                for v in transform.apply(list(values))
            ]
        )[:-1]
        assert rewrite(transform, line) == expected
    # a whole column at a time, as the export does, gives the same fields
    lines = [format_copy_row(values)[:-1].split(b"\t") for values in TRICKY]
    for index, function in transform.copy_fields:
        column = function([fields[index] for fields in lines])
        assert column == [rewrite(transform, b"\t".join(f)).split(b"\t")[index] for f in lines]


def assert_column_equals_one_by_one(transform: Any, values: list[str | None]) -> None:
    """Check the transform's one column function against its value-by-value result."""
    ((index, column),) = transform.copy_fields
    fields = [format_copy_row([value])[:-1] for value in values]
    expected = [
        format_copy_row([transform.apply([None] * index + [value] + [None] * 8)[index]])[:-1]
        for value in values
    ]
    assert column(fields) == expected


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.text(max_size=30)), min_size=1, max_size=300),
    rule=st.sampled_from(
        [
            "fake_email",
            "fake_name",
            {"kind": "fake", "provider": "user_name"},
            {"kind": "fake", "provider": "last_name", "locale": "de_DE"},
            {"kind": "fake", "provider": "name", "locale": "fr_FR"},
        ]
    ),
)
def test_fakes_a_column_at_a_time_equal_one_value_at_a_time(
    values: list[str | None], rule: object
) -> None:
    transform = compile_transforms(spec({"name": rule}), USERS)
    assert_column_equals_one_by_one(transform, values)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.text(max_size=30), st.text("abc xyz0123", max_size=30)),
        min_size=1, max_size=200,
    ),
    keep=st.integers(0, 12),
    char=st.sampled_from(["*", "x", "\t", "•"]),
)  # fmt: skip
def test_masks_a_column_at_a_time_equal_one_value_at_a_time(
    values: list[str | None], keep: int, char: str
) -> None:
    transform = compile_transforms(
        spec({"name": {"kind": "mask", "keep": keep, "char": char}}), USERS
    )
    assert_column_equals_one_by_one(transform, values)


def test_the_keyed_states_give_hmac_sha256() -> None:
    for salt in (b"s", b"x" * 64, b"y" * 65, bytes(range(200))):
        mac = _values.Mac(salt, "fake_email")
        for value in ("", "a", "Zoë\t\\", "x" * 1000):
            assert mac(value.encode()) == _values.digest(salt, "fake_email", value)
            assert mac(value.encode()) == hmac.digest(
                salt, b"fake_email\0" + value.encode(), "sha256"
            )


def test_the_value_prf_is_a_length_prefixed_cbc_mac_stretched() -> None:
    prf = ValuePRF(b"key")

    def reference(value: bytes) -> bytes:  # CBC encryption's last block is the CBC-MAC
        encoded = len(value).to_bytes(4, "little") + value
        encoded += bytes(-len(encoded) % 16)
        cbc = Cipher(algorithms.AES(prf.mac_key), modes.CBC(bytes(16))).encryptor()
        tag = cbc.update(encoded)[-16:]
        return prf.stretch.block(tag + tag[:15] + bytes([tag[15] ^ 1]))

    # lengths on and around block edges, past WIDE blocks, and NUL and high bytes
    sizes = [0, 1, 11, 12, 13, 27, 28, 29, 251, 252, 253, 300, 5000]
    values = [bytes((7 * i + size) % 256 for i in range(size)) for size in sizes]
    values += [b"x" * 12, b"x" * 12 + b"\0", b"\0" * 12]  # the length keeps these apart
    column = prf.many(values)
    assert [row.tobytes() for row in column] == [reference(v) for v in values]
    assert [prf.one(v) for v in values] == [reference(v) for v in values]
    assert len({row.tobytes() for row in column}) == len(values)
    assert ValuePRF(b"other key").one(b"a") != prf.one(b"a")


@pytest.mark.parametrize("bits", [15, 31, 63])
def test_integer_permutation_of_an_array_equals_one_at_a_time(bits: int) -> None:
    permute = _hashes._Permutation(b"k", "public.t.n", bits)
    numbers = [0, 1, 2, (1 << bits) - 1, (1 << bits) - 2, *range(1000, 1100, 7)]
    numbers += [(n * 2654435761) % (1 << bits) for n in range(500)]
    many = permute.many(np.array(numbers, dtype=np.uint64)).tolist()
    assert many == [permute(n) for n in numbers]
    assert len(set(many)) == len(set(numbers)) and max(many) < 1 << bits


def test_integer_hashes_permute_the_whole_range_exactly() -> None:
    function = compile_transforms(
        TransformSpec.from_mapping({"tables": {"public.t": {"n": "hash"}}}, salt=b"k"),
        TableSchema("public", "t", (BundleColumn("n", "smallint", False),), ("n",), ()),
    )
    outputs = {function({"n": str(n)})["n"] for n in range(2**15)}
    assert outputs == {str(n) for n in range(2**15)}  # a bijection of 0..32767
    assert function({"n": "-32767"})["n"].startswith("-")
    ((_, column),) = function.copy_fields
    assert column([b"-5", b"\\N", b"7"]) == [
        function({"n": "-5"})["n"].encode(),
        b"\\N",
        function({"n": "7"})["n"].encode(),
    ]
    assert column([b"7", b"32767"]) == [function({"n": n})["n"].encode() for n in ("7", "32767")]
    with pytest.raises(UserError, match="out of range"):  # its magnitude needs 16 bits
        column([b"1", b"-32768"])


def test_fakes_come_from_the_locale_and_look_the_part() -> None:
    name = compile_transforms(spec({"name": "fake_name"}), USERS)
    names = {name({"name": f"person {n}"})["name"] for n in range(2000)}
    assert len(names) > 1900 and all(2 <= len(n.split()) <= 5 for n in names)
    email = compile_transforms(spec({"email": "fake_email"}), USERS)
    for n in range(200):
        assert re.fullmatch(
            r"[a-z0-9._-]+\.[0-9a-f]{8}@example\.(com|net|org)",
            email({"email": f"user{n}@corp.example"})["email"],
        )
    german = spec({"name": {"kind": "fake", "provider": "last_name", "locale": "de_DE"}})
    surnames = {compile_transforms(german, USERS)({"name": str(n)})["name"] for n in range(300)}
    from faker.providers.person.de_DE import Provider

    assert surnames <= set(Provider.last_names)


def test_other_providers_are_faker_seeded_by_the_digest() -> None:
    rules = spec({"name": {"kind": "fake", "provider": "city"}})
    city = compile_transforms(rules, USERS)({"name": "Ada"})["name"]
    faker = Faker()
    faker.seed_instance(int.from_bytes(_values.digest(b"salt-one", "fake:city", "Ada")[:8], "big"))
    assert city == faker.city()
