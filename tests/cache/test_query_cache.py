"""The cache answers from Redis, and never with a value older than the last commit."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from cache_support import Counter, Course, Label, Lesson, read_counter, write_counter
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from pgwarden.cache import CachePolicy, NotCacheable, QueryCache, cached


@pytest.fixture
def courses(engine: Engine) -> None:
    with Session(engine) as session:
        python = Course(id=1, title="Python", labels=[Label(id=1, name="code")])
        python.lessons = [Lesson(id=1, title="Intro"), Lesson(id=2, title="Loops")]
        session.add_all([python, Course(id=2, title="SQL")])
        session.add_all([Counter(key=k, value=0) for k in range(3)])
        session.commit()


def statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


TITLES = sa.select(Course.id, Course.title).order_by(Course.id).options(cached(ttl=60))


@pytest.mark.usefixtures("courses")
def test_a_second_read_comes_from_redis(cache: QueryCache, engine: Engine) -> None:
    with engine.connect() as conn:
        first = cache.execute(conn, TITLES).all()
        seen = statements(engine)
        second = cache.execute(conn, TITLES).all()
    assert first == second == [(1, "Python"), (2, "SQL")]
    assert seen == []
    assert cache.stats().hits == 1 and cache.stats().misses == 1


@pytest.mark.usefixtures("courses")
@pytest.mark.parametrize("how", ["orm", "core", "text"])
def test_a_commit_invalidates_whatever_wrote(
    cache: QueryCache, engine: Engine, sessions: sessionmaker[Session], how: str
) -> None:
    assert read_counter(sessions, 1) == 0
    write_counter(engine, 1, 5, how)
    assert read_counter(sessions, 1) == 5
    assert read_counter(sessions, 2) == 0  # another key, cached apart


@pytest.mark.usefixtures("courses")
def test_a_rollback_invalidates_nothing(cache: QueryCache, engine: Engine) -> None:
    with engine.connect() as conn:
        cache.execute(conn, TITLES).all()
    with engine.connect() as conn:
        conn.execute(sa.text("UPDATE course SET title = 'x'"))
        conn.rollback()
    before = cache.stats().invalidations
    with engine.connect() as conn:
        assert cache.execute(conn, TITLES).all()[0].title == "Python"
    assert cache.stats().hits == 1 and cache.stats().invalidations == before


@pytest.mark.usefixtures("courses")
def test_a_transaction_reads_its_own_writes(cache: QueryCache, engine: Engine) -> None:
    with engine.connect() as conn:
        cache.execute(conn, TITLES).all()
    with engine.begin() as conn:
        conn.execute(sa.update(Course).where(Course.id == 1).values(title="Rust"))
        assert cache.execute(conn, TITLES).all()[0].title == "Rust"
    assert cache.stats().bypasses == 1
    with engine.connect() as conn:
        assert cache.execute(conn, TITLES).all()[0].title == "Rust"


@pytest.mark.usefixtures("courses")
def test_a_session_sees_its_pending_changes(
    cache: QueryCache, sessions: sessionmaker[Session]
) -> None:
    assert read_counter(sessions, 0) == 0
    with sessions() as session:
        session.get(Counter, 0).value = 9  # type: ignore[union-attr]
        stmt = sa.select(Counter.value).where(Counter.key == 0).options(cached())
        assert session.scalar(stmt) == 9  # autoflushed, and the cache bypassed
        session.rollback()
    assert read_counter(sessions, 0) == 0


@pytest.mark.usefixtures("courses")
def test_repeatable_read_bypasses_the_cache(cache: QueryCache, engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        cache.execute(conn, TITLES).all()
        cache.execute(conn, TITLES).all()
    assert cache.stats().bypasses == 2 and cache.stats().fills == 0


@pytest.mark.usefixtures("courses")
@pytest.mark.parametrize("loader", [joinedload, selectinload])
def test_orm_objects_come_back_with_their_relationships(
    cache: QueryCache, engine: Engine, sessions: sessionmaker[Session], loader: object
) -> None:
    stmt = (
        sa.select(Course)
        .options(loader(Course.lessons), selectinload(Course.labels), cached())  # type: ignore[operator]
        .order_by(Course.id)
    )

    def shape() -> list[tuple[str, list[str], list[str]]]:
        with sessions() as session:
            found = session.scalars(stmt).unique().all()
            seen = statements(engine)
            shaped = [
                (c.title, [x.title for x in c.lessons], [x.name for x in c.labels]) for c in found
            ]
            assert seen == []  # loaded, nothing lazy left
            return shaped

    expected = [("Python", ["Intro", "Loops"], ["code"]), ("SQL", [], [])]
    assert [shape() for _ in range(3)] == [expected] * 3
    assert cache.stats().hits >= 1
    with sessions() as session:  # the secondary table alone changes
        session.execute(sa.delete(sa.table("tagging")))
        session.commit()
    assert shape()[0][2] == []


@pytest.mark.usefixtures("courses")
def test_a_cached_object_merges_into_the_session(
    cache: QueryCache, sessions: sessionmaker[Session]
) -> None:
    stmt = sa.select(Course).where(Course.id == 1).options(cached())
    with sessions() as session:
        session.scalars(stmt).one()
    with sessions() as session:
        course = session.scalars(stmt).one()
        assert course in session and not session.dirty
        course.title = "Changed"
        session.commit()
    with sessions() as session:
        assert session.scalars(stmt).one().title == "Changed"


@pytest.mark.usefixtures("courses")
def test_a_mapped_class_can_be_cached_whole(
    cache: QueryCache, sessions: sessionmaker[Session]
) -> None:
    cache.cache_class(Label, ttl=30)
    for _ in range(2):
        with sessions() as session:
            assert [x.name for x in session.scalars(sa.select(Label))] == ["code"]
    assert cache.stats().hits == 1


@pytest.mark.usefixtures("courses")
def test_tags_and_explicit_invalidation(cache: QueryCache, engine: Engine) -> None:
    tagged = CachePolicy(tags=("catalogue",))
    with engine.connect() as conn:
        cache.execute(conn, TITLES, policy=tagged).all()
        cache.execute(conn, TITLES, policy=tagged).all()
        assert cache.stats().hits == 1
        cache.invalidate_tags("catalogue")
        cache.execute(conn, TITLES, policy=tagged).all()
        cache.invalidate_tables("course")
        cache.execute(conn, TITLES, policy=tagged).all()
        cache.invalidate_all()
        cache.execute(conn, TITLES, policy=tagged).all()
    assert cache.stats().hits == 1 and cache.stats().misses == 4


@pytest.mark.usefixtures("courses")
def test_an_aged_entry_is_recomputed_and_warming_refreshes(
    cache: QueryCache, engine: Engine
) -> None:
    short = CachePolicy(ttl=0.05, stale_ttl=30)
    with engine.connect() as conn:
        cache.execute(conn, TITLES, policy=short).all()
        threading.Event().wait(0.1)
        conn.execute(sa.text("SELECT 1"))
        seen = statements(engine)
        cache.execute(conn, TITLES, policy=short).all()  # aged: this caller recomputes
        assert len(seen) == 1
        assert cache.warm(conn, [TITLES]) == 1
    assert cache.stats().fills == 3


@pytest.mark.usefixtures("courses")
def test_a_stampede_queries_the_database_once(
    redis_url: str, namespace: str, engine: Engine
) -> None:
    engine = sa.create_engine(engine.url, pool_size=6)
    cache = QueryCache(redis_url, namespace=namespace, lock_wait=5)
    cache.instrument(engine)
    slow = sa.select(Course.id, sa.func.pg_sleep(0.3).label("z")).options(cached())
    seen = statements(engine)
    barrier = threading.Barrier(6, timeout=30)
    answers: list[object] = []

    def read() -> None:
        with engine.connect() as conn:
            barrier.wait()
            answers.append(cache.execute(conn, slow).all())

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 6 and len({str(a) for a in answers}) == 1
    assert sum("pg_sleep" in s for s in seen) == 1
    assert cache.stats().lock_waits == 5
    engine.dispose()


def test_an_engine_not_instrumented_is_never_cached(
    redis_url: str, namespace: str, engine: Engine
) -> None:
    cache = QueryCache(redis_url, namespace=namespace)
    with engine.connect() as conn:
        cache.execute(conn, sa.select(sa.literal(1))).all()
    assert cache.stats().bypasses == 1 and cache.stats().fills == 0


@pytest.mark.parametrize(
    "statement",
    [
        sa.update(Course).values(title="x"),
        sa.select(Course).with_for_update(),
        sa.text("DELETE FROM course"),
        sa.text("SELECT * FROM course FOR SHARE"),
        sa.text("WITH gone AS (DELETE FROM course RETURNING id) SELECT * FROM gone"),
        sa.text("SELECT 1; SELECT 2"),
    ],
    ids=["update", "for-update", "text-delete", "for-share", "writing-cte", "two"],
)
def test_a_statement_that_is_no_plain_select_is_refused(
    cache: QueryCache, engine: Engine, statement: object
) -> None:
    with engine.connect() as conn, pytest.raises(NotCacheable) as caught:
        cache.execute(conn, statement)
    assert caught.value.hint
    assert cache.stats().fills == 0


def test_a_bad_policy_is_refused() -> None:
    from pgwarden import UserError

    with pytest.raises(UserError, match="ttl"):
        cached(ttl=0)
    with pytest.raises(UserError, match="tag"):
        cached(tags=[""])
