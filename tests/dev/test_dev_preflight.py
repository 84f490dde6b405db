"""``kfaas dev`` checks what it needs before it starts anything, and stops within seconds with one line.

A wrong AMQP_URL used to print ~550 reconnect lines over 60 s and then "place-order not ready"; now the
URL is named (password hidden) at once. A RabbitMQ shared with another run is checked too: the dev
broker's namespace and the queues of its queue sources are claimed before the functions start, and a
run that would share them names the one that holds them (kfaas.broker._claims).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import pytest
import yaml

from kfaas.dev.smtp import free_port

ROOT = Path(__file__).resolve().parents[2]


def dev(functions: Path, env: dict[str, str], *args: str) -> tuple[int, list[str], float]:
    """Run kfaas dev to its end; (exit code, the lines it printed, seconds it took)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "AMQP_", "SMTP_", "KFAAS_"))}
    command = [sys.executable, "-m", "kfaas", "dev", "--functions", str(functions)]
    command += ["--port", str(free_port()), "--broker-port", str(free_port()), *args]
    started = time.monotonic()
    result = subprocess.run(command, env=base | env, capture_output=True, text=True, timeout=60, check=False)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return result.returncode, lines, time.monotonic() - started


@pytest.fixture
def app_copy(tmp_path: Path) -> Path:
    """The application's functions with a queue of this test's own (nothing else consumes it)."""
    functions = tmp_path / "functions"
    shutil.copytree(ROOT / "functions", functions, ignore=shutil.ignore_patterns("__pycache__"))
    description = functions / "process-order" / "function.yaml"
    spec = yaml.safe_load(description.read_text())
    spec["sources"][0]["queue"] = f"orders-{uuid.uuid4().hex[:10]}"
    description.write_text(yaml.safe_dump(spec))
    return functions


def check_one_line(code: int, lines: list[str], took: float, named: str, service: str) -> None:
    assert code == 1, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"kfaas dev: {named} is not reachable"), lines[0]
    assert lines[0].endswith(f"({service})")
    assert "s3cret" not in lines[0]
    assert took < 15, f"{took:.1f}s"


def test_an_unreachable_mongodb_stops_dev_at_once() -> None:
    port = free_port()  # nothing listens there
    env = {"MONGODB_URL": f"mongodb://kfaas:s3cret@127.0.0.1:{port}/", "AMQP_URL": "amqp://127.0.0.1:1/"}
    code, lines, took = dev(ROOT / "functions", env)
    check_one_line(code, lines, took, f"MongoDB at mongodb://kfaas:***@127.0.0.1:{port}/", "MONGODB_URL")


@pytest.mark.integration
def test_an_unreachable_rabbitmq_stops_dev_at_once(mongodb_url: str) -> None:
    port = free_port()
    env = {"MONGODB_URL": mongodb_url, "AMQP_URL": f"amqp://kfaas:s3cret@127.0.0.1:{port}/"}
    code, lines, took = dev(ROOT / "functions", env)
    check_one_line(code, lines, took, f"RabbitMQ at amqp://kfaas:***@127.0.0.1:{port}/", "AMQP_URL")


@pytest.mark.integration
def test_a_wrong_rabbitmq_password_is_named(mongodb_url: str, amqp_url: str) -> None:
    wrong = amqp_url.replace("://", "://nobody-", 1)  # a user that does not exist
    code, lines, took = dev(ROOT / "functions", {"MONGODB_URL": mongodb_url, "AMQP_URL": wrong})
    assert code == 1, lines
    assert len(lines) == 1, lines
    assert "login refused: wrong user or password" in lines[0]
    assert took < 15


@pytest.mark.integration
def test_a_second_run_is_refused_and_names_the_first(app_copy: Path, mongodb_url: str, amqp_url: str) -> None:
    """Another namespace's broker holds the queue source: the second run refuses before any function starts.

    The first run here is ``kfaas broker`` (the same DevBroker as kfaas dev's, in a process of its own).
    """
    queue = yaml.safe_load((app_copy / "process-order" / "function.yaml").read_text())["sources"][0]["queue"]
    first_namespace = f"first-{uuid.uuid4().hex[:8]}"
    port = free_port()
    first = subprocess.Popen(
        [
            *(sys.executable, "-m", "kfaas", "broker", "--functions", str(app_copy), "--host", "127.0.0.1"),
            *("--port", str(port), "--amqp-url", amqp_url, "--namespace", first_namespace),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(port)
        env = {"MONGODB_URL": mongodb_url, "AMQP_URL": amqp_url}
        code, lines, took = dev(app_copy, env | {"KFAAS_NAMESPACE": f"second-{uuid.uuid4().hex[:8]}"})
        assert code == 1, lines
        assert len(lines) == 1, lines
        assert f"queue {queue!r} of the queue source process-order-orders is consumed by" in lines[0]
        assert f"the kfaas broker of namespace {first_namespace!r} (pid {first.pid} on" in lines[0]
        assert took < 15
        code, lines, _ = dev(app_copy, env | {"KFAAS_NAMESPACE": first_namespace})
        assert code == 1, lines
        assert (
            f"namespace {first_namespace!r} is in use on this RabbitMQ by another kfaas broker (pid {first.pid}"
            in (lines[0])
        )
    finally:
        first.terminate()
        first.communicate(timeout=30)
        asyncio.run(_cleanup(amqp_url, queue, first_namespace, app_copy))


def _wait_ready(port: int) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/readiness", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail("kfaas broker did not get ready")


async def _cleanup(amqp_url: str, queue: str, namespace: str, functions: Path) -> None:
    from kfaas.broker import triggers_of
    from kfaas.spec import load_app

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        names = [queue] + [
            n for r in triggers_of(load_app(functions), namespace) for n in (r.queue, r.dead_letter_queue)
        ]
        for name in names:
            channel = await connection.channel()
            await channel.queue_delete(name)
        channel = await connection.channel()
        await channel.exchange_delete(f"b.{namespace}.default")


def test_no_mail_sink_without_a_relay_is_refused_naming_who_sends_email() -> None:
    env = {"MONGODB_URL": "mongodb://127.0.0.1:1/", "AMQP_URL": "amqp://127.0.0.1:1/"}
    code, lines, _ = dev(ROOT / "functions", env, "--no-mail-sink")
    assert code == 2, lines
    assert lines == [
        "kfaas dev: SMTP_HOST is not set and --no-mail-sink is given (daily-report, notify-email send email)"
    ]
