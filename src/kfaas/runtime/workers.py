"""The threads that run synchronous functions.

``asyncio.to_thread`` goes through ``concurrent.futures`` (a Future with its condition variable, chained
to an asyncio future by callbacks) for every call. Here a call is a tuple on a ``queue.SimpleQueue`` and its
result is set on the asyncio future with one ``call_soon_threadsafe``: the same semantics (the caller's
context variables, exceptions raised in the caller, a cancelled caller not waiting) with less work per
call (docs/benchmarks.md). Threads start when calls outnumber them, up to ``size``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Workers"]


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class Workers:
    """Up to ``size`` threads; ``await workers.run(func, *args)`` from the event loop."""

    def __init__(self, size: int, name: str = "kfaas-function") -> None:
        self.size = size
        self._name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._busy = 0  # calls handed over whose thread has not finished them (read and written on the loop)

    async def run(self, func: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._busy += 1
        if self._busy > len(self._threads) and len(self._threads) < self.size:
            self._start()
        self._queue.put((loop, future, contextvars.copy_context(), func, args))
        # a caller that stops waiting (a cancelled invocation) does not free the thread: the call stays
        # counted until its thread has finished it, so the next call gets a thread of its own meanwhile
        return await future

    def _finished(self, future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        self._busy -= 1
        _settle(future, ok, value)

    def _start(self) -> None:
        thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is None:
                return
            loop, future, context, func, args = job
            if future.cancelled():  # its caller stopped waiting before it began: not run, as to_thread
                ok, value = False, None
            else:
                try:
                    result = context.run(func, *args)
                except BaseException as exc:  # handed to the caller, as asyncio.to_thread does
                    ok, value = False, exc
                else:
                    ok, value = True, result
            del job, func, args
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(self._finished, future, ok, value)

    def close(self) -> None:
        """Let the threads end once the calls queued before are done (they are daemons: a call that never
        returns does not keep the process)."""
        for _ in self._threads:
            self._queue.put(None)
        self._threads = []
