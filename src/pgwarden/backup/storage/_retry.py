"""Retry an operation on transient errors, with exponential backoff and full jitter."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["Backoff", "retry"]

T = TypeVar("T")
log = logging.getLogger("pgwarden.backup.storage")


@dataclass(frozen=True)
class Backoff:
    """Say how often and how long to wait between attempts.

    The wait before retry ``n`` (from 0) is uniform in ``[0, min(cap, base * 2**n)]``
    ("full jitter"), so many clients that failed together do not retry together.
    """

    attempts: int = 4
    base: float = 1.0
    cap: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delays(self) -> Iterator[float]:
        """Yield the waits before each retry: ``attempts - 1`` of them."""
        for n in range(self.attempts - 1):
            yield self.rng.uniform(0, min(self.cap, self.base * 2**n))


def retry(
    operation: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool],
    backoff: Backoff,
    describe: str,
) -> T:
    """Return ``operation()``, calling it again after a wait when it fails transiently.

    An error that ``transient`` rejects, or the last one, propagates unchanged.
    ``describe`` names the operation in the warning logged before each retry.
    """
    delays = backoff.delays()
    while True:
        try:
            return operation()
        except Exception as exc:
            if not transient(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            log.warning("%s failed (%s); retrying in %.2fs", describe, type(exc).__name__, delay)
            backoff.sleep(delay)
