"""The broker ingress (``kfaas broker``, RSGI) and the dead-letter sink (``kfaas dead-letters``, ASGI) as real
processes on the real RabbitMQ, driven with malformed and oversized requests: the runtime's limits and 4xx
JSON, plus what RabbitMQ itself cannot take."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from brokertest import Harness, event, fn
from rawhttp import KfaasProcess, exchange, request

from kfaas.broker import DevBroker
from kfaas.spec import AppSpec

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "test_functions"
DESCRIPTION = """\
kind: cloudevent
triggers:
  - name: t
    filter: {type: com.example.bad-input}
    delivery: {retry: 1, backoffPolicy: linear, backoffDelay: PT0.05S}
"""
BINARY = [("ce-source", "/tests"), ("ce-type", "com.example.bad-input"), ("ce-specversion", "1.0")]


async def _delete(amqp_url: str, queues: list[str], exchanges: list[str]) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


@pytest.fixture(scope="module")
def functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input") / "functions"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "function.yaml").write_text(DESCRIPTION)
    (folder / "sub" / "main.py").write_text("def handle(event):\n    return None\n")
    return folder


class Server:
    """A kfaas broker / dead-letters process of its own namespace, and that namespace's queues."""

    def __init__(self, process: KfaasProcess, namespace: str, amqp_url: str) -> None:
        self.process = process
        self.namespace = namespace
        self.amqp_url = amqp_url

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def queue(self) -> str:
        return f"t.{self.namespace}.sub-t"

    async def messages(self, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            q = await channel.declare_queue(queue, passive=True)
            found = []
            while (message := await q.get(no_ack=True, fail=False)) is not None:
                found.append(message)
            return found


async def _first(amqp_url: str, queue: str, timeout: float) -> Any:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, passive=True)
        deadline = asyncio.get_running_loop().time() + timeout
        while (message := await q.get(no_ack=True, fail=False)) is None:
            assert asyncio.get_running_loop().time() < deadline, f"nothing in {queue} within {timeout:g}s"
            await asyncio.sleep(0.05)
        return message


def _process(command: str, functions: Path, amqp_url: str) -> tuple[KfaasProcess, str]:
    namespace = f"bad-{uuid.uuid4().hex[:10]}"
    args = [command, "--functions", str(functions), "--amqp-url", amqp_url, "--namespace", namespace]
    args += ["--host", "127.0.0.1", "--port", "{port}"]
    ready = "/health/readiness"
    return KfaasProcess(args, env={"KFAAS_BODY_TIMEOUT": "1"}, ready_path=ready), namespace


@pytest.fixture(scope="module")
async def ingress(functions: Path, amqp_url: str) -> AsyncIterator[Server]:
    process, namespace = _process("broker", functions, amqp_url)
    server = Server(process.start(), namespace, amqp_url)
    try:
        yield server
    finally:
        process.stop()
        await _delete(amqp_url, [server.queue, server.queue + ".dlq"], [f"b.{namespace}.default"])


@pytest.fixture(scope="module")
async def sink(functions: Path, amqp_url: str) -> AsyncIterator[Server]:
    process, namespace = _process("dead-letters", functions, amqp_url)
    server = Server(process.start(), namespace, amqp_url)
    try:
        yield server
    finally:
        process.stop()
        await _delete(amqp_url, [server.queue + ".dlq"], [])


@pytest.fixture(params=["ingress", "sink"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def path_of(server: Server) -> str:
    return "/default" if server.process.args[0] == "broker" else "/sub-t"


def post(server: Server, headers: list[tuple[str, str | bytes]], body: bytes = b"", **kw: Any) -> Any:
    return exchange(server.port, request("POST", path_of(server), headers, body, **kw))


def structured(**attributes: object) -> bytes:
    event = {"specversion": "1.0", "id": "s-1", "source": "/t", "type": "com.example.bad-input"}
    return json.dumps({**event, **attributes}).encode()


async def test_an_id_longer_than_an_amqp_short_string_is_a_400(server: Server) -> None:
    answer = post(server, [("ce-id", "a" * 256), *BINARY])
    assert answer.status == 400
    assert answer.json() == {
        "error": "the event id is 256 bytes long; the broker keeps ids of at most 255 bytes (the AMQP message id)"
    }
    answer = post(server, [("content-type", "application/cloudevents+json")], structured(id="é" * 128))
    assert answer.status == 400  # 128 characters, 256 bytes of UTF-8
    assert "256 bytes long" in answer.json()["error"]
    batch = json.dumps([json.loads(structured(id="ok")), json.loads(structured(id="b" * 300))]).encode()
    answer = post(server, [("content-type", "application/cloudevents-batch+json")], batch)
    assert answer.status == 400
    answer = post(server, [("ce-id", "c-1"), ("content-type", "text/" + "x" * 300), *BINARY], b"x")
    assert answer.status == 400
    assert answer.json() == {"error": "the content type is longer than 255 bytes (the AMQP content type)"}
    assert post(server, [("ce-id", "a" * 255), *BINARY]).status == 202  # the longest id that fits


async def test_invalid_utf8_in_a_header_is_named(server: Server) -> None:
    answer = post(server, [("ce-id", b"\xff\xfe"), *BINARY])
    assert answer.status == 400
    if server.process.args[0] == "broker":
        # RSGI: granian passes on only visible-ASCII values, so the ingress cannot tell invalid UTF-8 from
        # raw UTF-8; it names the field and both causes rather than calling it missing
        assert answer.json()["error"].startswith(
            "header ce-id holds bytes outside visible ASCII: invalid UTF-8"
        )
    else:
        assert answer.json() == {"error": "header ce-id is not valid UTF-8 (byte 0xff at offset 0)"}


async def test_the_request_limits_of_the_runtime(server: Server) -> None:
    many = post(server, [("ce-id", "h-1"), *BINARY, *((f"ce-x{i}", "v") for i in range(70))])
    assert many.status == 431
    assert many.json()["error"].startswith("too many header fields")
    announced = post(server, [("ce-id", "l-1"), *BINARY], b"0123456789", length=20_000_000)
    assert announced.status == 413
    assert announced.json() == {
        "error": "request body too large: Content-Length 20000000, at most 10485760 bytes are accepted"
    }
    assert announced.seconds < 0.9
    stalled = post(server, [("ce-id", "t-1"), *BINARY], b"012", length=1000)
    assert stalled.status == 408
    assert stalled.json() == {"error": "the request body did not arrive within 1s"}
    deep = b"[" * 2000 + b"]" * 2000
    nested = post(server, [("ce-id", "d-1"), ("content-type", "application/json"), *BINARY], deep)
    assert nested.status == 400
    assert "nested too deeply" in nested.json()["error"]
    typed = post(server, [("content-type", "application/cloudevents+json")], structured(id=5))
    assert typed.status == 400
    assert "attribute 'id' must be a string" in typed.json()["error"]


async def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read(server: Server) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield b"x" * (1024 * 1024)

    headers = {"ce-id": "c-1", **dict(BINARY)}
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{server.process.url}{path_of(server)}", headers=headers, content=chunks()
        )
    assert response.status_code == 413
    assert response.json() == {"error": "request body too large: more than 10485760 bytes, the limit"}


async def test_a_body_cut_off_by_the_client_is_not_taken_for_an_event(server: Server) -> None:
    """A client that goes away mid-body (with or without a Content-Length) leaves nothing behind."""
    import socket

    for head in (
        request("POST", path_of(server), [("ce-id", "cut-1"), *BINARY], b"0123456789", length=100),
        request("POST", path_of(server), [("ce-id", "cut-2"), ("transfer-encoding", "chunked"), *BINARY])
        + b"a\r\n0123456789\r\n5\r\n01",
    ):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head)
            await asyncio.sleep(0.3)
    assert post(server, [("ce-id", "after-cut"), *BINARY], b"x").status == 202
    ids: list[str] = []
    deadline = asyncio.get_running_loop().time() + 15
    while "after-cut" not in ids and asyncio.get_running_loop().time() < deadline:
        ids += [str(m.headers.get("ce-id")) for m in await server.messages(server.queue + ".dlq")]
        await asyncio.sleep(0.1)
    assert "after-cut" in ids
    assert not {"cut-1", "cut-2"} & set(ids)


async def test_rabbitmq_s_message_size_limit_is_named_and_the_next_event_goes_through(
    server: Server, functions: Path, amqp_url: str, rabbitmq_ctl: Any
) -> None:
    """RabbitMQ refuses a message over its max_message_size by closing the channel: a 413 naming that limit,
    not a 503 "unavailable"; the channel comes back for the next event."""
    limit = 1024 * 1024
    original = (await rabbitmq_ctl.run("eval", "application:get_env(rabbit, max_message_size).")).strip()
    await rabbitmq_ctl.run("eval", f"application:set_env(rabbit, max_message_size, {limit}).")
    # channels read the limit when they open: a fresh process (of a namespace of its own) opens fresh ones
    process, namespace = _process(server.process.args[0], functions, amqp_url)
    fresh = Server(process, namespace, amqp_url)
    try:
        with process:
            big = post(fresh, [("ce-id", "big-1"), *BINARY], b"x" * 2_000_000)
            assert big.status == 413
            assert big.json() == {
                "error": f"RabbitMQ refused the event: its message of 2000000 bytes is larger than RabbitMQ's "
                f"max_message_size of {limit} bytes"
            }
            assert post(fresh, [("ce-id", "small-1"), *BINARY], b"x").status == 202
            # the sink stores in the dead-letter queue; the broker's trigger delivers to a function that is
            # not there, so the small event ends in the same dead-letter queue after its one retry
            ids: list[str] = []
            deadline = asyncio.get_running_loop().time() + 15
            while "small-1" not in ids and asyncio.get_running_loop().time() < deadline:
                ids += [str(m.headers.get("ce-id")) for m in await fresh.messages(fresh.queue + ".dlq")]
                await asyncio.sleep(0.1)
        assert ids == ["small-1"]
    finally:
        value = original.removeprefix("{ok,").removesuffix("}")
        await rabbitmq_ctl.run("eval", f"application:set_env(rabbit, max_message_size, {value}).")
        await _delete(amqp_url, [fresh.queue, fresh.queue + ".dlq"], [f"b.{namespace}.default"])


async def test_a_dead_letter_carries_a_kfaas_error_s_message(harness: Harness) -> None:
    """A function failing with one of kfaas's errors: its message reaches the dead letter's knativeerrordata;
    any other exception there is only its type."""
    source = str(SAMPLES / "cloudevents" / "main.py")
    servers = {}
    for target in ("misconfigured", "explode"):
        args = ["serve", "--source", source, "--target", target, "--host", "127.0.0.1", "--port", "{port}"]
        servers[target] = KfaasProcess(args, env={"MONGODB_URL": ""}).start()
    try:
        delivery = {"retry": 0, "backoffPolicy": "linear", "backoffDelay": "PT0.05S"}
        app = AppSpec(
            functions=[
                fn(name, {"name": "t", "filter": {"type": f"com.example.{name}"}, "delivery": delivery})
                for name in servers
            ],
            root=Path("functions"),
        )
        broker = DevBroker(app, harness.amqp_url, lambda n: servers[n].url + "/", namespace=harness.namespace)
        await broker.start()
        harness.brokers.append(broker)
        for name in servers:
            await broker.publish("default", event(f"com.example.{name}", id=f"{name}-1"))
        data = {}
        for ref in broker.triggers:
            message = await _first(harness.amqp_url, ref.dead_letter_queue, timeout=15)
            data[ref.function.name] = json.loads(base64.b64decode(message.headers["ce-knativeerrordata"]))
    finally:
        for process in servers.values():
            process.stop()
    assert data["misconfigured"] == {
        "error": "the function failed (ConfigurationError: MongoDB is not configured: set MONGODB_URL); see its log",
        "id": "misconfigured-1",
    }
    assert data["explode"] == {"error": "the function failed (RuntimeError); see its log", "id": "explode-1"}
