"""Requests in progress, for draining on SIGTERM (the runtime, the gateway, the dead-letter sink)."""

from __future__ import annotations

import asyncio

__all__ = ["InFlight"]


class InFlight:
    """``with in_flight:`` around each request; ``await in_flight.wait_idle(timeout)`` when stopping."""

    __slots__ = ("_idle", "count")

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> InFlight:
        self.count += 1
        self._idle.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True once no request is in progress; False if some still are after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
