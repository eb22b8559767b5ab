"""N+1 detection on a sync engine with plain models."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)

from pgwarden import observe
from pgwarden_test_support import line_of


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    posts: Mapped[list[Post]] = relationship(back_populates="author")


class Post(Base):
    __tablename__ = "post"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(sa.ForeignKey("author.id"))
    title: Mapped[str]
    author: Mapped[Author] = relationship(back_populates="posts")


@pytest.fixture
def engine(pg_engine: Engine) -> Iterator[Engine]:
    Base.metadata.create_all(pg_engine)
    with Session(pg_engine) as session:
        authors = [Author(id=i, name=f"author {i}") for i in range(1, 6)]
        session.add_all(authors)
        session.add_all(Post(title=f"post {i}", author=authors[i % 5]) for i in range(20))
        session.commit()
    observe.instrument(pg_engine, metrics=False)
    yield pg_engine
    observe.uninstrument(pg_engine)


def test_lazy_collections_are_reported_at_the_right_lines(engine: Engine) -> None:
    with Session(engine) as session, observe.watch(mode="log") as watch:
        authors = session.scalars(sa.select(Author)).all()  # sync parent query
        titles = [post.title for author in authors for post in author.posts]  # sync trigger
    assert len(titles) == 20
    [finding] = watch.findings()
    assert finding.relationship == "Author.posts"
    assert finding.count == 5 and finding.parents_loaded == 5
    assert finding.trigger is not None and finding.parent_query is not None
    assert finding.trigger.filename == __file__
    assert finding.trigger.lineno == line_of(__file__, "# sync trigger")
    assert finding.parent_query.lineno == line_of(__file__, "# sync parent query")
    assert finding.fix == ".options(selectinload(Author.posts))"


def test_many_to_one_suggests_joinedload_and_the_fix_works(engine: Engine) -> None:
    with Session(engine) as session, observe.watch(mode="log") as watch:
        posts = session.scalars(sa.select(Post)).all()
        names = {post.author.name for post in posts}
    assert len(names) == 5
    [finding] = watch.findings()
    assert finding.fix == ".options(joinedload(Post.author))"
    assert finding.count == 5  # the identity map spares the other 15 loads

    with Session(engine) as session, observe.watch(mode="raise") as watch:
        posts = session.scalars(sa.select(Post).options(joinedload(Post.author))).all()
        assert {post.author.name for post in posts} == names
    assert watch.statements == 1
    with Session(engine) as session, observe.watch(mode="raise") as watch:
        authors = session.scalars(sa.select(Author).options(selectinload(Author.posts))).all()
        assert sum(len(author.posts) for author in authors) == 20
    assert watch.statements == 2


def test_repeated_statements_from_one_line_are_reported(engine: Engine) -> None:
    with Session(engine) as session, observe.watch(mode="log") as watch:
        query = sa.text("SELECT title FROM post WHERE id = :id")
        for post_id in range(1, 8):
            session.execute(query, {"id": post_id})  # loop
    [finding] = watch.findings()
    assert finding.kind == "repeated_statement"
    assert finding.count == 7
    assert finding.trigger is not None
    assert finding.trigger.lineno == line_of(__file__, "# loop")


def test_threshold_single_loads_and_empty_results(engine: Engine) -> None:
    with Session(engine) as session, observe.watch(mode="raise", threshold=6) as watch:
        for author in session.scalars(sa.select(Author)).all():
            assert author.posts  # 5 lazy loads: under the threshold of 6
    assert watch.findings() == []
    with Session(engine) as session, observe.watch(mode="raise") as watch:
        author = session.get(Author, 1)
        assert author is not None and author.posts  # one object: not an N+1
        assert session.scalars(sa.select(Author).where(Author.id < 0)).all() == []
    assert watch.findings() == []


def test_warn_mode_warns_and_raise_mode_raises(engine: Engine) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(engine) as session, observe.watch(mode="warn"):
            for author in session.scalars(sa.select(Author)).all():
                _ = author.posts
    assert [w.category for w in caught] == [observe.NPlusOneWarning]
    with (  # noqa: PT012
        pytest.raises(observe.NPlusOneDetected, match=r"Author\.posts"),
        Session(engine) as session,
        observe.watch(mode="raise"),
    ):
        for author in session.scalars(sa.select(Author)).all():
            _ = author.posts


def test_an_error_inside_the_watch_is_not_masked(engine: Engine) -> None:
    with (  # noqa: PT012
        pytest.raises(ZeroDivisionError),
        Session(engine) as session,
        observe.watch(mode="raise"),
    ):
        for author in session.scalars(sa.select(Author)).all():
            _ = author.posts
        _ = 1 / 0


def test_nothing_is_recorded_outside_a_watch(engine: Engine) -> None:
    assert observe.current_watch() is None
    with Session(engine) as session:
        for author in session.scalars(sa.select(Author)).all():
            _ = author.posts


def test_unused_eager_loads_are_reported(engine: Engine) -> None:
    with Session(engine) as session, observe.watch(mode="log") as watch:
        query = sa.select(Author).options(selectinload(Author.posts))
        names = [author.name for author in session.scalars(query).all()]  # eager, unused
    assert len(names) == 5
    [finding] = watch.findings()
    assert finding.kind == "unused_eager_load"
    assert finding.relationship == "Author.posts"
    assert finding.fix == "selectinload(Author.posts)"
    assert finding.parents_loaded == 5
    assert finding.parent_query is not None
    assert finding.parent_query.lineno == line_of(__file__, "# eager, unused")

    with Session(engine) as session, observe.watch(mode="log") as watch:
        query = sa.select(Post).options(joinedload(Post.author))  # joined, unused
        titles = [post.title for post in session.scalars(query).all()]
    assert len(titles) == 20
    [finding] = watch.findings()
    assert (finding.kind, finding.fix) == ("unused_eager_load", "joinedload(Post.author)")


def test_eager_loads_that_are_read_report_nothing(engine: Engine) -> None:
    with Session(engine) as session, observe.watch(mode="raise"):
        query = sa.select(Post).options(joinedload(Post.author))
        assert {post.author.name for post in session.scalars(query).all()}
    with Session(engine) as session, observe.watch(mode="raise"):
        query = sa.select(Author).options(selectinload(Author.posts))
        assert [len(author.posts) for author in session.scalars(query).all()]
    # Reading one parent's collection counts: the load was not wasted.
    with Session(engine) as session, observe.watch(mode="raise"):
        authors = session.scalars(sa.select(Author).options(selectinload(Author.posts))).all()
        assert authors[0].posts
