"""A transactional outbox: a document and the messages that announce it are written as one unit.

``await ctx.outbox.insert_one("orders", doc, OutboxMessage(queue="orders", body=...))`` returns once the
document is stored; from then on its messages are sent to RabbitMQ (publisher confirms), by this process or,
if it dies first, by the next process of the same function. Nothing is sent for a document that was not
stored. MongoDB's multi-document transactions are not used (FerretDB 1.x has none); the design needs only
single-document atomicity, so it is the same on FerretDB and MongoDB 7:

1. the messages are written first, as one entry in ``kfaas_outbox`` (``{_id, fn, coll, doc, messages,
   lease_until}``); this entry alone sends nothing;
2. the document is inserted with the entry's id in its ``_kfaas_outbox`` field. This insert is the commit
   point: an entry counts only while its document carries its id. An insert whose answer was lost
   (MongoDB went away mid-write) is retried until it is known whether it happened (a duplicate key with our
   id means it did), within ``within`` seconds;
3. the relay of this process publishes the messages, and deletes the entry once RabbitMQ confirmed them.

While RabbitMQ is away the relay retries with backoff, extending the entries' leases. An entry whose lease
has run out (its process died) is claimed by the relay of any process of the same function, which sends it
if its document was committed and drops it if not. A message can therefore be sent twice (a process that
died after the confirm and before the delete), never zero times for a stored document: consumers
deduplicate, as they must for any at-least-once delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from kfaas.base.errors import ServiceUnavailable
from kfaas.runtime.settings import Settings

__all__ = ["MARKER", "OUTBOX_COLLECTION", "Outbox", "OutboxMessage"]

log = logging.getLogger("kfaas.outbox")

OUTBOX_COLLECTION = "kfaas_outbox"
MARKER = "_kfaas_outbox"  # the field of a stored document that names its outbox entry
RELAY_LEASE = 30.0  # seconds an entry claimed by a relay is its own
DECIDE_MARGIN = 2.0  # seconds past its ``within`` during which a new entry is its writer's alone
SWEEP_EVERY = 2.0  # seconds between looks for entries left by other processes
BATCH = 64  # messages published at once
BACKOFF = (0.2, 5.0)  # first and longest wait between failed publishes


@dataclass(frozen=True)
class OutboxMessage:
    """One message for a durable quorum queue, sent like :meth:`kfaas.Context.enqueue` sends it."""

    queue: str
    body: bytes
    message_id: str | None = None
    content_type: str = "application/json"
    headers: Mapping[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "body": self.body,
            "message_id": self.message_id,
            "content_type": self.content_type,
            "headers": dict(self.headers),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> OutboxMessage:
        return cls(
            queue=str(doc["queue"]),
            body=bytes(doc["body"]),
            message_id=doc.get("message_id"),
            content_type=str(doc.get("content_type") or "application/json"),
            headers=dict(doc.get("headers") or {}),
        )


def _transient(exc: BaseException) -> bool:
    """A MongoDB failure whose outcome is unknown or that may pass: no answer, a lost connection, a timeout."""
    from pymongo.errors import ConnectionFailure, PyMongoError

    return isinstance(exc, ConnectionFailure) or (isinstance(exc, PyMongoError) and exc.timeout)


class _Host(Protocol):
    """What the outbox needs of the :class:`~kfaas.Context` it belongs to."""

    settings: Settings

    @property
    def db(self) -> Any: ...

    async def enqueue(
        self,
        queue: str,
        body: bytes,
        *,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        content_type: str = "application/json",
    ) -> None: ...


class Outbox:
    """The outbox of one function process (``ctx.outbox``); see the module docstring."""

    def __init__(self, ctx: _Host) -> None:
        self.ctx = ctx
        self._local: dict[str, dict[str, Any]] = {}  # committed entries this process sends: id -> entry
        self._sent: set[str] = set()  # sent, entry not deleted yet
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while this process holds nothing unsent
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._used = False
        self._closing = False
        self.sent = 0  # messages confirmed by RabbitMQ since start (for logs and tests)

    @property
    def pending(self) -> int:
        """Entries this process holds that are not sent yet."""
        return len(self._local)

    def _coll(self) -> Any:
        return self.ctx.db[OUTBOX_COLLECTION]

    @property
    def _owner(self) -> str:
        return self.ctx.settings.function_name or self.ctx.settings.target or "function"

    # -- writing -------------------------------------------------------------------------------------
    async def insert_one(
        self,
        collection: str,
        document: Mapping[str, Any],
        *messages: OutboxMessage,
        within: float | None = None,
    ) -> None:
        """Insert ``document`` (it needs an ``_id``) into ``collection``; then send ``messages``.

        Raises pymongo's ``DuplicateKeyError`` when another document has this ``_id`` (nothing is sent),
        :class:`kfaas.ServiceUnavailable` when MongoDB did not answer: its message says whether nothing was
        stored or the outcome is unknown (MongoDB went away mid-write and stayed away ``within`` seconds,
        by default half the function's timeout).
        """
        import uuid

        from pymongo.errors import DuplicateKeyError, PyMongoError

        if not self.ctx.settings.amqp_url:
            raise RuntimeError("the outbox sends to RabbitMQ: set AMQP_URL")
        if "_id" not in document:
            raise ValueError("an outbox document needs an _id")
        self._use()
        budget = within if within is not None else (self.ctx.settings.timeout or 30.0) / 2
        doc_id = document["_id"]
        now = datetime.now(UTC)
        entry: dict[str, Any] = {
            "_id": uuid.uuid4().hex,
            "fn": self._owner,
            "coll": collection,
            "doc": doc_id,
            "messages": [m.to_doc() for m in messages],
            "created_at": now,
            # no other relay touches it while this request decides; then this process's relay extends it
            "lease_until": now + timedelta(seconds=budget + DECIDE_MARGIN),
        }
        try:
            await self._coll().insert_one(entry)
        except PyMongoError as exc:
            # an entry without its document is dropped by the relay: nothing was stored in effect
            raise ServiceUnavailable(f"MongoDB did not answer, nothing was stored: {exc}") from exc
        target = self.ctx.db[collection]
        stored = {**document, MARKER: entry["_id"]}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        delay = 0.1
        while True:
            try:
                await target.insert_one(stored)
                break
            except DuplicateKeyError:
                existing = await target.find_one({"_id": doc_id}, {MARKER: 1})
                if existing is not None and existing.get(MARKER) == entry["_id"]:
                    break  # an earlier try of ours was stored after all
                await self._drop_entry(entry["_id"])
                raise
            except PyMongoError as exc:
                if not _transient(exc):
                    await self._drop_entry(entry["_id"])
                    raise
                if loop.time() + delay > deadline:
                    await self._give_up(target, doc_id, entry["_id"], exc)
                log.warning(
                    "storing %s/%s: %s; retrying to learn whether it was stored", collection, doc_id, exc
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        self._hold(entry)

    def _hold(self, entry: dict[str, Any]) -> None:
        self._local[entry["_id"]] = entry
        self._idle.clear()
        self._wake.set()

    async def _give_up(self, target: Any, doc_id: Any, entry_id: str, exc: BaseException) -> None:
        """MongoDB stayed away: withdraw the write if MongoDB answers now, else say the outcome is unknown."""
        from pymongo.errors import PyMongoError

        try:
            await target.delete_one({"_id": doc_id, MARKER: entry_id})
        except PyMongoError:
            log.error(
                "the outcome of storing %s is unknown (MongoDB did not answer); if it was stored, the outbox "
                "sends its messages once MongoDB answers",
                doc_id,
            )
            raise ServiceUnavailable(
                f"MongoDB went away while {doc_id} was being stored, so whether it was is unknown; "
                f"retry with the same id: {exc}"
            ) from exc
        await self._drop_entry(entry_id)
        raise ServiceUnavailable(f"MongoDB did not answer, nothing was stored: {exc}") from exc

    async def _drop_entry(self, entry_id: str) -> None:
        from pymongo.errors import PyMongoError

        with contextlib.suppress(PyMongoError):  # left behind, it is dropped by a relay after its lease
            await self._coll().delete_one({"_id": entry_id})

    # -- the relay -----------------------------------------------------------------------------------
    def _use(self) -> None:
        self._used = True
        self.start()

    def start(self) -> None:
        """Run the relay (idempotent). At start-up it looks once for entries another process left."""
        if self._task is None and not self._closing:
            self._task = asyncio.create_task(self._run(), name="kfaas-outbox-relay")

    async def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until this process has sent what it holds; True when nothing is left."""
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return not (self._local or self._sent)

    async def close(self, timeout: float = 3.0) -> None:
        """Send what is held for up to ``timeout`` s, then stop; the rest waits for the next process."""
        if self._task is None:
            return
        if self._local:
            await self.flush(timeout)
        self._closing = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._local:
            await self._hand_over()

    async def _hand_over(self) -> None:
        """Let any other process of this function send the entries held here, from now on."""
        from pymongo.errors import PyMongoError

        held = list(self._local)
        try:
            await self._coll().update_many(
                {"_id": {"$in": held}}, {"$set": {"lease_until": datetime.now(UTC)}}
            )
        except PyMongoError as exc:
            log.warning(
                "outbox: %d entr(ies) left unsent; another process sends them after their lease: %s",
                len(held),
                exc,
            )
            return
        log.warning("outbox: %d entr(ies) left for the next process of %s to send", len(held), self._owner)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.0
        next_sweep = loop.time()
        sweeping = True
        while True:
            self._wake.clear()  # before looking: a message held from now on sets it again
            try:
                if sweeping and loop.time() >= next_sweep:
                    sweeping = await self._sweep() or self._used
                    next_sweep = loop.time() + SWEEP_EVERY
                if self._local or self._sent:
                    if await self._send_batch():
                        backoff = 0.0
                        continue
                    backoff = min(max(backoff * 2, BACKOFF[0]), BACKOFF[1])
                    wait: float | None = backoff
                else:
                    backoff = 0.0
                    wait = max(0.0, next_sweep - loop.time()) if sweeping else None
            except Exception:  # the relay must outlive any one failure
                log.exception("outbox: the relay failed; going on")
                wait = BACKOFF[1]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            sweeping = sweeping or self._used

    async def _send_batch(self) -> bool:
        """Publish up to BATCH held entries, delete the sent ones; False when something failed."""
        from pymongo.errors import PyMongoError

        ids = [i for i in list(self._local)[:BATCH] if i not in self._sent]
        results = await asyncio.gather(*(self._publish(self._local[i]) for i in ids), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for entry_id, result in zip(ids, results, strict=True):
            if not isinstance(result, BaseException):
                self._sent.add(entry_id)
        if failed:
            log.warning("outbox: %d of %d message(s) not sent yet: %r", len(failed), len(ids), failed[0])
            await self._extend_leases()
        if self._sent:
            done = list(self._sent)
            try:
                await self._coll().delete_many({"_id": {"$in": done}})
            except PyMongoError as exc:
                log.warning("outbox: %d sent entr(ies) not deleted yet: %s", len(done), exc)
                return False
            for entry_id in done:
                self._sent.discard(entry_id)
                self._local.pop(entry_id, None)
            if not self._local:
                self._idle.set()
        return not failed

    async def _publish(self, entry: Mapping[str, Any]) -> None:
        for raw in entry["messages"]:
            message = OutboxMessage.from_doc(raw)
            await self.ctx.enqueue(
                message.queue,
                message.body,
                headers=message.headers,
                message_id=message.message_id,
                content_type=message.content_type,
            )
        self.sent += len(entry["messages"])

    async def _extend_leases(self) -> None:
        """Keep the entries held here from being taken by another process while RabbitMQ is away."""
        from pymongo.errors import PyMongoError

        now = datetime.now(UTC)
        soon = now + timedelta(seconds=RELAY_LEASE / 2)
        due = [i for i, e in self._local.items() if e["lease_until"] <= soon]
        if not due:
            return
        until = now + timedelta(seconds=RELAY_LEASE)
        try:
            await self._coll().update_many({"_id": {"$in": due}}, {"$set": {"lease_until": until}})
        except PyMongoError as exc:
            log.warning("outbox: could not extend %d lease(s): %s", len(due), exc)
            return
        for entry_id in due:
            self._local[entry_id]["lease_until"] = until

    async def _sweep(self) -> bool:
        """Claim entries of this function whose lease ran out; True while any entry of it exists."""
        from pymongo import ReturnDocument
        from pymongo.errors import OperationFailure, PyMongoError

        coll = self._coll()
        try:
            entries = await coll.find({"fn": self._owner}, {"lease_until": 1}).limit(BATCH).to_list()
        except OperationFailure as exc:
            if not self._used:  # a function that never used the outbox may not read its collection
                log.debug("outbox: not looking for entries: %s", exc)
                return False
            log.warning("outbox: cannot look for entries: %s", exc)
            return True
        except PyMongoError as exc:
            log.warning("outbox: cannot look for entries yet: %s", exc)
            return True
        now = datetime.now(UTC)
        taken = 0
        for found in entries:
            if found["_id"] in self._local or found["lease_until"] >= now:
                continue
            try:
                entry = await coll.find_one_and_update(
                    {"_id": found["_id"], "lease_until": {"$lt": now}},
                    {"$set": {"lease_until": now + timedelta(seconds=RELAY_LEASE)}},
                    return_document=ReturnDocument.AFTER,
                )
                if entry is None:
                    continue  # another process took it
                stored = await self.ctx.db[entry["coll"]].find_one(
                    {"_id": entry["doc"], MARKER: entry["_id"]}, {"_id": 1}
                )
                if stored is None:  # its document was never stored: there is nothing to announce
                    await coll.delete_one({"_id": entry["_id"]})
                    continue
            except PyMongoError as exc:
                log.warning("outbox: cannot claim entries yet: %s", exc)
                return True
            self._hold(entry)
            taken += 1
        if taken:
            log.info("outbox: sending %d entr(ies) another process of %s left unsent", taken, self._owner)
        return bool(entries)
