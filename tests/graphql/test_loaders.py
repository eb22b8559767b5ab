"""pgwarden.graphql on models of every relationship shape, on a real database: one
statement per batch, per-parent order and limit by a window function, soft deletes and
the session's identity kept, composite keys, and clear refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
import strawberry
from sqlalchemy import Column, ForeignKey, ForeignKeyConstraint, String, Table, event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from strawberry.types import Info

from pgwarden.graphql import (
    Loaders,
    LoadersMissing,
    UnsupportedRelationship,
    get_loader,
    load_related,
)
from pgwarden.orm import SoftDelete, enable_soft_delete_filter


class Base(DeclarativeBase):
    pass


class AppSession(Session):
    pass


enable_soft_delete_filter(AppSession)

# A table and columns with hostile names: the loaders' SQL must quote them.
shelf_books = Table(
    "select",
    Base.metadata,
    Column("Shelf id", ForeignKey("shelf.id"), primary_key=True),
    Column("book:id", ForeignKey("book.id"), primary_key=True),
)


class Shelf(Base):
    __tablename__ = "shelf"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    books: Mapped[list[Book]] = relationship(secondary=shelf_books, order_by="Book.title")
    notes: Mapped[list[Note]] = relationship(back_populates="shelf", order_by="Note.id")
    # Not an AND of column = column: refused, by name.
    short_notes: Mapped[list[Note]] = relationship(
        primaryjoin="and_(Shelf.id == Note.shelf_id, func.length(Note.body) < 5)",
        viewonly=True,
    )
    lines: Mapped[list[Line]] = relationship(order_by="Line.position")


class Book(Base):
    __tablename__ = "book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column('Mixed "Case" title', String(40))


class Note(SoftDelete, Base):
    __tablename__ = "note"
    id: Mapped[int] = mapped_column(primary_key=True)
    shelf_id: Mapped[int] = mapped_column(ForeignKey("shelf.id"))
    body: Mapped[str] = mapped_column(String(40))
    shelf: Mapped[Shelf] = relationship(back_populates="notes")


class Line(Base):
    """An association object: a book on a shelf at a position."""

    __tablename__ = "line"
    shelf_id: Mapped[int] = mapped_column(ForeignKey("shelf.id"), primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("book.id"), primary_key=True)
    position: Mapped[int]
    book: Mapped[Book] = relationship()


class Edition(Base):
    """A composite primary key, referenced by a composite foreign key."""

    __tablename__ = "edition"
    book_id: Mapped[int] = mapped_column(ForeignKey("book.id"), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    printings: Mapped[list[Printing]] = relationship(
        back_populates="edition", order_by="Printing.year.desc()"
    )


class Printing(Base):
    __tablename__ = "printing"
    id: Mapped[int] = mapped_column(primary_key=True)
    book_id: Mapped[int]
    number: Mapped[int]
    year: Mapped[int]
    edition: Mapped[Edition] = relationship(back_populates="printings")
    __table_args__ = (
        ForeignKeyConstraint(["book_id", "number"], ["edition.book_id", "edition.number"]),
    )


SHELVES = 30


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    Base.metadata.create_all(pg_engine)
    with Session(pg_engine) as session, session.begin():
        books = [Book(id=i, title=f"title {(i * 7) % 13:02d} {i}") for i in range(1, 41)]
        session.add_all(books)
        session.flush()
        for s in range(1, SHELVES + 1):
            shelf = Shelf(id=s, name=f"shelf {s}")
            shelf.books = [b for b in books if (b.id + s) % 4 == 0]
            session.add(shelf)
            for n in range(s % 6):
                session.add(Note(shelf_id=s, body=f"n{s}-{n}", deleted_at=None))
            session.add(Note(shelf_id=s, body="gone", deleted_at=sa.func.now()))
            for position, book in enumerate(books[s % 5 :: 9]):
                session.add(Line(shelf_id=s, book_id=book.id, position=-position))
        session.flush()
        for b in books[:10]:
            for number in (1, 2):
                session.add(Edition(book_id=b.id, number=number))
        session.flush()
        for i in range(60):
            session.add(Printing(id=i, book_id=1 + i % 10, number=1 + i % 2, year=1990 + i))
    return pg_engine


class Counter:
    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        event.listen(engine, "before_cursor_execute", self.seen)

    def seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)


def _sql(engine: Engine, query: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(query)).all())


def test_every_shape_loads_in_one_statement_and_matches_sql(engine: Engine) -> None:
    counter = Counter(engine)
    with AppSession(engine) as session:
        shelves = session.scalars(sa.select(Shelf).order_by(Shelf.id)).all()
        before = len(counter.statements)
        books = load_related(session, Shelf.books, shelves)
        notes = load_related(session, Shelf.notes, shelves)
        lines = load_related(session, Shelf.lines, shelves)
        line_books = load_related(session, Line.book, [line for ls in lines for line in ls])
        assert len(counter.statements) - before == 3  # line books are all in the session
        want_books = _sql(
            engine,
            'SELECT s."Shelf id", b."Mixed ""Case"" title" FROM "select" s '
            'JOIN book b ON b.id = s."book:id" ORDER BY 1, 2, b.id',
        )
        assert [
            (shelf.id, b.title) for shelf, bs in zip(shelves, books, strict=True) for b in bs
        ] == [tuple(row) for row in want_books]
        want_notes = _sql(
            engine, "SELECT shelf_id, id FROM note WHERE deleted_at IS NULL ORDER BY 1, 2"
        )
        assert [(s.id, n.id) for s, ns in zip(shelves, notes, strict=True) for n in ns] == [
            tuple(r) for r in want_notes
        ]
        assert all(note.body != "gone" for ns in notes for note in ns)
        assert [[line.position for line in ls] for ls in lines] == [
            sorted(line.position for line in ls) for ls in lines
        ]
        # Identity: what the loaders return are the session's objects.
        flat = [line for ls in lines for line in ls]
        assert all(
            book is session.get(Book, line.book_id)
            for book, line in zip(line_books, flat, strict=True)
        )
        # Loaded collections are set on the parents: reading them sends nothing.
        before = len(counter.statements)
        assert shelves[3].notes == notes[3] and shelves[3].books == books[3]
        assert len(counter.statements) == before


def test_per_parent_limits_use_one_window_statement_and_skip_soft_deleted(engine: Engine) -> None:
    counter = Counter(engine)
    with AppSession(engine) as session:
        shelves = session.scalars(sa.select(Shelf).order_by(Shelf.id)).all()
        before = len(counter.statements)
        notes = load_related(session, Shelf.notes, shelves, order_by=[Note.id.desc()], limit=2)
        books = load_related(session, Shelf.books, shelves, limit=1)
        assert len(counter.statements) - before == 2
        assert "ROW_NUMBER() OVER (PARTITION BY" in counter.statements[-1].upper()
        for shelf, got in zip(shelves, notes, strict=True):
            live = sorted((n for n in range(shelf.id % 6)), reverse=True)[:2]
            assert [note.body for note in got] == [f"n{shelf.id}-{n}" for n in live]
        full = load_related(session, Shelf.books, shelves)
        assert books == [bs[:1] for bs in full]
        # A limit leaves the parents' own attribute alone.
        assert "notes" not in sa.inspect(shelves[0]).dict or shelves[0].notes != []


def test_composite_keys_both_ways(engine: Engine) -> None:
    with Session(engine) as session:
        editions = session.scalars(
            sa.select(Edition).order_by(Edition.book_id, Edition.number)
        ).all()
        printings = load_related(session, Edition.printings, editions, limit=2)
        for edition, got in zip(editions, printings, strict=True):
            years = sorted(
                (
                    1990 + i
                    for i in range(60)
                    if (1 + i % 10, 1 + i % 2) == (edition.book_id, edition.number)
                ),
                reverse=True,
            )
            assert [p.year for p in got] == years[:2]
        back = load_related(session, Printing.edition, [p for ps in printings for p in ps])
        assert all(
            e is edition
            for e, edition in zip(
                back,
                [e for e, ps in zip(editions, printings, strict=True) for _ in ps],
                strict=True,
            )
        )


def test_refusals_name_the_relationship(engine: Engine) -> None:
    with Session(engine) as session:
        shelves = session.scalars(sa.select(Shelf)).all()
        with pytest.raises(UnsupportedRelationship, match=r"Shelf\.short_notes") as info:
            load_related(session, Shelf.short_notes, shelves)
        assert "selectinload" in (info.value.hint or "")
        with pytest.raises(UnsupportedRelationship, match="not a relationship"):
            load_related(session, Shelf.name, shelves)  # type: ignore[arg-type]
        with pytest.raises(UnsupportedRelationship, match=r"Printing\.edition"):
            load_related(session, Printing.edition, [], limit=3)
        with pytest.raises(UnsupportedRelationship, match=r"Shelf\.short_notes"):
            Loaders(session).get(Shelf.short_notes)


# -- through strawberry, with an AsyncSession ------------------------------------------


@strawberry.type
class BookType:
    title: str


@strawberry.type
class ShelfType:
    id: int
    model: strawberry.Private[Shelf]

    @strawberry.field
    async def books(self, info: Info[Any, None], first: int | None = None) -> list[BookType]:
        books = await get_loader(info, Shelf.books, limit=first).load(self.model)
        return [BookType(title=b.title) for b in books]

    @strawberry.field
    async def notes(self, info: Info[Any, None]) -> list[str]:
        notes = await get_loader(info, Shelf.notes).load(self.model)
        return [n.body for n in notes]


@strawberry.type
class Query:
    @strawberry.field
    async def shelves(self, info: Info[Any, None]) -> list[ShelfType]:
        session = info.context["session"]
        stmt = sa.select(Shelf).order_by(Shelf.id)
        if isinstance(session, Session):
            found = session.scalars(stmt).all()
        else:
            found = (await session.scalars(stmt)).all()
        return [ShelfType(id=s.id, model=s) for s in found]


SCHEMA = strawberry.Schema(query=Query)
QUERY = "{ shelves { id books(first: 2) { title } notes } }"


def _check(data: dict[str, Any], engine: Engine) -> None:
    notes = {
        shelf: [
            body
            for s, body in _sql(
                engine, "SELECT shelf_id, body FROM note WHERE deleted_at IS NULL ORDER BY id"
            )
            if s == shelf
        ]
        for shelf in range(1, SHELVES + 1)
    }
    assert [s["notes"] for s in data["shelves"]] == [notes[s["id"]] for s in data["shelves"]]
    assert all(len(s["books"]) <= 2 for s in data["shelves"])


def test_async_session_through_strawberry(engine: Engine, pg_url: str) -> None:
    url = sa.make_url(pg_url).set(drivername="postgresql+psycopg")
    async_engine = create_async_engine(url)
    counter = Counter(async_engine.sync_engine)
    maker = async_sessionmaker(async_engine, sync_session_class=AppSession)

    async def main() -> dict[str, Any]:
        async with maker() as session:
            lock = asyncio.Lock()
            before = len(counter.statements)
            result = await SCHEMA.execute(
                QUERY, context_value={"session": session, "loaders": Loaders(session, lock=lock)}
            )
            assert result.errors is None, result.errors
            assert len(counter.statements) - before == 3
            return result.data  # type: ignore[return-value]

    try:
        data = asyncio.run(main())
    finally:
        asyncio.run(async_engine.dispose())
    assert len(data["shelves"]) == SHELVES
    _check(data, engine)


def test_sync_session_through_strawberry_and_a_missing_registry(engine: Engine) -> None:
    counter = Counter(engine)
    with AppSession(engine) as session:
        before = len(counter.statements)
        result = asyncio.run(
            SCHEMA.execute(QUERY, context_value={"session": session, "loaders": Loaders(session)})
        )
        assert result.errors is None, result.errors
        assert len(counter.statements) - before == 3
        _check(result.data, engine)  # type: ignore[arg-type]
        missing = asyncio.run(SCHEMA.execute(QUERY, context_value={"session": session}))
        assert missing.errors
        assert isinstance(missing.errors[0].original_error, LoadersMissing)


class Node(Base):
    """A self-referential tree: the remote side is the same table."""

    __tablename__ = "node"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("node.id"))
    parent: Mapped[Node | None] = relationship(remote_side="Node.id", back_populates="children")
    children: Mapped[list[Node]] = relationship(back_populates="parent", order_by="Node.id")


def test_self_referential_trees_load_both_ways(pg_engine: Engine) -> None:
    Base.metadata.create_all(pg_engine)
    with Session(pg_engine) as session:
        session.add_all(
            Node(id=i, parent_id=None if i <= 3 else (i - 1) // 3) for i in range(1, 40)
        )
        session.commit()
        roots = session.scalars(sa.select(Node).where(Node.parent_id.is_(None))).all()
        level = load_related(session, Node.children, roots)
        assert [[n.id for n in kids] for kids in level] == [
            [i for i in range(4, 40) if (i - 1) // 3 == root.id] for root in roots
        ]
        grand = [n for kids in level for n in kids]
        assert load_related(session, Node.parent, grand) == [
            root for root, kids in zip(roots, level, strict=True) for _ in kids
        ]


def test_orderings_that_differ_only_in_values_get_loaders_of_their_own(engine: Engine) -> None:
    with Session(engine) as session:
        loaders = Loaders(session)
        low = loaders.get(Shelf.notes, order_by=[sa.func.coalesce(Note.id, 0)])
        same = loaders.get(Shelf.notes, order_by=[sa.func.coalesce(Note.id, 0)])
        high = loaders.get(Shelf.notes, order_by=[sa.func.coalesce(Note.id, 100)])
        assert low is same and low is not high


def test_many_parents_load_in_batches_in_order(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pgwarden.graphql.batches as batches

    monkeypatch.setattr(batches, "BATCH_SIZE", 2)
    with Session(engine) as session:
        shelves = session.scalars(sa.select(Shelf).order_by(Shelf.id)).all()
        expected = [
            session.scalars(sa.select(Note).where(Note.shelf_id == s.id).order_by(Note.id)).all()
            for s in shelves
        ]
        session.expunge_all()
        shelves = session.scalars(sa.select(Shelf).order_by(Shelf.id)).all()
        loaded = load_related(session, Shelf.notes, shelves)
        assert len(shelves) > 2
        assert [[n.id for n in notes] for notes in loaded] == [
            [n.id for n in notes] for notes in expected
        ]
