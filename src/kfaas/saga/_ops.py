"""Operations on executions shared by the engine's API and ``kfaas executions`` (which talks to MongoDB)."""

from __future__ import annotations

from typing import Any

from kfaas.saga._store import Store

__all__ = ["NotFound", "Refused", "describe", "history", "redrive", "stop"]


class NotFound(LookupError):
    pass


class Refused(ValueError):
    """The execution is not in a state that allows it (e.g. redriving one that runs)."""


async def describe(store: Store, exec_id: str) -> dict[str, Any]:
    summary = await store.get(exec_id)
    if summary is None:
        raise NotFound(f"no execution {exec_id!r} (ids are <state machine>:<name>)")
    return summary


async def history(store: Store, exec_id: str) -> list[dict[str, Any]]:
    await describe(store, exec_id)
    return await store.history(exec_id)


async def stop(store: Store, exec_id: str, error: str | None = None, cause: str | None = None) -> None:
    summary = await describe(store, exec_id)
    if summary["status"] != "RUNNING":
        raise Refused(f"execution {exec_id} is {summary['status']}, not RUNNING")
    await store.add_signal(
        {"_id": f"{exec_id}|stop", "e": exec_id, "kind": "stop", "task": "", "error": error, "cause": cause}
    )


async def redrive(store: Store, exec_id: str) -> int:
    """Ask for a redrive: the summary goes back to RUNNING without an owner; an engine claims and redrives it."""
    summary = await describe(store, exec_id)
    if summary["status"] not in ("FAILED", "TIMED_OUT", "ABORTED"):
        raise Refused(
            f"execution {exec_id} is {summary['status']}: only FAILED, TIMED_OUT or ABORTED ones are redriven"
        )
    count = int(summary.get("redriveCount", 0)) + 1
    ok = await store.update(
        exec_id,
        {"status": "RUNNING", "owner": None, "redriveCount": count, "stopDate": None},
        {"status": summary["status"], "redriveCount": summary.get("redriveCount", 0)},
    )
    if not ok:
        raise Refused(f"execution {exec_id} changed meanwhile; look again")
    await store.signals.delete_many({"_id": f"{exec_id}|stop"})
    return count
