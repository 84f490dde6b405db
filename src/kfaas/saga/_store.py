"""Executions in MongoDB: what the engines share, and what ``kfaas executions`` reads.

Designed for single-document atomicity only (FerretDB 1.x, used in CI, has no multi-document transactions
and no TTL indexes; the same operations are right on MongoDB 7):

- ``saga_executions``: one summary per execution (state machine, name, status, input, output, error,
  cause, times, owner, redrive count). Inserted at the start: its unique ``_id`` makes a start idempotent.
- ``saga_transitions``: one document per transition, insert-only: ``_id`` is ``<execution>#<n>``, so two
  engines that both try to write transition *n* of an execution cannot both succeed (optimistic
  concurrency through the unique key: the loser reloads or gives the execution up). Each holds the history
  events of that transition and the execution's whole interpreter state after it, so the newest one is
  all a successor engine needs to continue. Both are stored as JSON text: payloads are the users' JSON,
  whose keys may hold ``.`` or start with ``$`` (FerretDB 1.x refuses such keys in documents). The
  summaries keep ``input`` and ``output`` as JSON text for the same reason.
- ``saga_signals``: the inbox for replies that reached an engine other than the owner, and for stop and
  redrive requests; ``_id`` deduplicates (one per task attempt and kind).
- ``saga_engines``: one heartbeat per engine process; an owner whose heartbeat is older than the lease has
  its executions taken over.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError, OperationFailure

__all__ = [
    "ENGINES",
    "EXECUTIONS",
    "SIGNALS",
    "TRANSITIONS",
    "ExecutionAlreadyExists",
    "Store",
    "execution_id",
    "now_dt",
]

EXECUTIONS = "saga_executions"
TRANSITIONS = "saga_transitions"
SIGNALS = "saga_signals"
ENGINES = "saga_engines"


class ExecutionAlreadyExists(Exception):
    """A start named an execution that exists with another input, or that has ended (AWS's error name)."""


def execution_id(state_machine: str, name: str) -> str:
    return f"{state_machine}:{name}"


def now_dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class Store:
    def __init__(self, db: Any) -> None:
        self.db = db
        self.executions = db[EXECUTIONS]
        self.transitions = db[TRANSITIONS]
        self.signals = db[SIGNALS]
        self.engines = db[ENGINES]

    async def ensure_indexes(self) -> None:
        """Indexes for MongoDB; FerretDB creates them too (its SQLite backend scans regardless)."""
        try:
            await self.transitions.create_index([("e", ASCENDING), ("n", DESCENDING)], name="by_execution")
            await self.executions.create_index(
                [("status", ASCENDING), ("owner", ASCENDING)], name="by_status"
            )
            await self.executions.create_index(
                [("stateMachine", ASCENDING), ("startDate", DESCENDING)], name="by_machine"
            )
            await self.signals.create_index([("e", ASCENDING)], name="by_execution")
        except OperationFailure:  # a server without createIndexes for these shapes: queries still work
            pass

    # -- executions ----------------------------------------------------------------------------------------
    async def insert_execution(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Insert a new summary; an existing one with the same input that still runs is returned instead."""
        try:
            await self.executions.insert_one(summary)
            return summary
        except DuplicateKeyError:
            existing = await self.executions.find_one({"_id": summary["_id"]})
            if existing is None:  # deleted in between
                raise ExecutionAlreadyExists(summary["_id"]) from None
            if existing.get("status") == "RUNNING" and existing.get("input") == summary.get("input"):
                return dict(existing)
            raise ExecutionAlreadyExists(
                f"execution {summary['_id']} already exists ({existing.get('status')}) with "
                + ("another input" if existing.get("input") != summary.get("input") else "the same input")
            ) from None

    async def get(self, exec_id: str) -> dict[str, Any] | None:
        doc = await self.executions.find_one({"_id": exec_id})
        return dict(doc) if doc is not None else None

    async def update(
        self, exec_id: str, fields: dict[str, Any], expect: dict[str, Any] | None = None
    ) -> bool:
        result = await self.executions.update_one({"_id": exec_id, **(expect or {})}, {"$set": fields})
        return bool(result.matched_count)

    async def list_executions(
        self, state_machine: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {}
        if state_machine:
            query["stateMachine"] = state_machine
        if status:
            query["status"] = status
        cursor = (
            self.executions.find(query, {"input": 0, "output": 0}).sort("startDate", DESCENDING).limit(limit)
        )
        return [dict(d) async for d in cursor]

    async def claimable(self, dead: list[str], limit: int = 200) -> list[dict[str, Any]]:
        """Running executions without an owner, or whose owner stopped heartbeating."""
        owners: list[Any] = [None, *dead]
        cursor = self.executions.find({"status": "RUNNING", "owner": {"$in": owners}}).limit(limit)
        return [dict(d) async for d in cursor]

    async def claim(self, exec_id: str, previous: str | None, owner: str) -> dict[str, Any] | None:
        doc = await self.executions.find_one_and_update(
            {"_id": exec_id, "status": "RUNNING", "owner": previous}, {"$set": {"owner": owner}}
        )
        return dict(doc) if doc is not None else None

    async def owned_by(self, owner: str) -> set[str]:
        cursor = self.executions.find({"status": "RUNNING", "owner": owner}, {"_id": 1})
        return {d["_id"] async for d in cursor}

    # -- transitions -----------------------------------------------------------------------------------
    async def insert_transitions(self, docs: list[dict[str, Any]]) -> tuple[set[int], set[int]]:
        """Insert transitions in one round trip; returns the indexes of ``docs`` that lost a race (their
        ``_id`` existed) and of those that failed otherwise."""
        from pymongo.errors import BulkWriteError

        try:
            await self.transitions.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            lost = {int(e["index"]) for e in errors if e.get("code") == 11000}
            return lost, {int(e["index"]) for e in errors} - lost
        return set(), set()

    async def latest(self, exec_id: str) -> tuple[int, dict[str, Any]] | None:
        """(n, interpreter state) of the execution's newest transition."""
        cursor = self.transitions.find({"e": exec_id}).sort("n", DESCENDING).limit(1)
        async for doc in cursor:
            return int(doc["n"]), json.loads(doc["state"])
        return None

    async def history(self, exec_id: str) -> list[dict[str, Any]]:
        cursor = self.transitions.find({"e": exec_id}, {"events": 1, "n": 1}).sort("n", ASCENDING)
        events: list[dict[str, Any]] = []
        async for doc in cursor:
            events += json.loads(doc.get("events") or "[]")
        return events

    # -- signals --------------------------------------------------------------------------------------
    async def add_signal(self, signal: dict[str, Any]) -> None:
        with contextlib.suppress(DuplicateKeyError):  # the same reply delivered again: once is enough
            await self.signals.insert_one(signal)

    async def pending_signals(self, limit: int = 1000) -> list[dict[str, Any]]:
        return [dict(d) async for d in self.signals.find({}).limit(limit)]

    async def signals_of(self, exec_id: str) -> list[dict[str, Any]]:
        return [dict(d) async for d in self.signals.find({"e": exec_id})]

    async def delete_signals(self, ids: list[str]) -> None:
        if ids:
            await self.signals.delete_many({"_id": {"$in": ids}})

    # -- engines --------------------------------------------------------------------------------------
    async def heartbeat(self, engine: str, url: str, now: float) -> None:
        await self.engines.update_one({"_id": engine}, {"$set": {"url": url, "alive": now}}, upsert=True)

    async def engines_list(self) -> list[dict[str, Any]]:
        return [dict(d) async for d in self.engines.find({})]

    async def forget_engine(self, engine: str) -> None:
        await self.engines.delete_one({"_id": engine})
