"""``kfaas dead-letters`` (the Knative dead-letter sink) and ``kfaas dlq`` on what it stored, on a real RabbitMQ."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from kfaas.base import server as _server
from kfaas.base.server import serve_embedded
from kfaas.broker.deadletters import DeadLetterQueue, DeadLetterSink, queues_of
from kfaas.broker.dlq import peek
from kfaas.cli import main
from kfaas.dev.smtp import free_port
from kfaas.spec import load_app

pytestmark = pytest.mark.integration

DESCRIPTION = """\
kind: cloudevent
triggers:
  - name: on-order
    filter: {type: com.example.order}
    delivery: {retry: 1, backoffPolicy: linear, backoffDelay: PT0.05S}
  - name: on-audit
    filter: {type: com.example.audit}
    delivery: {retry: 1, backoffPolicy: linear, backoffDelay: PT0.05S, deadLetter: false}
"""


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    folder = tmp_path / "functions" / "notify"
    folder.mkdir(parents=True)
    (folder / "function.yaml").write_text(DESCRIPTION)
    (folder / "main.py").write_text("def handle(event):\n    return None\n")
    return tmp_path / "functions"


@dataclass
class Sink:
    url: str
    namespace: str
    amqp_url: str
    functions: Path
    client: httpx.AsyncClient

    def dlq_args(self) -> list[str]:
        return [
            "--functions",
            str(self.functions),
            "--amqp-url",
            self.amqp_url,
            "--namespace",
            self.namespace,
        ]


async def _wait_up(client: httpx.AsyncClient, url: str) -> None:
    for _ in range(200):
        with contextlib.suppress(httpx.TransportError):
            await client.get(url)
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
async def sink(amqp_url: str, functions: Path) -> AsyncIterator[Sink]:
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    queues = queues_of(load_app(functions), namespace)
    app = DeadLetterSink(queues, amqp_url)
    port = free_port()
    stop = asyncio.Event()
    server = asyncio.create_task(_server.serve(app, "127.0.0.1", port, drain_seconds=2, stop=stop))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        await _wait_up(client, url + "/health/liveness")
        try:
            yield Sink(url, namespace, amqp_url, functions, client)
        finally:
            stop.set()
            await asyncio.wait_for(server, 10)
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel()
                for queue in queues.values():
                    await channel.queue_delete(queue.dead_letter_queue)


@dataclass
class Subscriber:
    status: int
    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] == "POST":
            self.received.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b"mailbox full" if self.status >= 400 else b""})


@contextlib.asynccontextmanager
async def subscriber(client: httpx.AsyncClient, status: int) -> AsyncIterator[Subscriber]:
    sub = Subscriber(status)
    port = free_port()
    task = asyncio.create_task(serve_embedded(sub, "127.0.0.1", port))
    sub.url = f"http://127.0.0.1:{port}/"
    try:
        await _wait_up(client, sub.url + "health")
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def dead_letter_headers(
    event_id: str, dest: str, code: int = 500, reason: bytes = b"smtp relay refused"
) -> dict[str, str]:
    """A binary-mode dead letter as Knative's dispatcher sends it."""
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/orders",
        "ce-type": "com.example.order",
        "ce-knativeerrordest": dest,
        "ce-knativeerrorcode": str(code),
        "ce-knativeerrordata": base64.b64encode(reason).decode(),
        "content-type": "application/json",
    }


async def kfaas(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_posted_dead_letters_are_listed_and_shown(
    sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = "http://notify.kfaas.svc.cluster.local"
    binary = await sink.client.post(
        sink.url + "/notify-on-order", headers=dead_letter_headers("o-1", dest), content=b'{"order": 1}'
    )
    assert binary.status_code == 202, binary.text
    structured = {
        "specversion": "1.0",
        "id": "o-2",
        "source": "/orders",
        "type": "com.example.order",
        "datacontenttype": "application/json",
        "data": {"order": 2},
        "knativeerrordest": dest,
        "knativeerrorcode": "504",
        "knativeerrordata": base64.b64encode(b"timeout").decode(),
    }
    answer = await sink.client.post(
        sink.url + "/notify-on-order",
        headers={"content-type": "application/cloudevents+json"},
        content=json.dumps(structured).encode(),
    )
    assert answer.status_code == 202, answer.text

    code, out, _ = await kfaas(capsys, "dlq", *sink.dlq_args(), "list")
    assert code == 0
    assert "notify-on-order: 2 dead letter(s)" in out
    assert f"o-1  com.example.order  code=500  dest={dest}" in out
    assert f"o-2  com.example.order  code=504  dest={dest}" in out

    code, out, _ = await kfaas(capsys, "dlq", *sink.dlq_args(), "show", "notify-on-order", "o-1")
    assert code == 0
    assert 'data: {"order": 1}' in out
    assert f"failed: code 500 from {dest}" in out
    assert "reason: smtp relay refused" in out
    code, out, _ = await kfaas(capsys, "dlq", *sink.dlq_args(), "show", "notify-on-order", "o-2")
    assert code == 0
    assert "reason: timeout" in out
    assert '"order": 2' in out


async def test_broker_sink_and_default_redrive_refused(
    sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = await sink.client.post(
        sink.url + "/broker-default", headers=dead_letter_headers("b-1", "http://x.kfaas.svc/"), content=b"{}"
    )
    assert answer.status_code == 202, answer.text
    code, out, _ = await kfaas(capsys, "dlq", *sink.dlq_args(), "list")
    assert code == 0
    assert "broker-default: 1 dead letter(s)" in out
    code, _, err = await kfaas(capsys, "dlq", *sink.dlq_args(), "redrive", "broker-default", "--all")
    assert code == 2
    assert "--to-subscriber" in err
    assert len(await peek(sink.amqp_url, DeadLetterQueue("broker-default", sink.namespace))) == 1


async def test_unknown_path_and_invalid_events(sink: Sink) -> None:
    headers = dead_letter_headers("x-1", "http://notify/")
    for path in ("/nobody-on-order", "/notify-on-audit", "/"):  # on-audit has deadLetter: false
        answer = await sink.client.post(sink.url + path, headers=headers, content=b"{}")
        assert answer.status_code == 404, path
        assert "/notify-on-order" in answer.json()["error"]
    plain = await sink.client.post(sink.url + "/notify-on-order", json={"order": 1})
    assert plain.status_code == 400
    assert "not a CloudEvent" in plain.json()["error"]
    no_id = {k: v for k, v in headers.items() if k != "ce-id"}
    answer = await sink.client.post(sink.url + "/notify-on-order", headers=no_id, content=b"{}")
    assert answer.status_code == 400
    assert "ce-id" in answer.json()["error"]
    assert (await sink.client.get(sink.url + "/health/readiness")).status_code == 200
    queue = DeadLetterQueue("notify-on-order", sink.namespace)
    assert await peek(sink.amqp_url, queue) == []


async def test_rabbitmq_down_answers_503(functions: Path) -> None:
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    app = DeadLetterSink(queues_of(load_app(functions), "unused"), closed)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sink") as client:
        answer = await client.post(
            "/notify-on-order", headers=dead_letter_headers("d-1", "http://notify/"), content=b"{}"
        )
        assert answer.status_code == 503
        assert (await client.get("/health/readiness")).status_code == 503
        assert (await client.get("/health/liveness")).status_code == 200
    await app.shutdown()


async def test_redrive_to_subscriber_delivers_and_empties(
    sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = DeadLetterQueue("notify-on-order", sink.namespace)
    async with subscriber(sink.client, 202) as sub:
        for i in range(2):
            answer = await sink.client.post(
                sink.url + "/notify-on-order",
                headers=dead_letter_headers(f"o-{i}", sub.url),
                content=json.dumps({"order": i}).encode(),
            )
            assert answer.status_code == 202, answer.text
        args = [*sink.dlq_args(), "redrive", "notify-on-order", "--all", "--to-subscriber"]
        code, out, err = await kfaas(capsys, "dlq", *args)
        assert code == 0, err
        assert "redrove 2 event(s)" in out
    assert sorted(h["ce-id"] for h, _ in sub.received) == ["o-0", "o-1"]
    for headers, body in sub.received:
        assert headers["ce-type"] == "com.example.order"
        assert headers["content-type"] == "application/json"
        assert not [k for k in headers if k.startswith("ce-knativeerror")]
        assert json.loads(body) == {"order": int(headers["ce-id"][-1])}
    assert await peek(sink.amqp_url, queue) == []


async def test_redrive_to_failing_subscriber_keeps_the_dead_letter(
    sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = DeadLetterQueue("notify-on-order", sink.namespace)
    async with subscriber(sink.client, 500) as sub:
        answer = await sink.client.post(
            sink.url + "/notify-on-order", headers=dead_letter_headers("o-9", sub.url), content=b"{}"
        )
        assert answer.status_code == 202, answer.text
        args = [*sink.dlq_args(), "redrive", "notify-on-order", "--id", "o-9", "--to-subscriber"]
        code, out, err = await kfaas(capsys, "dlq", *args)
    assert code == 1
    assert "redrove 0 event(s)" in out
    assert "o-9 failed" in err
    assert "answered 500" in err
    assert len(sub.received) == 1
    (left,) = await peek(sink.amqp_url, queue)
    assert left.id == "o-9"
    assert left.code == "500"
    assert left.reason == "smtp relay refused"
