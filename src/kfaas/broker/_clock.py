"""Time for the dev broker: the real clock, or a manual one that tests move forward by hand."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """What the broker needs of time: the current instant (timezone-aware) and a way to wait."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class ManualClock:
    """A clock that only moves when :meth:`advance` is called; sleepers wake when their instant is reached.

    ``await clock.advance(timedelta(minutes=1))`` fires a ``* * * * *`` ping source once, with no real wait.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        heapq.heappush(self._sleepers, (self._now + timedelta(seconds=seconds), next(self._seq), future))
        await future

    @property
    def sleepers(self) -> int:
        """How many tasks wait on this clock right now."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, delta: timedelta) -> None:
        """Move time forward, waking every sleeper whose instant has come, in order, and let them run."""
        target = self._now + delta
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            if not future.done():
                future.set_result(None)
            for _ in range(5):  # let the woken task run up to its next await
                await asyncio.sleep(0)
        self._now = target
