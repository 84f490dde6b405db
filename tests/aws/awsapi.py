"""Helpers of the AWS API endpoint tests: a ``kfaas dev`` run serving them, and readers of what arrived."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from lambdatest import CACHE, LambdaDev, free_port, go_build, go_version

ROOT = Path(__file__).resolve().parents[2]
WATCH = ROOT / "tests" / "test_functions" / "lambda_watch"
CALLER = ROOT / "tests" / "test_functions" / "aws_caller"
SDK_GO = Path(__file__).resolve().parent / "sdkgo"
KEY = "AKIAKFAASTEST0000001"
SECRET = "kfaas-test-secret-key-0123456789abcdefghij"


def aws_dev(run: LambdaDev, mail_sink: Any, record: Path) -> tuple[str, str]:
    """Prepare ``run`` (the watcher and the caller functions); the endpoints' URL and ``--aws-port``."""
    shutil.copytree(WATCH, run.functions / "order-watch")
    shutil.copytree(CALLER, run.functions / "aws-caller")
    record.touch()
    port = free_port()
    run.extra_env.update(
        LAMBDA_TEST_RECORD=str(record),
        KFAAS_AWS_ACCESS_KEY_ID=KEY,
        KFAAS_AWS_SECRET_ACCESS_KEY=SECRET,
        SMTP_HOST=mail_sink.host,
        SMTP_PORT=str(mail_sink.port),
        CALLER_QUEUE=f"caller-{run.run_id}",
    )
    return f"http://127.0.0.1:{port}", str(port)


def sdk_env(url: str, key: str = KEY, secret: str = SECRET) -> dict[str, str]:
    """The AWS SDKs' standard settings pointing at kfaas (and nothing from this machine's AWS config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {f"AWS_ENDPOINT_URL_{s}": url for s in ("EVENTBRIDGE", "SQS", "SES", "SESV2")},
        AWS_ACCESS_KEY_ID=key,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_REGION="eu-west-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def watched(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line)["event"] for line in record.read_text().splitlines() if line.strip()]


async def declare_queue(amqp_url: str, name: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})


async def drain_queue(amqp_url: str, name: str) -> list[Any]:
    """Every message now in ``name`` (acked: taken off the queue)."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url, timeout=10)
    out = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        while (message := await queue.get(fail=False, timeout=5)) is not None:
            await message.ack()
            out.append(message)
    return out


def go_awscall(require_tool: Any) -> Path:
    """``go build`` of tests/aws/sdkgo (the AWS SDK for Go v2), cached by the hash of its sources."""
    import hashlib

    go = require_tool("go")
    digest = hashlib.sha256()
    for path in sorted(SDK_GO.iterdir()):
        if path.suffix in (".go", ".mod", ".sum"):
            digest.update(path.name.encode() + path.read_bytes())
    out = CACHE.parent / "awssdk-go" / f"{digest.hexdigest()[:16]}-{go_version(go)}" / "awscall"
    return go_build(go, SDK_GO, ".", out, "tests/aws/sdkgo")
