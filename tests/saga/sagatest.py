"""A whole saga stack for tests: real RabbitMQ and MongoDB, functions as ``kfaas serve`` processes, the dev
broker, and one or more ``kfaas saga`` engine processes behind a small failover proxy (what a Kubernetes
Service does for a Deployment's replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kfaas.base.server import serve_embedded
from kfaas.broker import DevBroker, serve_ingress
from kfaas.spec import load_app

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FailoverProxy:
    """TCP proxy over several backends: each new connection goes to the next backend that accepts it."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.port = 0
        self._next = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(len(self.ports)):
            port = self.ports[self._next % len(self.ports)]
            self._next += 1
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            for a, b in ((reader, up_writer), (up_reader, writer)):
                task = asyncio.ensure_future(self._pipe(a, b))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@dataclass
class Stack:
    functions_dir: Path
    mongodb_url: str
    database: str
    amqp_url: str
    namespace: str
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    engine_ports: dict[str, int] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    broker: DevBroker | None = None
    ingress_port: int = 0
    proxy: FailoverProxy | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    logs: Path | None = None
    files: list[Any] = field(default_factory=list)
    app: Any = None
    sources: dict[str, str] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    every_proc: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def sink(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}/default"

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        assert self.logs is not None
        out = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the process)
        self.files.append(out)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "AMQP_", "K_SINK"))}
        proc = subprocess.Popen(
            [sys.executable, "-m", "kfaas", *args], env={**base, **env}, stdout=out, stderr=subprocess.STDOUT
        )
        self.procs[name] = proc
        self.every_proc.append(proc)
        return proc

    def start_function(self, name: str, port: int | None = None) -> None:
        port = port or free_port()
        folder = self.functions_dir / name
        env = {
            "MONGODB_URL": self.mongodb_url,
            "MONGODB_DATABASE": self.database,
            "KFAAS_FUNCTION": name,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "FUNCTION_SOURCE": str(folder / self.sources.get(name, "main.py")),
            "FUNCTION_TARGET": self.targets.get(name, "handle"),
            "FUNCTION_SIGNATURE_TYPE": "cloudevent",
            "KFAAS_DRAIN_SECONDS": "1",
            **self.env.get(name, {}),  # type: ignore[dict-item]
        }
        self._spawn(name, ["serve"], env)
        self.urls[name] = f"http://127.0.0.1:{port}"

    def start_engine(self, name: str) -> None:
        port = self.engine_ports.get(name) or free_port()
        self.engine_ports[name] = port
        env = {
            "MONGODB_URL": self.mongodb_url,
            "MONGODB_DATABASE": self.database,
            "K_SINK": self.sink,
            "LOG_LEVEL": "INFO",
        }
        self._spawn(
            name,
            [
                "saga",
                "--functions",
                str(self.functions_dir),
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--lease",
                "2",
            ],
            env,
        )

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    async def wait_ready(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0, trust_env=False) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(url + "/health/readiness")).status_code == 200:
                        return
                assert time.monotonic() < deadline, f"{url} not ready; logs in {self.logs}"
                await asyncio.sleep(0.05)

    # -- the API through the proxy -------------------------------------------------------------------
    @property
    def api(self) -> str:
        assert self.proxy is not None
        return f"http://127.0.0.1:{self.proxy.port}"

    async def start_execution(self, machine: str, name: str, input_: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
            answer = await client.post(
                f"{self.api}/state-machines/{machine}/executions", json={"name": name, "input": input_}
            )
            assert answer.status_code in (200, 201), answer.text
            return dict(answer.json())

    async def describe(self, exec_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
            answer = await client.get(f"{self.api}/executions/{exec_id}")
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

    async def history(self, exec_id: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10.0, trust_env=False) as client:
            answer = await client.get(f"{self.api}/executions/{exec_id}/history")
            return list(answer.json()["events"])

    async def wait_done(self, exec_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(AssertionError, httpx.TransportError):
                summary = await self.describe(exec_id)
                if summary["status"] != "RUNNING":
                    return summary
            assert time.monotonic() < deadline, (
                f"{exec_id} still running after {timeout}s; logs in {self.logs}"
            )
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def saga_stack(
    tmp_path: Path,
    mongodb_url: str,
    amqp_url: str,
    functions: list[str],
    *,
    statemachines: Path,
    functions_root: Path = ROOT / "functions",
    engines: int = 1,
    env: dict[str, dict[str, str]] | None = None,
) -> AsyncIterator[Stack]:
    """Run the functions, the broker and the engines; everything is stopped and removed afterwards."""
    folder = tmp_path / "app"
    (folder / "functions").mkdir(parents=True)
    for name in functions:
        (folder / "functions" / name).symlink_to(functions_root / name)
    (folder / "statemachines").symlink_to(statemachines)
    logs = tmp_path / "logs"
    logs.mkdir()
    suffix = uuid.uuid4().hex[:8]
    stack = Stack(
        folder / "functions",
        mongodb_url,
        f"saga_{suffix}",
        amqp_url,
        f"saga-{suffix}",
        env=env or {},
        logs=logs,
    )
    app = load_app(stack.functions_dir)
    stack.app = app
    stack.sources = {fn.name: fn.source for fn in app.functions}
    stack.targets = {fn.name: fn.target for fn in app.functions}
    try:
        for name in functions:
            stack.start_function(name)
        stack.engine_ports = {f"engine-{i}": free_port() for i in range(engines)}
        stack.proxy = FailoverProxy(list(stack.engine_ports.values()))
        await stack.proxy.start()
        urls = {**stack.urls, "kfaas-saga": f"http://127.0.0.1:{stack.proxy.port}"}
        stack.broker = DevBroker(
            app, amqp_url, lambda n: urls[n] + "/", namespace=stack.namespace, sources=False
        )
        await stack.broker.start()
        stack.ingress_port = free_port()
        stack.tasks.append(
            asyncio.ensure_future(serve_ingress(stack.broker, "127.0.0.1", stack.ingress_port))
        )
        for name in stack.engine_ports:
            stack.start_engine(name)
        await asyncio.gather(*(stack.wait_ready(u) for u in stack.urls.values()))
        await asyncio.gather(
            *(stack.wait_ready(f"http://127.0.0.1:{p}") for p in stack.engine_ports.values())
        )
        yield stack
    finally:
        for proc in stack.every_proc:
            if proc.poll() is None:
                proc.terminate()
        for proc in stack.every_proc:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for file in stack.files:
            file.close()
        for task in stack.tasks:
            task.cancel()
        await asyncio.gather(*stack.tasks, return_exceptions=True)
        if stack.broker is not None:
            await _delete_topology(stack.broker)
            await stack.broker.stop()
        if stack.proxy is not None:
            await stack.proxy.stop()
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
        await client.drop_database(stack.database)
        await client.close()


async def _delete_topology(broker: DevBroker) -> None:
    """Remove the test's queues and exchanges (a failed delete closes the channel: one channel each)."""
    names = [q for ref in broker.triggers for q in (ref.queue, ref.dead_letter_queue)]
    for name in names:
        with contextlib.suppress(Exception):
            channel = await broker.connection.channel()
            await channel.queue_delete(name, if_unused=False, if_empty=False)
            await channel.close()
    for name in broker.brokers:
        with contextlib.suppress(Exception):
            channel = await broker.connection.channel()
            await channel.exchange_delete(f"b.{broker.namespace}.{name}")
            await channel.close()


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)


_ = serve_embedded
