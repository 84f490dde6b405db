"""Fan-out, filters, retries with backoff, dead letters, replies and FIFO, against a real RabbitMQ."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from brokertest import Harness, Reply, event, fn
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

pytestmark = pytest.mark.integration


async def test_fan_out_to_three_triggers(harness: Harness) -> None:
    subs = [await harness.subscriber(n) for n in ("a", "b", "c")]
    broker = await harness.broker(*(fn(s.name, {"name": "on-order"}) for s in subs))
    for i in range(5):
        await broker.publish("default", event(data={"n": i}))
    for sub in subs:
        got = await sub.wait_for(5)
        assert sorted(e.data["n"] for e in got) == [0, 1, 2, 3, 4]
    await asyncio.sleep(0.2)
    assert [len(s.events) for s in subs] == [5, 5, 5]


async def test_exact_attribute_filters_are_anded(harness: Harness) -> None:
    typed = await harness.subscriber("typed")
    both = await harness.subscriber("both")
    everything = await harness.subscriber("everything")
    broker = await harness.broker(
        fn("typed", {"name": "t", "filter": {"type": "com.example.a"}}),
        fn("both", {"name": "t", "filter": {"type": "com.example.a", "region": "eu"}}),
        fn("everything", {"name": "t"}),
    )
    await broker.publish("default", event("com.example.a", region="eu", id="1"))
    await broker.publish("default", event("com.example.a", region="us", id="2"))
    await broker.publish("default", event("com.example.b", region="eu", id="3"))
    await everything.wait_for(3)
    await typed.wait_for(2)
    await both.wait_for(1)
    await asyncio.sleep(0.3)
    assert sorted(e["id"] for e in typed.events) == ["1", "2"]
    assert [e["id"] for e in both.events] == ["1"]
    assert sorted(e["id"] for e in everything.events) == ["1", "2", "3"]


def failing(times: int, status: int = 500) -> object:
    def behaviour(_event: CloudEvent, n: int) -> Reply:
        return (status, {}, b"boom") if n <= times else (202, {}, b"")

    return behaviour


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("linear", [0.3, 0.6, 0.9]), ("exponential", [0.3, 0.6, 1.2])],
)
async def test_retry_backoff_timing(harness: Harness, policy: str, expected: list[float]) -> None:
    sub = await harness.subscriber("flaky", failing(3))  # type: ignore[arg-type]
    delivery = {"retry": 3, "backoffPolicy": policy, "backoffDelay": "PT0.3S"}
    broker = await harness.broker(fn("flaky", {"name": "t", "delivery": delivery}))
    await broker.publish("default", event())
    await sub.wait_for(4)
    gaps = [b - a for a, b in zip(sub.times, sub.times[1:], strict=False)]
    for gap, want in zip(gaps, expected, strict=True):
        # never early; late by at most 0.2 s on a busy machine (the policies differ by 0.3 s at retry 3)
        assert want - 0.01 <= gap <= want + 0.2, (policy, gaps)
    await asyncio.sleep(0.3)
    assert len(sub.events) == 4  # succeeded on the 4th attempt: no more deliveries


async def dead_letters(harness: Harness, queue: str, timeout: float = 5.0) -> list[object]:
    import aio_pika

    connection = await aio_pika.connect(harness.amqp_url)
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, passive=True)
        found = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not found and loop.time() < deadline:
            while (msg := await q.get(no_ack=True, fail=False)) is not None:
                found.append(msg)
            if not found:
                await asyncio.sleep(0.05)
        return found


async def test_dead_letter_after_retries_with_extensions(harness: Harness) -> None:
    sub = await harness.subscriber("broken", lambda _e, _n: (503, {}, b'{"error": "db down"}'))
    delivery = {"retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT0.05S"}
    broker = await harness.broker(fn("broken", {"name": "t", "delivery": delivery}))
    await broker.publish("default", event(id="dead-1", data={"x": 1}))
    await sub.wait_for(3)
    (ref,) = broker.triggers
    (msg,) = await dead_letters(harness, ref.dead_letter_queue)
    headers = msg.headers  # type: ignore[attr-defined]
    assert headers["ce-id"] == "dead-1"
    assert headers["ce-knativeerrordest"] == sub.url
    assert headers["ce-knativeerrorcode"] == "503"
    assert base64.b64decode(headers["ce-knativeerrordata"]) == b'{"error": "db down"}'
    assert json.loads(msg.body) == {"x": 1}  # type: ignore[attr-defined]
    assert len(sub.events) == 3  # 1 attempt + 2 retries


async def test_bad_request_is_not_retried_and_timeout_is_coded(harness: Harness) -> None:
    rejecting = await harness.subscriber("rejecting", lambda _e, _n: (400, {}, b"missing userId"))

    async def slow(_e: CloudEvent, _n: int) -> Reply:
        await asyncio.sleep(1.0)
        return 202, {}, b""

    slow_sub = await harness.subscriber("slow", slow)
    quick = {"retry": 1, "backoffDelay": "PT0.01S", "timeout": "PT0.2S"}
    broker = await harness.broker(
        fn("rejecting", {"name": "t", "delivery": {"retry": 5, "backoffDelay": "PT0.01S"}}),
        fn("slow", {"name": "t", "delivery": quick}),
    )
    await broker.publish("default", event(id="e1"))
    refs = {r.function.name: r for r in broker.triggers}
    (rejected,) = await dead_letters(harness, refs["rejecting"].dead_letter_queue)
    assert rejected.headers["ce-knativeerrorcode"] == "400"  # type: ignore[attr-defined]
    assert len(rejecting.events) == 1  # a 400 is final (Knative's data-plane contract)
    (timed_out,) = await dead_letters(harness, refs["slow"].dead_letter_queue)
    assert timed_out.headers["ce-knativeerrorcode"] == "504"  # type: ignore[attr-defined]
    assert base64.b64decode(timed_out.headers["ce-knativeerrordata"]).startswith(b"timeout")  # type: ignore[attr-defined]
    assert len(slow_sub.events) == 2


async def test_reply_is_published_back_to_the_broker(harness: Harness) -> None:
    def reply(ev: CloudEvent, _n: int) -> Reply:
        out = CloudEvent({"type": "com.example.processed", "source": "/fn/processor"}, {"of": ev["id"]})
        headers, body = to_binary(out)
        return 200, headers, body

    processor = await harness.subscriber("processor", reply)
    listener = await harness.subscriber("listener")
    broker = await harness.broker(
        fn("processor", {"name": "t", "filter": {"type": "com.example.order"}}),
        fn("listener", {"name": "t", "filter": {"type": "com.example.processed"}}),
    )
    await broker.publish("default", event("com.example.order", id="o-1"))
    (got,) = await listener.wait_for(1)
    assert got.data == {"of": "o-1"}
    assert processor.headers[0]["prefer"] == "reply"


async def test_parallelism_one_keeps_order_through_retries(harness: Harness) -> None:
    def first_fails_twice(ev: CloudEvent, _n: int) -> Reply:
        tries = sum(1 for e in sub.events if e["id"] == ev["id"])
        return (500, {}, b"") if ev["id"] == "0" and tries <= 2 else (202, {}, b"")

    sub = await harness.subscriber("ordered", first_fails_twice)
    delivery = {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.05S"}
    broker = await harness.broker(fn("ordered", {"name": "t", "parallelism": 1, "delivery": delivery}))
    for i in range(20):
        await broker.publish("default", event(id=str(i)))
    await sub.wait_for(22)
    ids = [e["id"] for e in sub.events]
    assert ids == ["0", "0", "0", *(str(i) for i in range(1, 20))]


async def test_parallelism_many_runs_concurrently(harness: Harness) -> None:
    in_flight = 0
    peak = 0

    async def slow(_e: CloudEvent, _n: int) -> Reply:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.2)
        in_flight -= 1
        return 202, {}, b""

    sub = await harness.subscriber("wide", slow)
    broker = await harness.broker(fn("wide", {"name": "t", "parallelism": 4}))
    for i in range(8):
        await broker.publish("default", event(id=str(i)))
    await sub.wait_for(8)
    assert peak == 4


async def test_ingress_modes_and_errors(harness: Harness) -> None:
    sub = await harness.subscriber("sink")
    broker = await harness.broker(fn("sink", {"name": "t"}))
    base = await harness.serve(broker)
    async with httpx.AsyncClient(base_url=base) as client:
        binary = {"ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/t", "ce-type": "x.y"}
        r = await client.post(
            "/default", headers={**binary, "content-type": "application/json"}, content=b"{}"
        )
        assert r.status_code == 202
        structured = {"specversion": "1.0", "id": "s1", "source": "/t", "type": "x.y", "data": {"a": 1}}
        r = await client.post(
            "/default",
            headers={"content-type": "application/cloudevents+json"},
            content=json.dumps(structured),
        )
        assert r.status_code == 202
        batch = [{**structured, "id": "k1"}, {**structured, "id": "k2"}]
        r = await client.post(
            "/default",
            headers={"content-type": "application/cloudevents-batch+json"},
            content=json.dumps(batch),
        )
        assert r.status_code == 202
        r = await client.post(f"/{harness.namespace}/default", headers=binary | {"ce-id": "n1"})
        assert r.status_code == 202

        r = await client.post("/default", headers={k: v for k, v in binary.items() if k != "ce-id"})
        assert r.status_code == 400
        assert "ce-id" in r.json()["error"]
        r = await client.post(
            "/default", headers={"content-type": "application/cloudevents+json"}, content=b"{not json"
        )
        assert r.status_code == 400
        assert "JSON" in r.json()["error"]
        no_type = {k: v for k, v in structured.items() if k != "type"}
        r = await client.post(
            "/default", headers={"content-type": "application/cloudevents+json"}, content=json.dumps(no_type)
        )
        assert r.status_code == 400
        assert "type" in r.json()["error"]
        r = await client.post("/default", headers={**binary, "ce-specversion": "9.9"})
        assert r.status_code == 400
        assert "specversion" in r.json()["error"]
        r = await client.post("/nope", headers=binary)
        assert r.status_code == 404
        r = await client.get("/default")
        assert r.status_code == 405
        assert (await client.get("/health/readiness")).status_code == 200

    got = await sub.wait_for(5)
    assert sorted(e["id"] for e in got) == ["b1", "k1", "k2", "n1", "s1"]
    assert next(e for e in got if e["id"] == "s1").data == {"a": 1}


async def test_a_retrying_event_leaves_its_slot_to_healthy_events(harness: Harness) -> None:
    """Poison events (a retryable 500 every time) wait for their retries in RabbitMQ, not in a delivery
    slot: with both slots of the trigger taken by them, healthy events still flow at once."""

    def poison_fails(ev: CloudEvent, _n: int) -> Reply:
        return (500, {}, b"boom") if ev["id"].startswith("poison") else (202, {}, b"")

    sub = await harness.subscriber("mixed", poison_fails)
    delivery = {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT1S"}
    broker = await harness.broker(fn("mixed", {"name": "t", "parallelism": 2, "delivery": delivery}))
    started = asyncio.get_running_loop().time()
    for i in range(2):
        await broker.publish("default", event(id=f"poison-{i}"))
    await sub.wait_for(2)  # both slots have met a poison event
    for i in range(10):
        await broker.publish("default", event(id=f"healthy-{i}"))

    def healthy() -> list[float]:
        return [t for e, t in zip(sub.events, sub.times, strict=True) if e["id"].startswith("healthy")]

    for _ in range(100):
        if len(healthy()) == 10:
            break
        await asyncio.sleep(0.02)
    assert len(healthy()) == 10
    assert max(healthy()) - started < 1.0  # before the first retry (1 s) of the poison events
    (ref,) = broker.triggers
    dead = await dead_letters(harness, ref.dead_letter_queue, timeout=15)
    assert sorted(m.headers["ce-id"] for m in dead) == ["poison-0", "poison-1"]  # type: ignore[attr-defined]
    assert all("x-kfaas-retries" not in m.headers and "x-death" not in m.headers for m in dead)  # type: ignore[attr-defined]
    assert sum(e["id"] == "poison-0" for e in sub.events) == 4  # 1 attempt + 3 retries


async def test_a_broker_restart_does_not_start_an_events_retries_over(harness: Harness) -> None:
    """The retry count travels with the event (its x-kfaas-retries header), so an event waiting for its
    retry when the broker stops is retried where it left off by the next broker."""
    sub = await harness.subscriber("always-fails", lambda _e, _n: (503, {}, b"down"))
    delivery = {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.5S"}
    spec = fn("always-fails", {"name": "t", "parallelism": 2, "delivery": delivery})
    first = await harness.broker(spec)
    await first.publish("default", event(id="e-1"))
    await sub.wait_for(2)  # the first attempt and retry 1; now it waits 1 s for retry 2
    await asyncio.sleep(0.2)  # (an attempt cut short by the stop would count again: at-least-once)
    await first.stop()
    await asyncio.sleep(1.2)  # it returned to the trigger's queue meanwhile, with its count
    second = await harness.broker(spec)
    (ref,) = second.triggers
    dead = await dead_letters(harness, ref.dead_letter_queue, timeout=10)
    assert [m.headers["ce-id"] for m in dead] == ["e-1"]  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)
    assert len(sub.events) == 4  # 1 attempt + 3 retries in all, across the two brokers


async def test_fifo_keeps_order_when_the_broker_restarts_while_the_head_event_waits(harness: Harness) -> None:
    def head_fails_twice(ev: CloudEvent, _n: int) -> Reply:
        tries = sum(1 for e in sub.events if e["id"] == ev["id"])
        return (500, {}, b"") if ev["id"] == "0" and tries <= 2 else (202, {}, b"")

    sub = await harness.subscriber("ordered", head_fails_twice)
    delivery = {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.5S"}
    spec = fn("ordered", {"name": "t", "parallelism": 1, "delivery": delivery})
    first = await harness.broker(spec)
    await first.publish("default", event(id="0"))
    await sub.wait_for(1)
    await asyncio.sleep(0.1)  # "0" now waits for its first retry
    await first.stop()
    for i in range(1, 6):  # later events queue up behind it while no broker runs
        await first_publish(harness, i)
    await harness.broker(spec)
    await sub.wait_for(8)
    assert [e["id"] for e in sub.events] == ["0", "0", "0", "1", "2", "3", "4", "5"]


async def first_publish(harness: Harness, i: int) -> None:
    """Publish to the trigger's exchange as the ingress would, with no broker running."""
    import aio_pika

    from kfaas.broker._names import broker_exchange, event_to_amqp

    headers, content_type, body = event_to_amqp(event(id=str(i)))
    connection = await aio_pika.connect(harness.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(broker_exchange(harness.namespace, "default"))
        await exchange.publish(
            aio_pika.Message(body, headers=headers, content_type=content_type, delivery_mode=2),
            routing_key="",
        )
