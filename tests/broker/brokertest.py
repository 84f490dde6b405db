"""Helpers for the dev broker tests: real RabbitMQ, subscribers that are real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from cloudevents.http import CloudEvent, from_http

from kfaas.base.server import serve_embedded
from kfaas.broker import DevBroker
from kfaas.spec import AppSpec, FunctionSpec

Reply = tuple[int, dict[str, str], bytes]
Behaviour = Callable[[CloudEvent, int], Reply | Awaitable[Reply]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ok(_event: CloudEvent, _n: int) -> Reply:
    return 202, {}, b""


@dataclass
class Subscriber:
    """An HTTP function stand-in: records every event (and when it came) and answers with ``behaviour``."""

    name: str
    behaviour: Behaviour = ok
    port: int = field(default_factory=free_port)
    events: list[CloudEvent] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        event = from_http(headers, bytes(body))
        self.events.append(event)
        self.times.append(time.monotonic())
        self.headers.append(headers)
        async with self._changed:
            self._changed.notify_all()
        result = self.behaviour(event, len(self.events))
        status, out_headers, out = await result if asyncio.iscoroutine(result) else result  # type: ignore[misc]
        hdrs = [(k.encode(), v.encode()) for k, v in out_headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": out})

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[CloudEvent]:
        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.events) >= count)

        try:
            await asyncio.wait_for(enough(), timeout)
        except TimeoutError:
            pytest.fail(f"{self.name}: {len(self.events)} event(s) within {timeout}s, expected {count}")
        return self.events


def event(type_: str = "com.example.test", data: Any = None, **extra: str) -> CloudEvent:
    return CloudEvent({"type": type_, "source": "/tests/broker", **extra}, data)


def fn(name: str, *triggers: dict[str, Any], sources: list[dict[str, Any]] | None = None) -> FunctionSpec:
    return FunctionSpec.model_validate(
        {"name": name, "kind": "cloudevent", "triggers": list(triggers), "sources": sources or []}
    )


@dataclass
class Harness:
    amqp_url: str
    namespace: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:10]}")
    subscribers: dict[str, Subscriber] = field(default_factory=dict)
    brokers: list[DevBroker] = field(default_factory=list)
    servers: list[asyncio.Task[None]] = field(default_factory=list)

    async def subscriber(self, name: str, behaviour: Behaviour = ok) -> Subscriber:
        sub = Subscriber(name, behaviour)
        self.subscribers[name] = sub
        self.servers.append(asyncio.create_task(serve_embedded(sub, "127.0.0.1", sub.port)))
        await wait_port(sub.port)
        return sub

    async def broker(self, *functions: FunctionSpec, **kwargs: Any) -> DevBroker:
        app = AppSpec(functions=list(functions), root=Path("functions"))
        broker = DevBroker(
            app, self.amqp_url, lambda name: self.subscribers[name].url, namespace=self.namespace, **kwargs
        )
        await broker.start()
        self.brokers.append(broker)
        return broker

    async def serve(self, broker: DevBroker) -> str:
        port = free_port()
        self.servers.append(asyncio.create_task(serve_embedded(broker.ingress, "127.0.0.1", port)))
        await wait_port(port)
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        names: set[tuple[str, str]] = set()
        for broker in self.brokers:
            for ref in broker.triggers:
                names |= {("q", queue) for queue in ref.queues} | {("x", ref.exchange)}
            await broker.stop()
        for task in self.servers:
            task.cancel()
        await asyncio.gather(*self.servers, return_exceptions=True)
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            for kind, name in sorted(names):
                channel = await connection.channel()
                with contextlib.suppress(Exception):
                    if kind == "q":
                        await channel.queue_delete(name)
                    else:
                        await channel.exchange_delete(name)


async def wait_port(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)
        else:
            writer.close()
            await writer.wait_closed()
            return
