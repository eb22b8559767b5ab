"""The doctor over a server: each database once, server-wide checks once, unreachable ones named."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pgwarden.db.engines import create_engine
from pgwarden.errors import ConnectionFailed
from pgwarden.insight import doctor_server
from pgwarden.testing.servers import TestServer


def test_one_database_by_default(pg_engine: Engine) -> None:
    url = pg_engine.url.render_as_string(hide_password=False)
    server = doctor_server(lambda database: create_engine(url), checks=["indexes"])
    assert [report.database for report in server.reports] == [pg_engine.url.database]
    assert server.unreachable == []
    assert server.counts == server.reports[0].counts


def test_every_database_once_and_the_unreachable_named(
    pg_server: TestServer, pg_engine: Engine
) -> None:
    url = sa.engine.make_url(pg_engine.url.render_as_string(hide_password=False))
    other, closed = pg_server.create_database(), pg_server.create_database()

    def engine_for(database: str | None) -> Engine:
        if database == closed:
            raise ConnectionFailed(f"cannot connect to {database}")
        return create_engine(url if database is None else url.set(database=database))

    try:
        server = doctor_server(engine_for, checks=["indexes", "settings"], all_databases=True)
    finally:
        pg_server.drop_database(other)
        pg_server.drop_database(closed)
    names = [report.database for report in server.reports]
    assert names[0] == url.database and other in names
    assert len(names) == len(set(names))
    assert [(u.database, u.error) for u in server.unreachable] == [
        (closed, f"cannot connect to {closed}")
    ]
    assert server.reports[0].scopes == ("database", "cluster")
    assert all(report.scopes == ("database",) for report in server.reports[1:])
    # The server-wide settings check ran once, on the first database.
    ran = [r.check for report in server.reports for r in report.results]
    assert ran.count("settings") == 1
