"""Python Lambda handlers, unchanged, under real ``kfaas serve`` processes.

- through ``kfaas dev`` (the gateway, the dev broker, real RabbitMQ and MongoDB-wire server): API Gateway
  events from routes, SQS batches from a queue with a partial batch response, EventBridge events from the
  broker (a failure retried, then dead-lettered with its Lambda error type), a Scheduled Event from a ping;
- the same handler run by AWS's own runtime client (awslambdaric) behind kfaas's Runtime API answers exactly
  as the in-process path does;
- the pool of runtime processes: a process that dies fails its invocation as Runtime.ExitError and is
  started again, an invocation past its deadline fails with Sandbox.Timedout, two processes take two
  invocations at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from lambdatest import LambdaDev, edit, free_port, publish_plain

pytestmark = pytest.mark.integration

FUNCTIONS = Path(__file__).resolve().parents[1] / "test_functions"
HANDLER = FUNCTIONS / "lambda_py"


def _app(tmp: Path, *names: str) -> Path:
    root = tmp / "app"
    for name in names:
        shutil.copytree(FUNCTIONS / name.replace("-", "_"), root / name)
    return root


def _records(path: Path) -> list[dict[str, Any]]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


async def test_python_handler_through_kfaas_dev(
    lambda_dev: Callable[[Path], LambdaDev], tmp_path: Path, amqp_url: str
) -> None:
    run = lambda_dev(_app(tmp_path, "lambda-py"))
    queues = run.rename_queues()
    record = tmp_path / "record.jsonl"
    run.extra_env["LAMBDA_TEST_RECORD"] = str(record)
    # the broker's clock starts 2 s before a minute: the every-minute ping fires at once
    start = (datetime.now(UTC) + timedelta(minutes=5)).replace(second=58, microsecond=0)
    await run.start("--clock-start", start.isoformat())

    async with httpx.AsyncClient(base_url=run.base_url, timeout=30) as http:
        rest = await http.post("/items/7?tag=a&tag=b", json={"n": 1}, headers={"x-trace": "t"})
        assert rest.status_code == 201, rest.text
        assert rest.headers["x-handler"] == "python"
        seen = rest.json()
        event = seen["event"]
        assert event["resource"] == "/items/{id}"
        assert event["path"] == "/items/7"
        assert event["pathParameters"] == {"id": "7"}
        assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"]}
        assert json.loads(event["body"]) == {"n": 1}
        assert event["headers"]["x-trace"] == "t"
        assert seen["context"]["function_name"] == "lambda-py"
        assert 0 < seen["context"]["remaining_ms"] <= 5000

        v2 = await http.get("/v2/items/9")
        assert v2.status_code == 200
        assert v2.json()["event"]["version"] == "2.0"
        assert v2.json()["event"]["routeKey"] == "GET /v2/items/{id}"
        assert "c=1" in v2.headers.get_list("set-cookie")

        greedy = await http.get("/files/a/b.txt")
        assert greedy.status_code == 404  # the gateway routes only whole segments: {path+} is not routed

        binary = await http.get("/items/binary")
        assert binary.content == b"\x89PNG\x00\x01"
        assert binary.headers["content-type"] == "image/png"
        bare_rest = await http.get("/items/bare")  # REST: a bare string is a malformed proxy response
        assert bare_rest.status_code == 502
        assert bare_rest.json()["message"] == "Internal server error"
        bare_http = await http.get("/v2/items/bare")  # HTTP API: a 200 with the string as body
        assert (bare_http.status_code, bare_http.text) == (200, "just a string")
        failed = await http.get("/items/boom")
        assert failed.status_code == 502
        assert failed.json()["error"] == "the function failed (InventoryError); see its log"
    assert run.count('"errorType": "InventoryError"', '"errorMessage": "boom"') == 1  # Lambda's error object

    # SQS: one batch of five records, one of them reported failed (partial batch response)
    bodies = [b"ok-1", b"ok-2", b"fail-3", b"ok-4", b"ok-5"]
    await publish_plain(amqp_url, queues["lambda-jobs"], bodies)

    async def all_dead() -> bool:
        shown = run.dlq("show", "lambda-py-jobs")
        return shown.returncode == 0 and "fail-3" in shown.stdout

    await run.eventually(all_dead, 60, "the failed record dead-lettered")
    batches = [r["Records"] for r in _records(record) if "Records" in r]
    bodies_seen = [rec["body"] for batch in batches for rec in batch]
    for body in ("ok-1", "ok-2", "ok-4", "ok-5"):
        assert bodies_seen.count(body) == 1, bodies_seen  # succeeded once: never retried
    assert bodies_seen.count("fail-3") == 4  # the first attempt and 3 retries (the source's delivery)
    assert max(len(b) for b in batches) > 1  # records in flight together went as one batch
    assert run.dlq("show", "lambda-py-jobs").stdout.count("ok-") == 0  # only the failed record is there
    assert "BatchItemFailure" in run.dlq("show", "lambda-py-jobs").stdout

    # EventBridge: a broker event whose handler raises is retried, then dead-lettered with its error type
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"http://127.0.0.1:{run.broker_port}/default",
            headers={
                "ce-specversion": "1.0",
                "ce-id": "o-1",
                "ce-source": "/shop",
                "ce-type": "com.example.order.placed",
            },
            json={"sku": "lamp", "fail": True},
        )
        assert answer.status_code == 202

    async def event_dead() -> bool:
        shown = run.dlq("show", "lambda-py-orders")
        return shown.returncode == 0 and "lamp" in shown.stdout

    await run.eventually(event_dead, 60, "the failing EventBridge event dead-lettered")
    assert "the function failed (InventoryError)" in run.dlq("show", "lambda-py-orders").stdout

    # the ping source's schedule, as an EventBridge Scheduled Event
    async def scheduled() -> list[dict[str, Any]]:
        return [r for r in _records(record) if r.get("detail-type") == "Scheduled Event"]

    ticks = await run.eventually(scheduled, 30, "a Scheduled Event from the ping source")
    assert ticks[0]["source"] == "aws.events"
    assert ticks[0]["resources"][0].endswith(":rule/lambda-py-tick")


# --- the same handler under awslambdaric ------------------------------------------------------------------


class Serve:
    """One ``kfaas serve`` process of a lambda function folder."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.folder = folder
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KFAAS_", "FUNCTION_", "MONGODB_", "AMQP_"))
        }
        environ.update(
            HOST="127.0.0.1",
            PORT=str(self.port),
            FUNCTION_SOURCE=str(folder / "main.py"),
            KFAAS_FUNCTION="lambda-py",
            PYTHONUNBUFFERED="1",
            **(env or {}),
        )
        self.log = (folder.parent / f"{folder.name}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kfaas", "serve"], env=environ, stdout=self.log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    async def ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    answer = await http.get(f"{self.url}/health/readiness")
                    if answer.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"kfaas serve did not become ready:\n{self.output()}")
                await asyncio.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def _runtime_client_copy(
    tmp: Path, name: str = "ric", handler_source: Path = HANDLER, **lambda_settings: Any
) -> Path:
    """The handler's folder as a custom runtime: a bootstrap that runs awslambdaric, as a container image
    built from AWS's python base image does."""
    folder = tmp / name
    shutil.copytree(handler_source, folder)
    bootstrap = folder / "bootstrap"
    bootstrap.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m awslambdaric "$_HANDLER"\n')
    bootstrap.chmod(0o755)

    def change(data: dict[str, Any]) -> None:
        data["runtime"] = "provided.al2023"
        data.setdefault("lambda", {}).update(lambda_settings)

    edit(folder / "function.yaml", change)
    return folder


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def make(folder: Path, env: dict[str, str] | None = None) -> Serve:
        server = Serve(folder, env)
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            code = server.stop()
            assert code == 0, f"kfaas serve exited {code} on SIGTERM:\n{server.output()}"


_VOLATILE = {
    "requestId",
    "extendedRequestId",
    "requestTime",
    "requestTimeEpoch",
    "time",
    "timeEpoch",
    "request_id",
    "remaining_ms",
    "apiId",
    "x-amzn-trace-id",
}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _stable(v)
            for k, v in value.items()
            if k not in _VOLATILE and k not in ("host", "domainName", "domainPrefix")
        }
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


async def _exchange(url: str) -> list[Any]:
    results: list[Any] = []
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        for method, path, body in (
            ("GET", "/items/1?x=1&x=2", None),
            ("POST", "/items/2", {"a": [1, 2]}),
            ("POST", "/v2/items/3", {"b": True}),
            ("GET", "/items/binary", None),
            ("GET", "/items/bare", None),
            ("GET", "/v2/items/bare", None),
            ("GET", "/items/boom", None),
        ):
            answer = await http.request(
                method, path, json=body, headers={"host": "api.local", "user-agent": "t"}
            )
            try:
                content: Any = _stable(json.loads(answer.content))
                if isinstance(content, dict) and isinstance(content.get("event"), dict):
                    content["event"] = _stable(content["event"])
            except ValueError:
                content = answer.content
            results.append((answer.status_code, answer.headers.get("content-type"), content))
        event = await http.post(
            "/",
            headers={
                "ce-specversion": "1.0",
                "ce-id": "e-1",
                "ce-source": "/shop",
                "ce-type": "com.example.order.placed",
                "ce-time": "2026-04-10T09:00:00Z",
            },
            json={"sku": "book"},
        )
        results.append((event.status_code, event.headers.get("ce-type"), json.loads(event.content)))
        failed = await http.post(
            "/",
            headers={
                "ce-specversion": "1.0",
                "ce-id": "e-2",
                "ce-source": "/shop",
                "ce-type": "com.example.order.placed",
            },
            json={"sku": "lamp", "fail": True},
        )
        results.append((failed.status_code, failed.json()["error"]))
    return results


async def test_awslambdaric_behind_the_runtime_api_answers_as_in_process(
    serve: Callable[..., Serve], tmp_path: Path
) -> None:
    in_process = tmp_path / "inproc"
    shutil.copytree(HANDLER, in_process)
    ric = _runtime_client_copy(tmp_path)
    a, b = serve(in_process), serve(ric)
    await a.ready()
    await b.ready()
    ours, theirs = await _exchange(a.url), await _exchange(b.url)
    assert ours[0][0] == 200
    assert ours[-1][1] == "the function failed (InventoryError); see its log"
    # lambda.reply: the handler's return value for a broker event comes back as a reply CloudEvent
    assert ours[-2][:2] == (200, "com.example.order.seen")
    assert ours[-2][2] == {"seen": "e-1", "detail": {"sku": "book"}}
    assert ours == theirs
    assert '"errorType": "InventoryError"' in b.output()  # the error object, logged by kfaas for both


def _bootstrap_handler(tmp: Path, code: str, **settings: Any) -> Path:
    """A folder with a python handler run by awslambdaric through the Runtime API."""
    source = tmp / "src"
    source.mkdir()
    (source / "app.py").write_text(code)
    (source / "function.yaml").write_text(
        "kind: lambda\nhandler: app.handler\nruntime: provided.al2023\ntimeout: 2\n"
        'routes:\n  - {path: "/run/{what}", methods: [GET]}\n'
    )
    return _runtime_client_copy(tmp, "fn", source, **settings)


POOL_HANDLER = """
import os, time

def handler(event, context):
    what = event["pathParameters"]["what"]
    if what == "exit":
        os._exit(3)
    if what == "sleep":
        time.sleep(float(event["queryStringParameters"]["s"]))
    return {"statusCode": 200, "body": str(os.getpid())}
"""


async def test_a_dead_runtime_process_fails_its_invocation_and_is_started_again(
    serve: Callable[..., Serve], tmp_path: Path
) -> None:
    server = serve(_bootstrap_handler(tmp_path, POOL_HANDLER))
    await server.ready()
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        first = await http.get("/run/pid")
        assert first.status_code == 200
        died = await http.get("/run/exit")
        assert died.status_code == 502
        assert died.json()["error"] == "the function failed (Runtime.ExitError); see its log"
        after = await http.get("/run/pid")
        assert after.status_code == 200
        assert after.text != first.text
    assert "Runtime exited with error: exit status 3" in server.output()


async def test_the_deadline_is_enforced(serve: Callable[..., Serve], tmp_path: Path) -> None:
    server = serve(_bootstrap_handler(tmp_path, POOL_HANDLER))
    await server.ready()
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        started = time.monotonic()
        late = await http.get("/run/sleep?s=10")
        took = time.monotonic() - started
        assert late.status_code == 502
        assert "Sandbox.Timedout" in late.json()["error"]
        assert 1.8 < took < 5, took  # the function's timeout is 2 s
        assert (await http.get("/run/pid")).status_code == 200  # the killed process was replaced
    assert "Task timed out after 2.00 seconds" in server.output()


async def test_a_pool_of_two_takes_two_invocations_at_once(
    serve: Callable[..., Serve], tmp_path: Path
) -> None:
    server = serve(_bootstrap_handler(tmp_path, POOL_HANDLER, concurrency=2))
    await server.ready()
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        started = time.monotonic()
        answers = await asyncio.gather(*(http.get("/run/sleep?s=1") for _ in range(2)))
        took = time.monotonic() - started
    assert [a.status_code for a in answers] == [200, 200]
    assert len({a.text for a in answers}) == 2  # two processes
    assert took < 1.9, took  # side by side, not one after the other


def _task_request(request_id: str, data: Any) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": request_id,
        "ce-source": "/kfaas/saga",
        "ce-type": "com.kfaas.task.request",
        "ce-kfaasexecution": "exec-1",
        "content-type": "application/json",
    }
    return headers, json.dumps(data).encode()


@pytest.mark.parametrize("path", ["in-process", "awslambdaric"])
async def test_a_lambda_handler_as_a_state_machine_task(
    serve: Callable[..., Serve], tmp_path: Path, path: str
) -> None:
    """A Task gets the state's input as its event; the result, or the error type Lambda reports, comes back
    as the runtime's task reply (what a saga's Catch matches)."""
    if path == "in-process":
        folder = tmp_path / "inproc"
        shutil.copytree(HANDLER, folder)
    else:
        folder = _runtime_client_copy(tmp_path)
    server = serve(folder)
    await server.ready()
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        headers, body = _task_request("exec-1/ReserveInventory.1", {"orderId": "o-1"})
        done = await http.post("/", headers=headers, content=body)
        assert done.status_code == 200, done.text
        assert done.headers["ce-type"] == "com.kfaas.task.result", (done.text, server.output())
        assert done.headers["ce-kfaasrequest"] == "exec-1/ReserveInventory.1"
        assert done.json()["echo"] == {"orderId": "o-1"}  # the state's input, unchanged, as the event
        headers, body = _task_request(
            "exec-1/ReserveInventory.2", {"Records": [{"messageId": "m", "body": "raise"}]}
        )
        failed = await http.post("/", headers=headers, content=body)
        assert failed.status_code == 200
        assert failed.headers["ce-type"] == "com.kfaas.task.error"
        assert failed.json() == {"errorType": "InventoryError", "errorMessage": "out of stock"}
