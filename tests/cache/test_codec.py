"""A value that comes back from the cache is the very value the database gave."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from cache_support import Course, Mood
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from pgwarden.cache import QueryCache, UnserializableValue, cached
from pgwarden.cache.codec import decode, encode

# One column per type, with edge values: what psycopg returns for each, untouched.
MATRIX = """
SELECT
  1.10::numeric AS num, 'NaN'::numeric AS num_nan, -0.0::numeric AS num_negzero,
  12345678901234567890.123456789::numeric(40, 9) AS num_wide,
  'NaN'::float8 AS f_nan, '-Infinity'::float8 AS f_inf, '-0'::float8 AS f_negzero,
  1.5::float4 AS f4, 9223372036854775807::bigint AS big, 7::smallint AS small,
  true AS yes, NULL::int AS nothing, 'ab '::char(5) AS padded, B'101'::bit(3) AS bits,
  B'1'::varbit AS varbits, 12.34::money AS cash, 'héllo, \\n "world"'::text AS words,
  '2026-03-29 02:30:00+02'::timestamptz AS at_tz, '2026-03-29 02:30:00.000001'::timestamp
  AS at, '0001-01-01'::date AS day,
  '23:59:59.999999'::time AS t, '12:00:00+05:30'::timetz AS t_tz,
  '1 year 2 months 3 days 04:05:06.7'::interval AS span, '-1 day'::interval AS back,
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, '\\x00ff'::bytea AS raw,
  ARRAY[1, NULL, 3] AS ints, ARRAY['a', 'b,c', NULL] AS texts,
  ARRAY[[1, 2], [3, 4]] AS grid, '{"a": [1, 2.5, null, {"b": "c"}], "": true}'::jsonb AS doc,
  '[1, "x"]'::json AS doc_list, '"just a string"'::jsonb AS doc_str,
  int4range(1, 10) AS r_int, 'empty'::int4range AS r_empty, '[1.5,)'::numrange AS r_num,
  tstzrange('2026-01-01', '2026-02-01', '[]') AS r_ts, daterange(NULL, '2026-01-01') AS r_day,
  '{[1,3), [5,7)}'::int4multirange AS mr, '192.168.0.1'::inet AS ip,
  '10.0.0.0/8'::cidr AS net, '::1/128'::inet AS ip6, '192.168.0.1/24'::inet AS iface,
  '08:00:2b:01:02:03'::macaddr AS mac, 'a & b'::tsquery AS q, '(1,2)'::point AS pt,
  ROW(1, 'x') AS rec
"""


def same(a: object, b: object) -> bool:
    """Say whether two results hold equal values of the very same types (NaN included)."""
    return repr(a) == repr(b) and type(a) is type(b)


def test_every_type_comes_back_identical(cache: QueryCache, engine: Engine) -> None:
    statement = sa.text(MATRIX)
    with engine.connect() as conn:
        conn.execute(sa.text("SET TIME ZONE 'Europe/Paris'"))
        direct = conn.execute(statement).one()
        missed = cache.execute(conn, statement).one()
        hit = cache.execute(conn, statement).one()
    assert cache.stats().hits == 1
    for name, value in direct._mapping.items():
        assert same(missed._mapping[name], value), name
        assert same(hit._mapping[name], value), name


def test_typed_columns_come_back_identical(cache: QueryCache, engine: Engine) -> None:
    statement = sa.select(
        sa.cast(sa.literal("2.50"), sa.Numeric(10, 2)).label("n"),
        sa.cast(sa.literal('{"k": [1, {"x": null}]}'), pg.JSONB).label("j"),
        sa.cast(sa.literal("[1,5)"), pg.INT4RANGE).label("r"),
        sa.cast(sa.literal("{[1,2),[4,6)}"), pg.INT4MULTIRANGE).label("mr"),
        sa.cast(sa.literal("{1,2}"), pg.ARRAY(sa.Integer)).label("a"),
        sa.cast(sa.literal("2026-01-01 00:00:00+00"), sa.DateTime(timezone=True)).label("ts"),
        sa.cast(sa.literal("busy"), sa.Enum(Mood, name="mood")).label("mood"),
    )
    with engine.connect() as conn:
        direct = conn.execute(statement).one()
        cache.execute(conn, statement).one()
        hit = cache.execute(conn, statement).one()
    assert cache.stats().hits == 1
    for name, value in direct._mapping.items():
        assert same(hit._mapping[name], value), name


def test_mapped_objects_keep_their_types(
    cache: QueryCache, engine: Engine, sessions: sessionmaker[Session]
) -> None:
    with Session(engine) as session:
        session.add(Course(id=5, title="Ünïcode", mood=Mood.busy))
        session.commit()
    for _ in range(2):
        with sessions() as session:
            course = session.scalars(sa.select(Course).options(cached())).one()
            assert course.mood is Mood.busy and course.title == "Ünïcode"
    assert cache.stats().hits == 1


def test_a_value_the_cache_cannot_keep_is_a_clear_error(cache: QueryCache, engine: Engine) -> None:
    class Opaque(sa.types.TypeDecorator[object]):
        impl = sa.Text
        cache_ok = True

        def process_result_value(self, value: object, dialect: object) -> object:
            return object()

    statement = sa.select(sa.cast(sa.literal("x"), Opaque()).label("o"))
    with engine.connect() as conn, pytest.raises(UnserializableValue) as caught:
        cache.execute(conn, statement)
    assert "object" in str(caught.value) and caught.value.hint
    assert cache.stats().fills == 0


def test_a_tampered_entry_is_read_as_a_miss_never_run() -> None:
    assert decode(encode({"a": b"\x00"})) == {"a": b"\x00"}
    looks_like_a_tag = {"\x00dec": "1", 1: (2, "x")}
    assert decode(encode(looks_like_a_tag)) == looks_like_a_tag
    with pytest.raises(ValueError, match="unknown tag"):
        decode('{"\\u0000pickle": "gASV"}')
    with pytest.raises(ValueError, match="not known"):
        decode('{"\\u0000enum": ["os:system", "x"]}')


def test_the_counters_are_published_to_prometheus(cache: QueryCache, engine: Engine) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from pgwarden.cache.metrics import publish_metrics

    registry = CollectorRegistry()
    publish_metrics(cache, name="app", registry=registry)
    with engine.connect() as conn:
        for _ in range(2):
            cache.execute(conn, sa.select(sa.literal(1)))
    text = generate_latest(registry).decode()
    assert 'pgwarden_cache_hits_total{cache="app"} 1.0' in text
    assert 'pgwarden_cache_lookup_seconds_count{cache="app"} 2.0' in text
