from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session

from pgwarden.errors import UserError
from pgwarden.orm import IdPrimaryKey, gin_index, search, tsvector_column


class Base(DeclarativeBase):
    pass


class Article(IdPrimaryKey, Base):
    __tablename__ = "article"
    __table_args__ = (gin_index("ix_article_search", "search_vector"),)
    title: Mapped[str]
    body: Mapped[str | None]
    search_vector: Mapped[str] = tsvector_column(("title", "A"), ("body", "B"))


ARTICLES = [
    ("Cooking for engineers", "A side note on postgres and pasta."),
    ("Postgres indexing", "B-trees, GIN and BRIN explained."),
    ("Gardening", None),
    ("It's O'Reilly's day", "quotes and 'apostrophes' & ampersands | pipes"),
]


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    Base.metadata.create_all(pg_engine)
    with Session(pg_engine) as session, session.begin():
        session.add_all([Article(title=title, body=body) for title, body in ARTICLES])
    return pg_engine


def found(engine: Engine, query: str, **options: str) -> list[tuple[str, float]]:
    stmt = search(sa.select(Article.title), Article.search_vector, query, **options)
    with Session(engine) as session:
        return [(row.title, row.rank) for row in session.execute(stmt)]


def test_a_title_match_ranks_above_a_body_match(engine: Engine) -> None:
    results = found(engine, "postgres")
    assert [title for title, _ in results] == ["Postgres indexing", "Cooking for engineers"]
    assert results[0][1] > results[1][1] > 0


def test_web_search_syntax_and_stemming(engine: Engine) -> None:
    assert [t for t, _ in found(engine, "postgres -pasta")] == ["Postgres indexing"]
    assert [t for t, _ in found(engine, '"postgres indexing"')] == ["Postgres indexing"]
    assert [t for t, _ in found(engine, "gardens or cook")] == [
        "Cooking for engineers",
        "Gardening",
    ]


def test_the_vector_follows_updates_of_the_text(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        session.execute(sa.update(Article).where(Article.title == "Gardening").values(body="roses"))
    assert [t for t, _ in found(engine, "roses")] == ["Gardening"]


def test_entities_come_with_their_rank_under_the_chosen_label(engine: Engine) -> None:
    stmt = search(sa.select(Article), Article.search_vector, "gin", rank_label="score")
    with Session(engine) as session:
        ((article, score),) = session.execute(stmt).all()
    assert article.title == "Postgres indexing" and score > 0


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_a_blank_query_matches_nothing(engine: Engine, query: str) -> None:
    assert found(engine, query) == []


@pytest.mark.parametrize(
    "query",
    [
        "'; DROP TABLE article; --",
        "' OR 1=1 --",
        "postgres') OR ('1'='1",
        "!!! & | <-> :* ( ) \\",
        "title:* | body:*",
        '"unterminated',
        "%s %(query)s :query $1",
        "\x01\x02",
        "-",
        "or",
    ],
)
def test_hostile_queries_neither_fail_nor_match_everything(engine: Engine, query: str) -> None:
    results = found(engine, query)
    assert len(results) < len(ARTICLES)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM article")).scalar() == len(ARTICLES)


def test_hostile_text_is_matched_as_words(engine: Engine) -> None:
    assert [t for t, _ in found(engine, "O'Reilly's 'apostrophes' & | pipes")] == [
        "It's O'Reilly's day"
    ]


def test_the_gin_index_serves_the_search(engine: Engine) -> None:
    stmt = search(sa.select(Article.id), Article.search_vector, "postgres")
    compiled = stmt.compile(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))  # the table is tiny
        plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).scalars())
    assert "ix_article_search" in plan


def test_the_search_vector_is_not_loaded_with_the_row(engine: Engine) -> None:
    with Session(engine) as session:
        article = session.scalars(sa.select(Article).limit(1)).one()
        assert "search_vector" not in article.__dict__


@pytest.mark.parametrize(
    ("weighted", "config", "expected"),
    [
        ((("", "A"),), "english", "not a column name"),
        ((("ti\x00tle", "A"),), "english", "not a column name"),
        ((("title", "E"),), "english", "not a weight"),
        ((("title", "A') || ('"),), "english", "not a weight"),
        ((("title", "A"),), "english'), 'A') || ('", "not a text search configuration"),
        ((("title", "A"),), "English", "not a text search configuration"),
        ((), "english", "at least one column"),
    ],
)
def test_vector_definitions_that_could_carry_sql_are_refused(
    weighted: tuple[tuple[str, str], ...], config: str, expected: str
) -> None:
    with pytest.raises(UserError, match=expected):
        tsvector_column(*weighted, config=config)


def test_a_search_config_that_could_carry_sql_is_refused() -> None:
    with pytest.raises(UserError, match="not a text search configuration"):
        search(sa.select(Article.id), Article.search_vector, "x", config="english'::regconfig")


def test_another_configuration_is_honoured(engine: Engine) -> None:
    # 'simple' does not stem: "engineer" no longer finds "engineers".
    assert found(engine, "engineer", config="english") != []
    assert found(engine, "engineer", config="simple") == []
