"""CloudEvent functions in kfaas's model: sync and async, with and without the context, replies, errors."""

import asyncio
import os
import time

from cloudevents.http import CloudEvent

import kfaas

SEEN: list[str] = []


@kfaas.cloud_event
def record(event):
    SEEN.append(event["id"])


@kfaas.cloud_event
async def reply(event, ctx):
    assert isinstance(ctx, kfaas.Context)
    return CloudEvent({"type": "com.example.replied", "source": "/tests/reply"}, {"echo": event.data})


@kfaas.cloud_event
def sync_reply(event):
    return CloudEvent({"type": "com.example.sync", "source": "/tests/sync"}, {"id": event["id"]})


@kfaas.cloud_event
async def slow(event):
    await asyncio.sleep(float(event.data["seconds"]))


@kfaas.cloud_event
def blocking(event):
    time.sleep(float(event.data["seconds"]))


@kfaas.cloud_event
def explode(event):
    raise RuntimeError("secret internal detail")


@kfaas.cloud_event
def refuse(event):
    raise kfaas.InvalidEvent("order total does not match its items")


@kfaas.cloud_event
def unavailable(event):
    raise kfaas.ServiceUnavailable("database did not answer")


@kfaas.cloud_event
def wrong_return(event):
    return {"not": "an event"}


@kfaas.cloud_event
async def misconfigured(event, ctx):
    _ = ctx.db  # no MONGODB_URL: kfaas.ConfigurationError, whose message a dead letter may carry


@kfaas.cloud_event
def reply_bytes(event):
    return CloudEvent({"type": "com.example.bytes", "source": "/tests/bytes"}, b"\x00\x01")


@kfaas.cloud_event
def reply_text(event):
    return CloudEvent(
        {"type": "com.example.text", "source": "/tests/text", "datacontenttype": "text/plain"}, "hello"
    )


@kfaas.cloud_event
async def claimed(event, ctx):
    """The effect guarded by ``ctx.once`` takes as long as the event says (``data.seconds``)."""
    async with ctx.once(f"claimed|{event['id']}"):
        await asyncio.sleep(float(event.data["seconds"]))


def _effect_in_a_thread(seconds: float, what: str) -> None:
    """Like an email handed to an SMTP relay in a thread: once begun, no cancellation stops it."""
    time.sleep(seconds)
    with open(os.environ["KFAAS_TEST_EFFECTS"], "a", encoding="utf-8") as effects:
        effects.write(what + "\n")


@kfaas.cloud_event
async def claimed_effect(event, ctx):
    """Inside ``ctx.once``, an effect that takes ``data.seconds`` in a thread and is appended to a file."""
    async with ctx.once(f"claimed-effect|{event['id']}"):
        await asyncio.to_thread(_effect_in_a_thread, float(event.data["seconds"]), event["id"])
