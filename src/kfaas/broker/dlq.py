"""``kfaas dlq list|show|redrive``: see why a trigger's events were dead-lettered, and send them back.

Each trigger ``<function>-<trigger>`` with ``deadLetter: true`` has a quorum queue
``t.<namespace>.<function>-<trigger>.dlq``. Listing reads the messages without removing them (they return
to the queue when the command ends). Redrive publishes each chosen message to the trigger's own queue
(only that trigger sees it again) without the ``knativeerror*`` extensions, waits for RabbitMQ's confirm,
and only then removes it from the dead-letter queue: an interrupted redrive can duplicate an event, never
lose one.

On Knative the triggers' queues belong to the broker implementation, but ``kfaas dead-letters`` (the
dead-letter sink) keeps dead letters in the same ``.dlq`` queues, plus ``t.<namespace>.broker-<name>.dlq`` for
a Broker's own sink. A stream source's on-failure destination is ``t.<namespace>.<function>-<source>.dlq``
too (``kfaas stream``): listed here, and redriven with ``--to-subscriber`` to the function. ``redrive --to-subscriber`` POSTs each one (binary mode, without the ``knativeerror*``
extensions) to the subscriber named by its ``knativeerrordest``, so again only the trigger that failed sees
it, and removes it only after a 2xx answer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from kfaas.base.urls import redact
from kfaas.broker._names import (
    ERROR_CODE,
    ERROR_DATA,
    ERROR_DEST,
    ERROR_EXTENSIONS,
    PREFIX,
    TriggerRef,
    amqp_headers_to_http,
    triggers_of,
)
from kfaas.broker.deadletters import BROKER_PREFIX, DeadLetterQueue
from kfaas.spec import options as _cliopts

__all__ = ["DeadLetter", "configure", "peek", "redrive", "redrive_to_subscriber", "run"]

Ref = TriggerRef | DeadLetterQueue  # a trigger's dead letters, or a Broker's (kfaas dead-letters)
SUBSCRIBER_TIMEOUT = 30.0  # seconds one POST of --to-subscriber may take


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event: its attributes, data, and why delivery failed."""

    attributes: dict[str, str]
    content_type: str | None
    body: bytes
    dead_lettered_at: datetime | None

    @property
    def id(self) -> str:
        return self.attributes.get("id", "")

    @property
    def code(self) -> str:
        return self.attributes.get(ERROR_CODE, "")

    @property
    def dest(self) -> str:
        return self.attributes.get(ERROR_DEST, "")

    @property
    def reason(self) -> str:
        """The subscriber's answer (decoded ``knativeerrordata``)."""
        raw = self.attributes.get(ERROR_DATA, "")
        try:
            return base64.b64decode(raw).decode("utf-8", "replace")
        except ValueError:
            return raw

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> DeadLetter:
        attributes = {
            k[len(PREFIX) :]: v.decode() if isinstance(v, bytes) else str(v)
            for k, v in (message.headers or {}).items()
            if k.startswith(PREFIX)
        }
        return cls(attributes, message.content_type, bytes(message.body), message.timestamp)


async def _drain(channel: aio_pika.abc.AbstractChannel, queue_name: str) -> list[AbstractIncomingMessage]:
    """Get every message of the queue unacked (they return to the queue when the channel closes).

    A queue that does not exist yet (the broker never ran with this namespace) has no dead letters.
    """
    try:
        queue = await channel.declare_queue(queue_name, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return []
    count = queue.declaration_result.message_count or 0
    messages = []
    for _ in range(count):
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        messages.append(message)
    return messages


async def peek(amqp_url: str, ref: Ref) -> list[DeadLetter]:
    """The dead letters of a trigger, left in place."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        messages = await _drain(channel, ref.dead_letter_queue)
        return [DeadLetter.of(m) for m in messages]


async def redrive(amqp_url: str, ref: TriggerRef, ids: set[str] | None) -> tuple[int, set[str]]:
    """Send dead letters (all, or those with the given event ids) back to the trigger's queue.

    Returns how many were sent and which of the requested ids were not found.
    """
    connection = await aio_pika.connect(amqp_url)
    sent = 0
    found: set[str] = set()
    async with connection:
        reader = await connection.channel()
        writer = await connection.channel(publisher_confirms=True, on_return_raises=True)
        for message in await _drain(reader, ref.dead_letter_queue):
            event_id = str((message.headers or {}).get(PREFIX + "id", ""))
            if ids is not None and event_id not in ids:
                continue
            headers = {
                k: v for k, v in (message.headers or {}).items() if k[len(PREFIX) :] not in ERROR_EXTENSIONS
            }
            again = aio_pika.Message(
                message.body,
                headers=headers,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
            )
            await writer.default_exchange.publish(again, routing_key=ref.queue, mandatory=True)
            await message.ack()
            sent += 1
            found.add(event_id)
    return sent, (ids or set()) - found


async def redrive_to_subscriber(
    amqp_url: str, ref: Ref, ids: set[str] | None, timeout: float = SUBSCRIBER_TIMEOUT
) -> tuple[int, dict[str, str], set[str]]:
    """POST dead letters (all, or those with the given ids) to their ``knativeerrordest`` subscriber.

    A dead letter is removed only after a 2xx answer; the others stay in the queue. Returns how many were
    delivered, the failures (event id -> why) and which of the requested ids were not found.
    """
    import httpx

    connection = await aio_pika.connect(amqp_url)
    sent = 0
    found: set[str] = set()
    failed: dict[str, str] = {}
    async with connection, httpx.AsyncClient(timeout=timeout) as client:
        reader = await connection.channel()
        for message in await _drain(reader, ref.dead_letter_queue):
            raw = message.headers or {}
            event_id = _text(raw.get(PREFIX + "id", ""))
            if ids is not None and event_id not in ids:
                continue
            found.add(event_id)
            dest = _text(raw.get(PREFIX + ERROR_DEST, ""))
            if not dest.startswith(("http://", "https://")):
                failed[event_id] = f"no subscriber URL in {ERROR_DEST} ({dest!r})"
                continue
            kept = {k: v for k, v in raw.items() if k[len(PREFIX) :] not in ERROR_EXTENSIONS}
            headers = amqp_headers_to_http(kept, message.content_type)
            try:
                response = await client.post(dest, headers=headers, content=bytes(message.body))
            except httpx.HTTPError as exc:
                failed[event_id] = f"{dest}: {exc!r}"
                continue
            if not 200 <= response.status_code < 300:
                failed[event_id] = f"{dest} answered {response.status_code}: {response.text[:200]}"
                continue
            await message.ack()  # unacked messages (the failures) return to the queue with the channel
            sent += 1
    return sent, failed, (ids or set()) - found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- CLI ------------------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    _cliopts.functions_folder(parser)
    _cliopts.amqp_url(parser)
    _cliopts.namespace(parser)
    sub = parser.add_subparsers(dest="action", required=True, metavar="list|show|redrive")
    list_ = sub.add_parser("list", help="count and summarize each trigger's dead letters")
    list_.add_argument("--trigger", help="only this trigger (<function>-<trigger>)")
    list_.add_argument("--json", action="store_true", help="print JSON")
    show = sub.add_parser("show", help="every attribute, the data and the failure reason")
    show.add_argument("trigger", help="<function>-<trigger>")
    show.add_argument("event_id", nargs="?", help="only this event")
    again = sub.add_parser("redrive", help="send dead letters back to the trigger's queue")
    again.add_argument("trigger", help="<function>-<trigger> (or broker-<name> with --to-subscriber)")
    which = again.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", action="append", dest="ids", metavar="ID", help="an event id (repeatable)")
    which.add_argument("--all", action="store_true", help="every dead letter of the trigger")
    again.add_argument(
        "--to-subscriber",
        action="store_true",
        help="POST each dead letter to the subscriber that failed (its knativeerrordest URL) instead of "
        "the trigger's queue: the way back on Knative, where that queue is the broker's own",
    )


def run(args: argparse.Namespace) -> int:

    logging.getLogger("aiormq").setLevel(logging.CRITICAL)  # the error below says it once, plainly
    if not _cliopts.has_amqp_url("dlq", args.amqp_url):
        return 2
    app = _cliopts.load_functions("dlq", args.functions)
    if app is None:
        return 2
    triggers: list[Ref] = [r for r in triggers_of(app, args.namespace) if r.delivery.dead_letter]
    brokers: list[Ref] = [DeadLetterQueue(BROKER_PREFIX + b, args.namespace) for b in app.brokers]
    # a stream source's on-failure destination (kfaas stream): the records that failed every attempt
    streams: list[Ref] = [DeadLetterQueue(consumer.name, args.namespace) for consumer, _, _ in app.streams]
    refs = triggers + streams + brokers
    wanted = getattr(args, "trigger", None)
    if wanted:
        refs = [r for r in refs if r.name == wanted]
        if not refs:
            known = ", ".join(r.name for r in triggers + streams)
            sys.stderr.write(f"kfaas dlq: no trigger {wanted!r} with a dead-letter queue (known: {known})\n")
            return 2
        if args.action == "redrive" and not args.to_subscriber and isinstance(refs[0], DeadLetterQueue):
            sys.stderr.write(f"kfaas dlq: {wanted} has no queue to redrive to: use --to-subscriber\n")
            return 2
    try:
        return asyncio.run(_run(args, refs))
    except (aio_pika.exceptions.AMQPError, ConnectionError, OSError) as exc:
        sys.stderr.write(f"kfaas dlq: RabbitMQ at {redact(args.amqp_url)}: {exc!r}\n")
        return 1


async def _run(args: argparse.Namespace, refs: list[Ref]) -> int:
    out = sys.stdout
    if args.action == "redrive":
        return await (_redrive_to_subscriber if args.to_subscriber else _redrive)(args, refs)
    if args.action == "show":
        (ref,) = refs
        letters = [d for d in await peek(args.amqp_url, ref) if args.event_id in (None, d.id)]
        if not letters:
            what = f"event {args.event_id!r}" if args.event_id else "any dead letter"
            sys.stderr.write(f"kfaas dlq: {ref.name} has no {what}\n")
            return 1
        for letter in letters:
            out.write(_show(letter))
        return 0
    report: list[dict[str, Any]] = []
    for ref in refs:
        letters = await peek(args.amqp_url, ref)
        if isinstance(ref, DeadLetterQueue) and not letters and not getattr(args, "trigger", None):
            continue  # a Broker's own dead letters (only kfaas dead-letters writes them): listed when any
        report.append({"trigger": ref.name, "count": len(letters), "events": [_row(d) for d in letters]})
    if args.json:
        out.write(json.dumps(report, indent=2) + "\n")
        return 0
    for item in report:
        out.write(f"{item['trigger']}: {item['count']} dead letter(s)\n")
        for row in item["events"]:
            out.write(
                f"  {row['id']}  {row['type']}  code={row['code']}  dest={row['dest']}  at={row['time']}\n"
            )
    return 0


async def _redrive(args: argparse.Namespace, refs: list[Ref]) -> int:
    (ref,) = refs
    assert isinstance(ref, TriggerRef)
    ids = None if args.all else set(args.ids)
    sent, missing = await redrive(args.amqp_url, ref, ids)
    sys.stdout.write(f"redrove {sent} event(s) to {ref.name}\n")
    if missing:
        sys.stderr.write(f"kfaas dlq: not in {ref.name}'s dead letters: {', '.join(sorted(missing))}\n")
        return 1
    return 0


async def _redrive_to_subscriber(args: argparse.Namespace, refs: list[Ref]) -> int:
    (ref,) = refs
    ids = None if args.all else set(args.ids)
    sent, failed, missing = await redrive_to_subscriber(args.amqp_url, ref, ids)
    sys.stdout.write(f"redrove {sent} event(s) of {ref.name} to their subscriber\n")
    for event_id, why in sorted(failed.items()):
        sys.stderr.write(f"kfaas dlq: {event_id} failed, left in the dead letters: {why}\n")
    if missing:
        sys.stderr.write(f"kfaas dlq: not in {ref.name}'s dead letters: {', '.join(sorted(missing))}\n")
    if failed:
        sys.stderr.write(f"kfaas dlq: {len(failed)} event(s) failed\n")
    return 1 if failed or missing else 0


def _row(letter: DeadLetter) -> dict[str, str]:
    when = letter.dead_lettered_at.isoformat() if letter.dead_lettered_at else ""
    return {
        "id": letter.id,
        "type": letter.attributes.get("type", ""),
        "code": letter.code,
        "dest": letter.dest,
        "time": when,
    }


def _show(letter: DeadLetter) -> str:
    lines = [f"event {letter.id}"]
    for key in sorted(letter.attributes):
        if key not in ERROR_EXTENSIONS:
            lines.append(f"  {key}: {letter.attributes[key]}")
    if letter.content_type:
        lines.append(f"  datacontenttype: {letter.content_type}")
    lines.append(f"  data: {letter.body.decode('utf-8', 'replace')}")
    when = letter.dead_lettered_at.isoformat() if letter.dead_lettered_at else "unknown"
    lines.append(f"failed: code {letter.code} from {letter.dest} (dead-lettered at {when})")
    lines.append(f"  reason: {letter.reason}")
    return "\n".join(lines) + "\n\n"
