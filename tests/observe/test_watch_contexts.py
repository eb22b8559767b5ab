"""Which watch a statement belongs to when it runs outside the context that opened the
watch: in a thread started without it, in a task made before the watch began, in a task
that outlived its watch, in a request served by a server started earlier."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from pgwarden import observe


def _load_shop() -> ModuleType:
    path = Path(__file__).with_name("asyncapp") / "shop.py"
    spec = importlib.util.spec_from_file_location("pgwarden_tests_shop", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # where SQLAlchemy resolves the models' annotations
    spec.loader.exec_module(module)
    return module


shop = _load_shop()


@pytest.fixture
def shop_url(pg_url: str) -> str:
    url = sa.make_url(pg_url).set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    shop.fill(engine)
    engine.dispose()
    return url.render_as_string(hide_password=False)


@pytest.fixture
def sync_engine(shop_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(shop_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def relationships(watch: observe.Watch) -> list[str | None]:
    return [finding.relationship for finding in watch.findings()]


def test_a_thread_started_without_the_context_belongs_to_the_everywhere_watch(
    sync_engine: sa.Engine,
) -> None:
    def read() -> None:
        assert shop.shelf_tags_in_thread(sync_engine, False) == shop.SHELF_TAGS

    with observe.watch("test", mode="log", everywhere=True) as test:
        with observe.watch("block", mode="log") as block:
            thread = threading.Thread(target=read)
            thread.start()
            thread.join()
        assert block.findings() == []  # not started from the block's context
    assert relationships(test) == ["Shelf.tags"]
    with observe.watch("alone", mode="log") as alone:  # no watch everywhere: nobody's
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    assert alone.findings() == []


async def read_when_told(url: str, go: asyncio.Event) -> list[list[str]]:
    """Wait for ``go``, then read each shelf's tags, one lazy load per shelf."""
    engine = create_async_engine(url, poolclass=sa.pool.NullPool)
    try:
        await go.wait()
        async with AsyncSession(engine) as session:
            return await shop.shelf_tags(session, False)  # type: ignore[no-any-return]
    finally:
        await engine.dispose()


def test_a_task_made_before_the_watch_began_belongs_to_the_everywhere_watch(
    shop_url: str,
) -> None:
    async def main() -> observe.Watch:
        go = asyncio.Event()
        task = asyncio.create_task(read_when_told(shop_url, go))
        with observe.watch("test", mode="log", everywhere=True) as test:
            go.set()
            assert await task == shop.SHELF_TAGS
        return test

    assert relationships(asyncio.run(main())) == ["Shelf.tags"]


def test_a_task_that_outlives_its_watch_reports_to_the_everywhere_watch(
    shop_url: str,
) -> None:
    async def main() -> tuple[observe.Watch, observe.Watch]:
        go = asyncio.Event()
        with observe.watch("test", mode="log", everywhere=True) as test:
            with observe.watch("block", mode="log") as block:
                task = asyncio.create_task(read_when_told(shop_url, go))
            go.set()
            assert await task == shop.SHELF_TAGS
        return test, block

    test, block = asyncio.run(main())
    assert block.findings() == []
    assert relationships(test) == ["Shelf.tags"]


@pytest.fixture
def server(shop_url: str) -> Iterator[str]:
    """Serve the shop with uvicorn, in a thread started before any watch; yield its URL."""
    engine = create_async_engine(shop_url, poolclass=sa.pool.NullPool)
    app = shop.create_app(async_sessionmaker(engine))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    served = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=served.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not served.started and thread.is_alive():
        time.sleep(0.01)
    host, port = listener.getsockname()
    try:
        yield f"http://{host}:{port}"
    finally:
        served.should_exit = True
        thread.join()
        listener.close()


def test_a_request_served_by_a_server_started_earlier_is_the_requests(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pgwarden.observe.nplusone")
    with observe.watch("test", mode="log", everywhere=True) as test:
        response = httpx.get(f"{server}/shelves")
        assert response.json() == shop.SHELF_TAGS
        eager = httpx.get(f"{server}/shelves", params={"eager": "true"})
        assert eager.json() == shop.SHELF_TAGS
    # The request's own watch (the middleware's) found it, and told the test's.
    [record] = [r for r in caplog.records if getattr(r, "watch", None) == "GET /shelves"]
    assert "Shelf.tags lazy-loaded 3 times" in record.getMessage()
    [finding] = test.findings()
    assert finding.relationship == "Shelf.tags"
    assert finding.fix == ".options(selectinload(Shelf.tags))"
    assert finding.trigger is not None and finding.trigger.filename.endswith("shop.py")
