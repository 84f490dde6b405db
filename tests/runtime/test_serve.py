"""``kfaas serve`` as a process: start-up, real HTTP, SIGTERM drain and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "test_functions"
BINARY = {"ce-id": "p-1", "ce-source": "/tests", "ce-type": "t", "ce-specversion": "1.0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kfaas(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kfaas", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KFAAS_FUNCTION": "sample", **(env or {})},
    )


def wait_ready(port: int, proc: subprocess.Popen[str], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"kfaas serve exited with {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/liveness", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail(f"kfaas serve did not answer on port {port} within {timeout}s")


def serve_slow(drain_seconds: int) -> tuple[subprocess.Popen[str], int]:
    """``kfaas serve`` of the sample whose handler sleeps as long as the event says, once it answers."""
    port = free_port()
    source = str(SAMPLES / "cloudevents" / "main.py")
    proc = kfaas(
        "serve",
        *("--source", source, "--target", "slow", "--host", "127.0.0.1", "--port", str(port)),
        env={"KFAAS_DRAIN_SECONDS": str(drain_seconds)},
    )
    wait_ready(port, proc)
    return proc, port


@pytest.fixture
def slow_server() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc, port = serve_slow(10)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(
    slow_server: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = slow_server
    result: dict[str, object] = {}

    def call() -> None:
        response = httpx.post(
            f"http://127.0.0.1:{port}/",
            headers={**BINARY, "content-type": "application/json"},
            content=json.dumps({"seconds": 1.0}),
            timeout=10,
        )
        result["status"] = response.status_code

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)  # the request is now in the handler
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(httpx.TransportError):  # no new connections once stopping
        httpx.get(f"http://127.0.0.1:{port}/health/liveness", timeout=1)
    caller.join(10)
    assert result.get("status") == 204
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["status"], line["ce_id"]) for line in lines if line.get("msg") == "request"] == [
        (204, "p-1")
    ]
    assert "stopping" in err
    assert '"stopped"' in err


def test_a_request_outliving_the_drain_bound_does_not_keep_the_process() -> None:
    proc, port = serve_slow(1)
    try:
        cut: list[BaseException] = []

        def call() -> None:
            try:
                httpx.post(
                    f"http://127.0.0.1:{port}/",
                    headers={**BINARY, "content-type": "application/json"},
                    content=json.dumps({"seconds": 30}),
                    timeout=40,
                )
            except httpx.HTTPError as exc:  # the server may cut it as it stops before the handler ends
                cut.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        assert time.monotonic() - started < 8
        assert proc.returncode == 0
        caller.join(10)
        assert not caller.is_alive()  # answered 500 by granian as it stopped, or cut: never left hanging
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "nowhere.py", "--target", "x"], "function source nowhere.py does not exist"),
        (
            ["--source", str(SAMPLES / "cloudevents" / "main.py"), "--target", "nope"],
            "has no attribute 'nope'",
        ),
        (["--source", str(SAMPLES / "cloudevents" / "main.py")], "no function target"),
    ],
)
def test_load_errors_exit_2_with_a_message(args: list[str], message: str) -> None:
    proc = kfaas("serve", *args, env={"FUNCTION_TARGET": ""})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert message in err


def test_bad_setting_is_named() -> None:
    proc = kfaas("serve", "--target", "x", env={"PORT": "eighty"})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "PORT='eighty' is not a valid int" in err


def test_port_in_use_is_reported() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = kfaas(
            "serve",
            "--source",
            str(SAMPLES / "cloudevents" / "main.py"),
            "--target",
            "record",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        )
        _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "ddress already in use" in err or "cannot serve" in err


def test_environment_variables_select_the_function() -> None:
    port = free_port()
    proc = kfaas(
        "serve",
        env={
            "FUNCTION_SOURCE": str(SAMPLES / "ff_aio" / "main.py"),
            "FUNCTION_TARGET": "hello",
            "PORT": str(port),
            "HOST": "127.0.0.1",
        },
    )
    try:
        wait_ready(port, proc)
        response = httpx.get(f"http://127.0.0.1:{port}/", params={"name": "env"})
        assert response.json() == {"hello": "env"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("function", "expected"), [("get-user", "app (asgi)"), ("process-order", "handle (cloudevent)")]
)
def test_without_a_target_the_function_description_names_it(function: str, expected: str) -> None:
    source = Path(__file__).resolve().parents[2] / "functions" / function / "main.py"
    proc = kfaas("serve", "--dry-run", env={"FUNCTION_SOURCE": str(source), "FUNCTION_TARGET": ""})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"would serve {expected}" in out


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        (
            "MONGODB_URL",
            "mongo://kfaas:s3cret@db/",
            "MONGODB_URL='mongo://kfaas:***@db/' does not start with",
        ),
        ("MONGODB_URL", "mongodb://kfaas:s3cret@db:port/", "is not a valid MongoDB URL"),
        ("AMQP_URL", "http://kfaas:s3cret@rabbitmq/", "AMQP_URL='http://kfaas:***@rabbitmq/' does not start"),
        ("K_SINK", "broker-ingress:8080", "K_SINK='broker-ingress:8080' does not start with http://"),
    ],
)
def test_a_url_that_can_never_work_stops_serve_at_once(variable: str, value: str, complaint: str) -> None:
    source = str(SAMPLES / "cloudevents" / "main.py")
    proc = kfaas(
        "serve", "--source", source, "--target", "record", "--port", str(free_port()), env={variable: value}
    )
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    lines = (out + err).strip().splitlines()
    assert len(lines) == 1, err
    assert complaint in lines[0]
    assert "s3cret" not in lines[0]


@pytest.mark.integration
async def test_an_unreachable_service_keeps_serve_up_not_ready_and_says_so_once(amqp_url: str) -> None:
    """Knative restarts a container that exits, with a growing back-off: a function that exited while
    RabbitMQ restarts would stay down for minutes after RabbitMQ is back. kfaas serve keeps running, answers
    readiness 503 naming the service (no traffic is routed to it meanwhile) and is ready as soon as the
    service answers; the log says so once each way, not on every probe."""
    from urllib.parse import urlsplit

    from tcpproxy import TcpProxy

    real = urlsplit(amqp_url)
    proxy = TcpProxy(real.hostname or "127.0.0.1", real.port or 5672)
    proxy.port = free_port()  # RabbitMQ "is" there, but nothing listens yet
    url = amqp_url.replace(f":{real.port}", f":{proxy.port}", 1)
    port = free_port()
    source = str(SAMPLES / "cloudevents" / "main.py")
    proc = kfaas(
        "serve",
        "--source",
        source,
        "--target",
        "record",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={"AMQP_URL": url},
    )
    try:
        wait_ready(port, proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(10):
                answer = await client.get("/health/readiness")
                assert answer.status_code == 503
                assert answer.json()["rabbitmq"].startswith("error: ")
            await proxy.start()
            for _ in range(100):
                if (await client.get("/health/readiness")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("not ready 10 s after RabbitMQ came back")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        await proxy.stop()
    assert proc.returncode == 0, err
    messages = [json.loads(line)["msg"] for line in err.splitlines() if line.startswith("{")]
    assert sum(m.startswith("not ready: rabbitmq does not answer") for m in messages) == 1, messages
    assert sum(m == "rabbitmq answers again" for m in messages) == 1, messages
    assert not [m for m in messages if "transport" in m or "Reconnecting" in m], messages
