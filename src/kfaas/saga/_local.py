"""Run a state machine in this process: the interpreter driven by asyncio, tasks through a Python callable.

For tests, for ``kfaas saga run`` and anywhere a durable engine is not wanted: nothing is persisted, a Wait
or a retry back-off really waits. ``invoke(task, context)`` runs one task: it returns the result or raises;
:class:`TaskFailed` carries an ASL error name and cause, any other exception is reported as Lambda reports
a Python error (the class name is the error, ``{"errorMessage", "errorType"}`` the cause).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kfaas.saga._definition import Machine
from kfaas.saga._interpreter import DEFAULT_LIMITS, Limits, Run

__all__ = ["Invoker", "TaskFailed", "error_of", "run_local"]

Invoker = Callable[[dict[str, Any], dict[str, Any]], Awaitable[Any]]


class TaskFailed(Exception):
    """A task's failure with its ASL error name and cause."""

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.cause = cause


def error_of(exc: BaseException) -> tuple[str, str]:
    """(error, cause) as Step Functions reports a Lambda function's exception."""
    if isinstance(exc, TaskFailed):
        return exc.error, exc.cause or ""
    name = type(exc).__name__
    return name, json.dumps({"errorMessage": str(exc), "errorType": name}, separators=(",", ":"))


async def run_local(  # noqa: PLR0912 (the driving loop reads best in one piece)
    machine: Machine,
    input_: Any,
    invoke: Invoker,
    *,
    name: str = "local",
    state_machine: str = "local",
    limits: Limits = DEFAULT_LIMITS,
    clock: Callable[[], float] = time.time,
) -> tuple[Run, list[dict[str, Any]]]:
    """Run to the end; returns the run (status, output, error, cause in ``run.doc``) and its whole history."""
    run = Run.start(
        machine,
        input_,
        execution_id=f"{state_machine}:{name}",
        name=name,
        state_machine=state_machine,
        now=clock(),
        limits=limits,
    )
    history: list[dict[str, Any]] = []
    running: dict[str, asyncio.Task[Any]] = {}
    try:
        while True:
            history += run.events
            run.events = []
            if run.done:
                return run, history
            ready = run.runnable()
            if ready:
                for fid in ready:
                    if fid in run.doc["frames"]:
                        run.step(fid, clock())
                continue
            for task in run.tasks():
                if task["id"] not in running:
                    running[task["id"]] = asyncio.ensure_future(invoke(task, run.doc["context"]))
            due = run.next_due()
            timeout = None if due is None else max(0.0, due - clock())
            if running:
                finished, _ = await asyncio.wait(
                    list(running.values()), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            else:
                await asyncio.sleep(timeout or 0.0)
                finished = set()
            for task_id, future in list(running.items()):
                if future not in finished:
                    continue
                del running[task_id]
                exc = future.exception()
                if exc is None:
                    run.on_result(task_id, future.result(), clock())
                else:
                    error, cause = error_of(exc)
                    run.on_error(task_id, error, cause, clock())
                history += run.events
                run.events = []
            for fid, timer in run.due_timers(clock()):
                run.on_timer(fid, timer, clock())
                history += run.events
                run.events = []
            live = {t["id"] for t in run.tasks()}
            for task_id in [t for t in running if t not in live]:
                running.pop(task_id).cancel()
    finally:
        for future in running.values():
            future.cancel()
