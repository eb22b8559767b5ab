"""The pytest plugin sees what async tests and their async fixtures do, whatever runs them:
anyio, pytest-asyncio in strict and in auto mode. The suite it runs is a small async app
(tests/observe/asyncapp) read six ways, from a session made in async fixtures of each
scope or in the test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import learnhub.api.graphql as graphql_api
import learnhub.api.rest as rest_api
import pytest

from pgwarden.testing.servers import TestServer
from pgwarden_test_support import line_of

REST = Path(rest_api.__file__)
GRAPHQL = Path(graphql_api.__file__)

pytest_plugins = ["pytester"]

APP = Path(__file__).with_name("asyncapp")
SHOP = APP / "shop.py"
ROOT = Path(__file__).parents[2]
# pytest-asyncio is installed in each run; anyio's tests run beside it, in strict mode.
LOOPS = ["-o", "asyncio_default_fixture_loop_scope=session"]
RUNNERS = {
    "anyio": LOOPS,
    "strict": LOOPS,
    "auto": [*LOOPS, "-o", "asyncio_mode=auto", "-o", "asyncio_default_test_loop_scope=session"],
}
SOURCES = ["function_fixture", "module_fixture", "session_fixture", "made_in_the_test"]
ASYNC_LOADS = ["awaitable_attrs", "asgi_client", "test_client"]
SYNC_LOADS = ["run_sync", "executor", "to_thread"]


def suite(pytester: pytest.Pytester, runner: str, tests: dict[str, str]) -> None:
    """Lay out the async app and its fixtures for ``runner``, with ``tests``."""
    pytester.makepyfile(
        matrix_runner=f"RUNNER = {runner!r}\n",
        shop=(APP / "shop.py").read_text(),
        kits=(APP / "kits.py").read_text(),
        conftest=(APP / "fixtures.py").read_text(),
        **tests,
    )


def failures(pytester: pytest.Pytester, *args: str) -> tuple[dict[str, str], set[str]]:
    """Run the suite; return the failure message of each test that failed, and those passed."""
    junit = pytester.path / "report.xml"
    result = pytester.runpytest_subprocess(
        "--pgwarden-nplusone=raise", "-p", "no:cacheprovider", f"--junitxml={junit}", *args
    )
    failed: dict[str, str] = {}
    passed: set[str] = set()
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 - pytest's own report
        name = case.attrib["name"]
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            failed[name] = problem.attrib.get("message", "") + (problem.text or "")
        elif case.find("skipped") is None:
            passed.add(name)
    assert failed or passed, result.stdout.str()
    return failed, passed


@pytest.fixture
def inner(
    pytester: pytest.Pytester, pg_server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    # The inner session reuses this session's server rather than starting its own.
    monkeypatch.setenv("PGWARDEN_TEST_DSN", pg_server.url("postgres"))
    return pytester


def finding(kind: str) -> str:
    """Return the report of the N+1 of shop.py's ``kind`` ("async" or "sync") reading."""
    trigger = line_of(SHOP, f"# {kind} lazy load")
    parent = line_of(SHOP, f"# {kind} parent query")
    return (
        f"N+1: Shelf.tags lazy-loaded 3 times at shop.py:{trigger} for 3 rows loaded "
        f"at shop.py:{parent}; add .options(selectinload(Shelf.tags)) to that query"
    )


@pytest.mark.slow
@pytest.mark.parametrize("runner", list(RUNNERS))
def test_every_n_plus_one_of_an_async_suite_is_reported(
    inner: pytest.Pytester, runner: str
) -> None:
    suite(
        inner,
        runner,
        {
            "test_matrix": (APP / "matrix.py").read_text(),
            "test_phases": (APP / "phases.py").read_text(),
        },
    )
    failed, passed = failures(inner, *RUNNERS[runner])

    # The matrix: each N+1 fails its test with the report, each clean twin passes.
    for source in SOURCES:
        for load in ASYNC_LOADS + SYNC_LOADS:
            assert f"test_{source}[{load}-clean]" in passed, (source, load, failed)
            message = failed.pop(f"test_{source}[{load}-nplusone]", "")
            expected = finding("async" if load in ASYNC_LOADS else "sync")
            assert message.startswith("Failed: N+1 queries in test_matrix.py::"), message
            assert expected in message, (source, load, message)

    # Fixtures: an N+1 in a fixture's setup is reported with the test, marked.
    lazy = finding("async")
    assert f"during setup of fixture 'warmed': {lazy}" in failed.pop("test_warmed")
    # The test passed; its fixture's teardown failed.
    cooled = failed.pop("test_cooled")
    assert cooled.startswith("failed on teardown")
    assert f"during teardown of fixture 'cooled': {lazy}" in cooled
    # A module's fixture is set up, and reported, with the first test that needs it.
    first = failed.pop("test_warmed_once_first")
    assert f"during setup of fixture 'warmed_once': {lazy}" in first
    assert "test_warmed_once_second" in passed
    # A watch in the test saw the block (its assertion held) and reported to the test's.
    nested = failed.pop("test_nested_watch")
    assert lazy in nested and "during" not in nested and "AssertionError" not in nested
    assert "test_allowed" in passed
    assert failed == {}


@pytest.mark.slow
def test_learnhubs_async_tests_report_its_two_deliberate_n_plus_ones(
    inner: pytest.Pytester,
) -> None:
    # learnhub's API tests written as async tests with an async client fixture, run as
    # they are in this repository, with its configuration and fixtures.
    failed, passed = failures(
        inner,
        str(ROOT / "tests" / "learnhub" / "test_api_async.py"),
        f"--rootdir={ROOT}",
        f"--config-file={ROOT / 'pyproject.toml'}",
    )
    author = failed.pop("test_content_list_lazy_loads_each_author")
    assert "N+1: Content.author lazy-loaded" in author
    assert f"at {REST}:{line_of(REST, 'await item.awaitable_attrs.author')} for 10 rows" in author
    assert f"loaded at {REST}:{line_of(REST, '# parent query')};" in author
    assert "add .options(joinedload(Content.author)) to that query" in author
    comments = failed.pop("test_graphql_comments_are_loaded_per_content")
    trigger = line_of(GRAPHQL, "comments = await self.model.awaitable_attrs.comments")
    parent = line_of(GRAPHQL, "items = (await info.context.session.scalars(stmt)).all()")
    assert (
        f"N+1: Content.comments lazy-loaded 8 times at {GRAPHQL}:{trigger} for 8 rows "
        f"loaded at {GRAPHQL}:{parent}; add .options(selectinload(Content.comments))"
    ) in comments
    assert failed == {}
    assert len(passed) == 3
