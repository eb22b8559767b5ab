"""The API's short cache: one computation per key at a time, a stale result served while
one refresh runs."""

from __future__ import annotations

import asyncio

import pytest

from pgwarden.api.options import ApiOptions
from pgwarden.config import Settings

_runtime = pytest.importorskip("pgwarden.api._runtime")


def _runtime_of() -> object:
    # Never connected: the cache does not touch the database.
    return _runtime.Runtime(
        Settings(database_url="postgresql://nobody@127.0.0.1:1/none"), ApiOptions()
    )


def test_a_stale_result_is_served_while_one_refresh_runs() -> None:
    runtime = _runtime_of()
    calls: list[int] = []
    release = asyncio.Event()

    async def compute() -> int:
        calls.append(1)
        if len(calls) > 1:
            await release.wait()
        return len(calls)

    async def scenario() -> None:
        assert await runtime.cached("k", 0.05, compute, stale_s=60) == 1  # type: ignore[attr-defined]
        await asyncio.sleep(0.1)  # expired, within the stale window
        served = [await runtime.cached("k", 0.05, compute, stale_s=60) for _ in range(5)]  # type: ignore[attr-defined]
        assert served == [1] * 5  # none waited for the refresh
        await asyncio.sleep(0.01)
        assert len(calls) == 2  # one refresh runs, not five
        assert await runtime.cached("k", 0.05, compute, stale_s=60) == 1  # type: ignore[attr-defined]
        release.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not runtime._flights:  # type: ignore[attr-defined]
                break
        assert await runtime.cached("k", 0.05, compute, stale_s=60) == 2  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_without_a_stale_window_callers_share_one_computation_and_its_error() -> None:
    runtime = _runtime_of()
    calls: list[int] = []

    async def failing() -> int:
        calls.append(1)
        await asyncio.sleep(0.05)
        raise ValueError("the database went away")

    async def scenario() -> None:
        results = await asyncio.gather(
            *(runtime.cached("k", 10, failing) for _ in range(10)),  # type: ignore[attr-defined]
            return_exceptions=True,
        )
        assert len(calls) == 1
        assert all(isinstance(r, ValueError) for r in results)
        with pytest.raises(
            ValueError, match="went away"
        ):  # nothing cached: the next caller tries again
            await runtime.cached("k", 10, failing)  # type: ignore[attr-defined]
        assert len(calls) == 2

    asyncio.run(scenario())
