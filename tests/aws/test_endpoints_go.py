"""The AWS SDK for Go v2 (the seed's language), unchanged, against ``kfaas aws-endpoints`` in ``kfaas dev``.

tests/aws/sdkgo is a small program making one call per run through the SDK's own clients, configured by
``config.LoadDefaultConfig`` alone: the endpoint from ``AWS_ENDPOINT_URL_<SERVICE>``, the keys from
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``. Built once and cached like the Go example's handlers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from awsapi import SECRET, aws_dev, declare_queue, drain_queue, go_awscall, sdk_env, watched
from lambdatest import LambdaDev

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def awscall(require_tool: Callable[[str], str]) -> Path:
    return go_awscall(require_tool)


async def _call(binary: Path, env: dict[str, str], operation: str, payload: dict[str, Any]) -> dict[str, Any]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary), operation, json.dumps(payload)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    done = await asyncio.get_running_loop().run_in_executor(None, run)
    assert done.returncode == 0, f"awscall {operation} failed: {done.stderr}"
    return dict(json.loads(done.stdout))


async def test_go_sdk_reaches_the_broker_rabbitmq_and_smtp(
    lambda_dev: Callable[[Path], LambdaDev], awscall: Path, mail_sink: Any, amqp_url: str, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    run = lambda_dev(tmp_path / "empty")
    record = tmp_path / "watched.jsonl"
    url, port = aws_dev(run, mail_sink, record)
    queue = f"go-{run.run_id}"
    run.queues = [queue]
    await declare_queue(amqp_url, queue)
    await run.start("--aws-port", port)
    env = sdk_env(url)

    # EventBridge: the seed's ProcessOrder event, and a malformed entry answered on its own
    put = await _call(
        awscall,
        env,
        "PutEvents",
        {
            "Entries": [
                {
                    "Source": "orders",
                    "DetailType": "OrderProcessed",
                    "Detail": json.dumps({"orderId": "go-1"}),
                },
                {"Source": "orders", "DetailType": "OrderProcessed"},
            ]
        },
    )
    out = put["output"]
    assert out["FailedEntryCount"] == 1, put
    assert out["Entries"][0]["EventId"]
    assert out["Entries"][1]["ErrorCode"] == "InvalidArgument"

    async def arrived() -> list[dict[str, Any]] | None:
        return [e for e in watched(record) if e["detail"].get("orderId") == "go-1"] or None

    seen = await run.eventually(arrived, 60, "the Go SDK's event at the trigger's function")
    assert seen[0]["detail-type"] == "OrderProcessed"
    assert seen[0]["id"] == out["Entries"][0]["EventId"]

    # SQS: the SDK checks MD5OfMessageBody and MD5OfMessageAttributes itself
    got = await _call(awscall, env, "GetQueueUrl", {"QueueName": queue})
    queue_url = got["output"]["QueueUrl"]
    assert queue_url.endswith(f"/000000000000/{queue}")
    sent = await _call(
        awscall,
        env,
        "SendMessage",
        {
            "QueueUrl": queue_url,
            "MessageBody": '{"ID": "go-o-1"}',
            "MessageAttributes": {
                "kind": {"DataType": "String", "StringValue": "order"},
                "blob": {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\x07").decode()},
            },
        },
    )
    assert "error" not in sent, sent
    batch = await _call(
        awscall,
        env,
        "SendMessageBatch",
        {
            "QueueUrl": queue_url,
            "Entries": [{"Id": "one", "MessageBody": "b1"}, {"Id": "two", "MessageBody": "b2"}],
        },
    )
    assert [e["Id"] for e in batch["output"]["Successful"]] == ["one", "two"], batch
    missing = await _call(awscall, env, "GetQueueUrl", {"QueueName": f"missing-{run.run_id}"})
    assert (missing["error"]["code"], missing["error"]["status"]) == (
        "AWS.SimpleQueueService.NonExistentQueue",
        400,
    ), missing
    messages = await drain_queue(amqp_url, queue)
    assert [m.body for m in messages] == [b'{"ID": "go-o-1"}', b"b1", b"b2"]
    assert messages[0].message_id == sent["output"]["MessageId"]
    assert messages[0].headers["kind"] == "order"
    assert messages[0].headers["blob"] == b"\x07"

    # SES v1 (query protocol) and SESv2 (restJson)
    await _call(
        awscall,
        env,
        "SendEmail",
        {
            "Source": "shop@example.com",
            "Destination": {"ToAddresses": ["ann@example.com"]},
            "Message": {"Subject": {"Data": "go v1"}, "Body": {"Text": {"Data": "hello from Go"}}},
        },
    )
    raw = EmailMessage()
    raw["From"], raw["To"], raw["Subject"] = "shop@example.com", "bob@example.com", "go raw"
    raw.set_content("raw from Go")
    await _call(
        awscall, env, "SendRawEmail", {"RawMessage": {"Data": base64.b64encode(raw.as_bytes()).decode()}}
    )
    v2 = await _call(
        awscall,
        env,
        "v2.SendEmail",
        {
            "FromEmailAddress": "shop@example.com",
            "Destination": {"ToAddresses": ["cid@example.com"]},
            "Content": {"Simple": {"Subject": {"Data": "go v2"}, "Body": {"Text": {"Data": "v2 from Go"}}}},
        },
    )
    assert v2["output"]["MessageId"], v2

    async def mails() -> set[str] | None:
        subjects = {str(m["Subject"]) for m in mail_sink.messages}
        return subjects if {"go v1", "go raw", "go v2"} <= subjects else None

    await run.eventually(mails, 20, "the three emails at the SMTP sink")
    delivered = {str(m["Subject"]): m for m in mail_sink.messages}
    assert delivered["go v1"].get_content().strip() == "hello from Go"

    # a wrong secret: AWS's error for each API, and nothing published
    bad = sdk_env(url, secret="wrong" + SECRET)
    count = len(mail_sink.messages)
    size = record.stat().st_size
    errors = {
        op: (await _call(awscall, bad, op, payload))["error"]
        for op, payload in {
            "PutEvents": {"Entries": [{"Source": "orders", "DetailType": "OrderProcessed", "Detail": "{}"}]},
            "SendMessage": {"QueueUrl": queue_url, "MessageBody": "bad"},
            "SendEmail": {
                "Source": "a@example.com",
                "Destination": {"ToAddresses": ["b@example.com"]},
                "Message": {"Subject": {"Data": "bad"}, "Body": {"Text": {"Data": "bad"}}},
            },
            "v2.SendEmail": {
                "FromEmailAddress": "a@example.com",
                "Destination": {"ToAddresses": ["b@example.com"]},
                "Content": {"Simple": {"Subject": {"Data": "bad"}, "Body": {"Text": {"Data": "x"}}}},
            },
        }.items()
    }
    assert {op: (e["code"], e["status"]) for op, e in errors.items()} == {
        "PutEvents": ("InvalidSignatureException", 403),
        "SendMessage": ("SignatureDoesNotMatch", 403),
        "SendEmail": ("SignatureDoesNotMatch", 403),
        "v2.SendEmail": ("InvalidSignatureException", 403),
    }
    await asyncio.sleep(1.0)
    assert await drain_queue(amqp_url, queue) == []
    assert len(mail_sink.messages) == count
    assert record.stat().st_size == size
