"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

Signs in, opens every page, checks that every chart drew data points, starts a backup
from the backups page and waits for it to complete, and finds no console error. Skips,
saying why, where chromium or Playwright is missing (`.ci/chromium` installs chromium).
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pgwarden.insight import history
from pgwarden.observe.reports import forget_reports

CHROMIUM = os.environ.get("PGWARDEN_CHROMIUM", "/usr/bin/chromium")
DASH = "/v1/database/dashboard"
# Each page, and the charts it must draw on the database the fixture prepares.
PAGES = {
    "/": 2,  # findings by severity, database size over the snapshots
    "/queries": 1,
    "/indexes": 1,
    "/space": 2,  # table sizes, database size over the snapshots
    "/connections": 1,
    "/maintenance": 1,
    "/backups": 0,  # until a backup exists
    "/application": 0,  # until an instrumented application saw a slow statement
    "/fleet": 0,
}

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
if not (shutil.which(CHROMIUM) or os.path.exists(CHROMIUM)):
    pytest.skip(
        f"no chromium at {CHROMIUM}: install Debian's (apt-get install chromium, as "
        ".ci/chromium does) or set PGWARDEN_CHROMIUM",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow


@pytest.fixture
def prepared(pg_url: str) -> dict[str, bool]:
    """Give every page something to draw: tables, queries, dead rows, two snapshots."""
    forget_reports()  # no slow statement that earlier tests of this process saw
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    with engine.begin() as conn:
        conn.execute(text('CREATE TABLE "select" (id int PRIMARY KEY, note text)'))
        conn.execute(text('CREATE INDEX "Mixed ""Case""" ON "select" (note)'))
        conn.execute(
            text('INSERT INTO "select" SELECT g, md5(g::text) FROM generate_series(1, 2000) g')
        )
        try:
            with conn.begin_nested():
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                conn.execute(text("SELECT count(*) FROM pg_stat_statements")).scalar()
            statements = True
        except Exception:  # not preloaded on this server: the queries page says so
            statements = False
        history.snapshot(conn)
    with engine.begin() as conn:
        for i in range(20):
            conn.execute(text('SELECT note FROM "select" WHERE id = :id'), {"id": i})
        conn.execute(text('DELETE FROM "select" WHERE id % 3 = 0'))
        conn.execute(
            text(
                "INSERT INTO \"select\" SELECT g, repeat('y', 300) "
                "FROM generate_series(2001, 6000) g"
            )
        )
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
        history.snapshot(conn)
    engine.dispose()
    return {"statements": statements}


def _points(page: Any) -> list[int]:
    return page.evaluate(
        "() => (window.pgwardenCharts || []).map(c => "
        "c.data.datasets.reduce((n, d) => n + d.data.filter(v => v !== null).length, 0))"
    )


def test_the_dashboard_in_chromium(
    served: tuple[str, Any], tokens: dict[str, str], prepared: dict[str, bool]
) -> None:
    base, _app = served
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"{base}{DASH}/")
            assert page.url.endswith(f"{DASH}/login")
            page.fill("#token", tokens["admin"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}{DASH}/")
            for path, charts in PAGES.items():
                page.goto(f"{base}{DASH}{path}")
                expected = charts if path != "/queries" or prepared["statements"] else 0
                canvases = page.locator("canvas[data-chart]").count()
                points = _points(page)
                assert canvases == expected == len(points), (path, canvases, points)
                assert all(count > 0 for count in points), (path, points)
                assert page.locator("a.twin").first.get_attribute("href")
            page.goto(f"{base}{DASH}/backups")
            page.click("#start-backup")
            deadline = time.monotonic() + 180
            while page.locator("#jobs td.succeeded").count() == 0:
                assert page.locator("#jobs td.failed").count() == 0, page.content()
                assert time.monotonic() < deadline, "the backup did not complete"
                page.wait_for_timeout(500)
                if page.locator("#jobs td.running").count() == 0:
                    page.reload()
            page.reload()
            assert page.locator("#backups tr").count() == 2  # the header and one backup
            points = _points(page)
            assert len(points) == 1 and points[0] == 1
            if os.environ.get("PGWARDEN_SCREENSHOT"):  # a PNG of the backups page, to look at
                page.screenshot(path=os.environ["PGWARDEN_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
    assert problems == []
