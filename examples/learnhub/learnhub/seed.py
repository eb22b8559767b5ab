"""Fill a migrated learnhub database with realistic, deterministic data, fast.

Rows are made with Faker from one seed (the same ``--seed`` gives the same data, for a
given ``anchor`` month) and loaded with COPY. Scale 1 is about 55,000 rows. The one
exception to sameness: sessions store the hash of a random token that is thrown away,
so no seeded session can be signed in with (``learnhub.auth.issue_session`` makes one).
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from faker import Faker
from psycopg import sql
from psycopg.types.range import Range

from learnhub.models.users import Profile
from learnhub.partitions import ensure_month_partitions
from pgwarden.db.engines import connect, create_engine
from pgwarden.errors import UserError
from pgwarden.orm import seal

Progress = Callable[[str, int, int], None]
Row = tuple[Any, ...]

# Rows per table at scale 1, in load order (parents before children).
BASE_COUNTS: dict[str, int] = {
    "organizations": 5,
    "permissions": 12,
    "roles": 4,
    "role_permissions": 24,
    "users": 1000,
    "profiles": 1000,
    "user_roles": 1200,
    "user_sessions": 1500,
    "email_verification_tokens": 800,
    "password_reset_tokens": 200,
    "categories": 40,
    "tags": 80,
    "content": 3000,
    "content_tags": 7500,
    "content_versions": 4500,
    "attachments": 800,
    "comments": 9000,
    "ratings": 4000,
    "workflow_transitions": 3500,
    "user_activity": 4000,
    "page_views": 10000,
    "events": 3000,
}
# Reference tables that do not grow with the scale.
FIXED = {"organizations", "permissions", "roles", "role_permissions"}

ROLES = ["learner", "author", "editor", "admin"]
PERMISSIONS = [
    "content.read",
    "content.create",
    "content.edit",
    "content.review",
    "content.publish",
    "content.archive",
    "comment.create",
    "comment.moderate",
    "user.read",
    "user.manage",
    "analytics.read",
    "settings.manage",
]
STATES = ["draft", "in_review", "published", "archived"]
STATE_WEIGHTS = [15, 10, 65, 10]
# Content anyone may read, signed in or not; the rest only its organisation reads.
PUBLIC_SHARE = 0.15


@dataclass(frozen=True)
class SeedReport:
    """What a seed run did (or, dry, would do)."""

    counts: dict[str, int]
    seconds: float
    dry_run: bool

    @property
    def total(self) -> int:
        """Return the number of rows in all tables."""
        return sum(self.counts.values())


def plan(scale: float) -> dict[str, int]:
    """Return the rows per table that ``scale`` gives, in load order."""
    if not scale > 0:
        raise UserError(f"scale must be above 0, not {scale}.", hint="Try --scale 1.")
    counts = {}
    for table, base in BASE_COUNTS.items():
        counts[table] = base if table in FIXED else max(1, round(base * scale))
    counts["profiles"] = counts["users"]
    counts["role_permissions"] = len(_role_permission_pairs())
    # A user rates a piece of content once: never ask for more pairs than exist.
    counts["ratings"] = min(counts["ratings"], counts["users"] * counts["content"] // 2)
    counts["content_tags"] = min(counts["content_tags"], counts["content"] * counts["tags"] // 2)
    return counts


def _role_permission_pairs() -> list[tuple[int, int]]:
    grants = {"learner": 3, "author": 7, "editor": 10, "admin": 12}
    pairs = []
    for role_id, role in enumerate(ROLES, start=1):
        pairs.extend((role_id, perm) for perm in range(1, grants[role] + 1))
    return pairs


class _Generator:
    """Makes the rows of every table from one seed."""

    def __init__(self, counts: dict[str, int], seed: int, anchor: datetime) -> None:
        self.n = counts
        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.anchor = anchor
        self.seed = seed

    def when(self, days_back: float = 365) -> datetime:
        """Return a moment in the ``days_back`` days before the anchor."""
        return self.anchor - timedelta(seconds=self.rng.uniform(0, days_back * 86400))

    def token(self, kind: str, i: int) -> str:
        return hashlib.sha256(f"{kind}:{self.seed}:{i}".encode()).hexdigest()

    def organizations(self) -> Iterator[Row]:
        for i in range(1, self.n["organizations"] + 1):
            name = self.fake.unique.company()
            yield i, name, f"org-{i}"

    def permissions(self) -> Iterator[Row]:
        for i, code in enumerate(PERMISSIONS, start=1):
            yield i, code, f"May {code.replace('.', ' ')}"

    def roles(self) -> Iterator[Row]:
        yield from enumerate(ROLES, start=1)

    def role_permissions(self) -> Iterator[Row]:
        yield from _role_permission_pairs()

    def users(self) -> Iterator[Row]:
        for i in range(1, self.n["users"] + 1):
            first, last = self.fake.first_name(), self.fake.last_name()
            created = self.when(720)
            verified = created + timedelta(hours=self.rng.uniform(0, 48))
            deleted = self.when(30) if self.rng.random() < 0.02 else None
            yield (
                i,
                self.rng.randint(1, self.n["organizations"]),
                f"{first}.{last}.{i}@example.org".lower(),
                f"{first} {last}",
                "pbkdf2_sha256$" + self.token("pw", i)[:40],
                self.rng.random() > 0.05,
                verified if self.rng.random() > 0.1 else None,
                self.when(60),
                created,
                created,
                deleted,
            )

    def profiles(self) -> Iterator[Row]:
        topics = ["python", "sql", "postgres", "design", "math", "history", "music", "art"]
        for i in range(1, self.n["users"] + 1):
            phone = self.fake.numerify("+1-###-###-####") if self.rng.random() < 0.6 else None
            yield (
                i,
                self.fake.sentence(nb_words=12),
                f"https://avatars.example.org/{i}.png" if self.rng.random() < 0.5 else None,
                seal(Profile.phone, phone, i) if phone else None,  # bound to user_id i
                self.rng.sample(topics, self.rng.randint(0, 3)),
                json.dumps(
                    {"theme": self.rng.choice(["light", "dark"]), "digest": self.rng.random() < 0.3}
                ),
            )

    def user_roles(self) -> Iterator[Row]:
        users = self.n["users"]
        pairs = {(u, 1) for u in range(1, users + 1)}
        while len(pairs) < min(self.n["user_roles"], users * len(ROLES)):
            pairs.add((self.rng.randint(1, users), self.rng.randint(2, len(ROLES))))
        yield from sorted(pairs)[: self.n["user_roles"]]

    def user_sessions(self) -> Iterator[Row]:
        for i in range(1, self.n["user_sessions"] + 1):
            created = self.when(90)
            yield (
                i,
                self.rng.randint(1, self.n["users"]),
                # The hash of a token nobody keeps: a seeded session cannot be signed in with.
                hashlib.sha256(secrets.token_bytes(32)).hexdigest(),
                self.fake.ipv4_public(),
                self.fake.user_agent(),
                created,
                created + timedelta(days=30),
            )

    def _tokens(self, kind: str) -> Iterator[Row]:
        for i in range(1, self.n[kind] + 1):
            created = self.when(120)
            used = created + timedelta(minutes=self.rng.randint(1, 600))
            yield (
                i,
                self.rng.randint(1, self.n["users"]),
                self.token(kind, i),
                created,
                created + timedelta(days=1),
                used if self.rng.random() < 0.7 else None,
            )

    def email_verification_tokens(self) -> Iterator[Row]:
        return self._tokens("email_verification_tokens")

    def password_reset_tokens(self) -> Iterator[Row]:
        return self._tokens("password_reset_tokens")

    def categories(self) -> Iterator[Row]:
        roots = max(1, self.n["categories"] // 5)
        for i in range(1, self.n["categories"] + 1):
            word = self.fake.unique.word().title()
            parent = None if i <= roots else self.rng.randint(1, min(i - 1, roots * 2))
            yield i, word, f"{word.lower()}-{i}", parent

    def tags(self) -> Iterator[Row]:
        for i in range(1, self.n["tags"] + 1):
            yield i, f"{self.fake.unique.word()}-{i}"

    def content(self) -> Iterator[Row]:
        for i in range(1, self.n["content"] + 1):
            title = self.fake.sentence(nb_words=self.rng.randint(4, 9)).rstrip(".")
            state = self.rng.choices(STATES, STATE_WEIGHTS)[0]
            created = self.when(360)
            published = (
                created + timedelta(days=self.rng.uniform(0, 5))
                if state in ("published", "archived")
                else None
            )
            window = None
            if self.rng.random() < 0.2:
                start = created + timedelta(days=7)
                window = Range(start, start + timedelta(days=self.rng.randint(14, 90)), "[)")
            yield (
                i,
                self.rng.randint(1, self.n["organizations"]),
                self.rng.randint(1, self.n["users"]),
                self.rng.randint(1, self.n["categories"]),
                title,
                "-".join(title.lower().split())[:250] + f"-{i}",
                self.fake.sentence(nb_words=20),
                "\n\n".join(self.fake.paragraphs(nb=self.rng.randint(2, 6))),
                state,
                published,
                window,
                json.dumps(
                    {
                        "level": self.rng.choice(["intro", "intermediate", "advanced"]),
                        "minutes": self.rng.randint(3, 90),
                    }
                ),
                created,
                created,
                self.when(20) if self.rng.random() < 0.01 else None,
                "public" if self.rng.random() < PUBLIC_SHARE else "organization",
            )

    def content_tags(self) -> Iterator[Row]:
        pairs: set[tuple[int, int]] = set()
        tags = self.n["tags"]
        while len(pairs) < self.n["content_tags"]:
            pairs.add((self.rng.randint(1, self.n["content"]), self.rng.randint(1, tags)))
        yield from sorted(pairs)

    def content_versions(self) -> Iterator[Row]:
        next_version: dict[int, int] = {}
        for i in range(1, self.n["content_versions"] + 1):
            content = self.rng.randint(1, self.n["content"])
            version = next_version.get(content, 1)
            next_version[content] = version + 1
            yield (
                i,
                content,
                version,
                self.rng.randint(1, self.n["users"]),
                self.fake.sentence(nb_words=6).rstrip("."),
                self.fake.paragraph(nb_sentences=4),
                self.when(360),
            )

    def attachments(self) -> Iterator[Row]:
        kinds = [("pdf", "application/pdf"), ("png", "image/png"), ("mp4", "video/mp4")]
        for i in range(1, self.n["attachments"] + 1):
            ext, media = self.rng.choice(kinds)
            yield (
                i,
                self.rng.randint(1, self.n["content"]),
                f"{self.fake.word()}-{i}.{ext}",
                media,
                self.rng.randint(1_000, 50_000_000),
                f"attachments/{self.token('att', i)[:16]}.{ext}",
                self.when(300),
            )

    def comments(self) -> Iterator[Row]:
        for i in range(1, self.n["comments"] + 1):
            created = self.when(300)
            parent = self.rng.randint(1, i - 1) if i > 1 and self.rng.random() < 0.2 else None
            yield (
                i,
                self.rng.randint(1, self.n["content"]),
                self.rng.randint(1, self.n["users"]),
                parent,
                self.fake.paragraph(nb_sentences=self.rng.randint(1, 3)),
                created,
                created,
                self.when(30) if self.rng.random() < 0.03 else None,
            )

    def ratings(self) -> Iterator[Row]:
        pairs: set[tuple[int, int]] = set()
        while len(pairs) < self.n["ratings"]:
            pairs.add(
                (self.rng.randint(1, self.n["content"]), self.rng.randint(1, self.n["users"]))
            )
        for i, (content, user) in enumerate(sorted(pairs), start=1):
            yield (
                i,
                content,
                user,
                self.rng.choices([1, 2, 3, 4, 5], [5, 8, 20, 35, 32])[0],
                self.when(300),
            )

    def workflow_transitions(self) -> Iterator[Row]:
        for i in range(1, self.n["workflow_transitions"] + 1):
            step = self.rng.randint(0, 2)
            yield (
                i,
                self.rng.randint(1, self.n["content"]),
                self.rng.randint(1, self.n["users"]),
                STATES[step],
                STATES[step + 1],
                self.fake.sentence(nb_words=5) if self.rng.random() < 0.3 else "",
                self.when(360),
            )

    def user_activity(self) -> Iterator[Row]:
        kinds = ["signed_in", "lesson_started", "lesson_finished", "rated", "commented", "searched"]
        for i in range(1, self.n["user_activity"] + 1):
            yield (
                i,
                self.rng.randint(1, self.n["users"]),
                self.rng.choice(kinds),
                json.dumps({"content_id": self.rng.randint(1, self.n["content"])}),
                self.when(180),
            )

    def page_views(self) -> Iterator[Row]:
        for _ in range(self.n["page_views"]):
            content = self.rng.randint(1, self.n["content"])
            user = self.rng.randint(1, self.n["users"]) if self.rng.random() < 0.7 else None
            yield (
                self.when(330),
                user,
                content,
                f"/content/{content}",
                self.rng.choice([None, "https://search.example.com/", "https://news.example.net/"]),
                uuid.UUID(int=self.rng.getrandbits(128)),
            )

    def events(self) -> Iterator[Row]:
        names = ["signup", "login_failed", "export_requested", "content_published", "email_bounced"]
        for i in range(1, self.n["events"] + 1):
            yield (
                i,
                self.rng.choice(names),
                self.rng.randint(1, self.n["users"]) if self.rng.random() < 0.8 else None,
                json.dumps({"source": self.rng.choice(["web", "api", "mobile"])}),
                self.when(365),
                None,
            )


COLUMNS: dict[str, Sequence[str]] = {
    "organizations": ("id", "name", "slug"),
    "permissions": ("id", "code", "description"),
    "roles": ("id", "name"),
    "role_permissions": ("role_id", "permission_id"),
    "users": (
        "id",
        "org_id",
        "email",
        "display_name",
        "password_hash",
        "is_active",
        "email_verified_at",
        "last_login_at",
        "created_at",
        "updated_at",
        "deleted_at",
    ),
    "profiles": ("user_id", "bio", "avatar_url", "phone", "interests", "preferences"),
    "user_roles": ("user_id", "role_id"),
    "user_sessions": (
        "id",
        "user_id",
        "token_hash",
        "ip_address",
        "user_agent",
        "created_at",
        "expires_at",
    ),
    "email_verification_tokens": (
        "id",
        "user_id",
        "token_hash",
        "created_at",
        "expires_at",
        "used_at",
    ),
    "password_reset_tokens": ("id", "user_id", "token_hash", "created_at", "expires_at", "used_at"),
    "categories": ("id", "name", "slug", "parent_id"),
    "tags": ("id", "name"),
    "content": (
        "id",
        "org_id",
        "author_id",
        "category_id",
        "title",
        "slug",
        "summary",
        "body",
        "state",
        "published_at",
        "available_during",
        "extra",
        "created_at",
        "updated_at",
        "deleted_at",
        "visibility",
    ),
    "content_tags": ("content_id", "tag_id"),
    "content_versions": ("id", "content_id", "version", "editor_id", "title", "body", "created_at"),
    "attachments": (
        "id",
        "content_id",
        "filename",
        "media_type",
        "size_bytes",
        "storage_key",
        "created_at",
    ),
    "comments": (
        "id",
        "content_id",
        "author_id",
        "parent_id",
        "body",
        "created_at",
        "updated_at",
        "deleted_at",
    ),
    "ratings": ("id", "content_id", "user_id", "score", "created_at"),
    "workflow_transitions": (
        "id",
        "content_id",
        "actor_id",
        "from_state",
        "to_state",
        "note",
        "at",
    ),
    "user_activity": ("id", "user_id", "kind", "detail", "at"),
    "page_views": ("viewed_at", "user_id", "content_id", "path", "referrer", "session_key"),
    "events": ("id", "name", "user_id", "payload", "occurred_at", "note"),
}


def default_anchor() -> datetime:
    """Return the start of the current month (UTC): the newest moment seeded data has."""
    today = datetime.now(UTC).date()
    return datetime(today.year, today.month, 1, tzinfo=UTC)


def seed(
    url: str,
    *,
    scale: float = 1.0,
    seed: int = 0,
    dry_run: bool = False,
    reset: bool = False,
    anchor: datetime | None = None,
    progress: Progress | None = None,
) -> SeedReport:
    """Load learnhub's data into the migrated database at ``url``; return the row counts.

    ``dry_run`` only computes the counts and touches no database. A database that
    already holds users is refused unless ``reset`` empties every learnhub table first.
    Everything is loaded in one transaction: a failure leaves the database as it was.
    """
    counts = plan(scale)
    started = time.perf_counter()
    if dry_run:
        return SeedReport(counts, time.perf_counter() - started, dry_run=True)
    anchor = anchor or default_anchor()
    generator = _Generator(counts, seed, anchor)
    engine = create_engine(url, poolclass=sa.pool.NullPool, application_name="learnhub-seed")
    try:
        with connect(engine) as conn, conn.begin():
            _prepare(conn, reset)
            conn.execute(sa.text("SELECT set_config('pgwarden.actor', 'seed', true)"))
            first = (anchor - timedelta(days=365)).date()
            ensure_month_partitions(conn, first, (anchor + timedelta(days=90)).date())
            raw = conn.connection.driver_connection
            assert raw is not None
            for table, total in counts.items():
                _copy(raw, table, getattr(generator, table)(), total, progress)
            for table in counts:
                if "id" in COLUMNS[table]:
                    conn.execute(
                        sa.text(
                            "SELECT setval(pg_get_serial_sequence(:t, 'id'), "
                            f'(SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"), false)'
                        ),
                        {"t": table},
                    )
            conn.execute(sa.text("ANALYZE"))
    finally:
        engine.dispose()
    return SeedReport(counts, time.perf_counter() - started, dry_run=False)


def _prepare(conn: sa.Connection, reset: bool) -> None:
    try:
        users = conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one()
    except sa.exc.ProgrammingError:
        raise UserError(
            "the database has no learnhub tables.",
            hint="Migrate it first: python -m learnhub migrate.",
        ) from None
    if users and not reset:
        raise UserError(
            f"the database already holds learnhub data ({users} users).",
            hint="Seed an empty database, or pass --reset to empty every learnhub table first.",
        )
    if reset:
        tables = ", ".join(f'"{table}"' for table in [*BASE_COUNTS, "audit_log"])
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def _copy(raw: Any, table: str, rows: Iterator[Row], total: int, progress: Progress | None) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, COLUMNS[table]))
    )
    done = 0
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            done += 1
            if progress is not None and done % 1000 == 0:
                progress(table, done, total)
    if progress is not None:
        progress(table, done, total)
