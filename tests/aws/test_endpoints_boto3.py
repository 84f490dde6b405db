"""boto3, unchanged, against ``kfaas aws-endpoints`` in a real ``kfaas dev`` run.

EventBridge PutEvents reaches a trigger's function (a Python Lambda handler recording its events), SQS messages
reach the RabbitMQ queue (JSON protocol, and the query protocol older SDKs use), SES and SESv2 emails reach the
SMTP sink. A request signed with a wrong secret, by an unknown key, or not signed at all gets AWS's error and
publishes nothing. A Lambda handler's own boto3 clients reach the same services with what kfaas sets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from awsapi import KEY, SECRET, aws_dev, declare_queue, drain_queue, watched
from lambdatest import LambdaDev

pytestmark = pytest.mark.integration


def _client(service: str, url: str, key: str = KEY, secret: str = SECRET, signed: bool = True) -> Any:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(retries={"max_attempts": 1}, **({} if signed else {"signature_version": UNSIGNED}))
    return boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, region_name="eu-west-1"
    ).client(service, endpoint_url=url, config=config)


def _error(call: Callable[[], Any]) -> tuple[str, int]:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        call()
    error = info.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]


async def test_boto3_reaches_the_broker_rabbitmq_and_smtp(
    lambda_dev: Callable[[Path], LambdaDev], mail_sink: Any, amqp_url: str, tmp_path: Path
) -> None:
    import asyncio

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    (tmp_path / "empty").mkdir()
    run = lambda_dev(tmp_path / "empty")
    record = tmp_path / "watched.jsonl"
    url, port = aws_dev(run, mail_sink, record)
    queue = f"sdk-{run.run_id}"
    run.queues = [queue, run.extra_env["CALLER_QUEUE"]]
    for name in run.queues:
        await declare_queue(amqp_url, name)
    await run.start("--aws-port", port)
    assert run.count("aws", "ready: EventBridge, SQS, SES") == 1
    loop = asyncio.get_running_loop()

    # -- EventBridge: two good entries and two bad ones, answered entry by entry --------------------------------
    events = _client("events", url)
    answer = await loop.run_in_executor(
        None,
        lambda: events.put_events(
            Entries=[
                {
                    "Source": "orders",
                    "DetailType": "OrderProcessed",
                    "Detail": json.dumps({"orderId": "b-1"}),
                    "Resources": ["arn:aws:sqs:eu-west-1:000000000000:orders"],
                },
                {"Source": "orders", "DetailType": "OrderProcessed", "Detail": "not json"},
                {
                    "Source": "orders",
                    "DetailType": "OrderProcessed",
                    "Detail": json.dumps({"orderId": "b-2"}),
                    "EventBusName": "default",
                },
                {"Source": "orders", "DetailType": "OrderProcessed", "Detail": "{}", "EventBusName": "nobus"},
            ]
        ),
    )
    assert answer["FailedEntryCount"] == 2, answer
    entries = answer["Entries"]
    assert "EventId" in entries[0]
    assert "EventId" in entries[2]
    assert entries[1]["ErrorCode"] == "MalformedDetail"
    assert entries[3]["ErrorCode"] == "ResourceNotFoundException"

    async def both() -> list[dict[str, Any]] | None:
        seen = [e for e in watched(record) if e["source"] == "orders"]
        return seen if len(seen) == 2 else None

    eleven = [{"Source": "orders", "DetailType": "OrderProcessed", "Detail": "{}"}] * 11
    assert _error(lambda: events.put_events(Entries=eleven)) == ("ValidationException", 400)
    seen = await run.eventually(both, 60, "the two events at the trigger's function")
    by_order = {e["detail"]["orderId"]: e for e in seen}
    assert set(by_order) == {"b-1", "b-2"}
    assert by_order["b-1"]["detail-type"] == "OrderProcessed"
    assert by_order["b-1"]["id"] == entries[0]["EventId"]
    assert by_order["b-1"]["resources"] == ["arn:aws:sqs:eu-west-1:000000000000:orders"]

    # -- SQS (JSON protocol): the queue URL, one message with attributes, a batch ----------------------------------
    sqs = _client("sqs", url)
    queue_url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    assert queue_url == f"{url}/000000000000/{queue}"
    assert _error(lambda: sqs.get_queue_url(QueueName=f"missing-{run.run_id}")) == (
        "AWS.SimpleQueueService.NonExistentQueue",
        400,
    )
    sent = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody='{"ID": "o-1"}',
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "order"},
            "count": {"DataType": "Number", "StringValue": "3"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    assert sent["MD5OfMessageAttributes"]  # boto3 computed nothing: kfaas did, as SQS does
    batch = sqs.send_message_batch(
        QueueUrl=queue_url, Entries=[{"Id": "a", "MessageBody": "two"}, {"Id": "b", "MessageBody": "three"}]
    )
    assert [e["Id"] for e in batch["Successful"]] == ["a", "b"]
    assert not batch.get("Failed")
    assert _error(
        lambda: sqs.send_message(QueueUrl=f"{url}/000000000000/missing-{run.run_id}", MessageBody="x")
    ) == ("AWS.SimpleQueueService.NonExistentQueue", 400)
    assert _error(lambda: sqs.send_message(QueueUrl=queue_url, MessageBody="x", DelaySeconds=5))[0] == (
        "InvalidParameterValue"
    )

    # -- SQS (query protocol, as older SDKs send it), signed by botocore's signer ----------------------------------
    import httpx

    form = {
        "Action": "SendMessage",
        "Version": "2012-11-05",
        "QueueUrl": queue_url,
        "MessageBody": "four",
        "MessageAttribute.1.Name": "via",
        "MessageAttribute.1.Value.DataType": "String",
        "MessageAttribute.1.Value.StringValue": "query",
    }
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(KEY, SECRET), "sqs", "eu-west-1").add_auth(request)
    prepared = request.prepare()
    async with httpx.AsyncClient(trust_env=False) as http:
        reply = await http.post(url + "/", content=prepared.body, headers=dict(prepared.headers))
    assert reply.status_code == 200, reply.text
    assert "<SendMessageResponse" in reply.text
    assert "<MessageId>" in reply.text

    messages = await drain_queue(amqp_url, queue)
    assert [m.body for m in messages] == [b'{"ID": "o-1"}', b"two", b"three", b"four"]
    first = messages[0]
    assert first.message_id == sent["MessageId"]
    assert first.headers["kind"] == "order"
    assert first.headers["count"] == "3"
    assert first.headers["blob"] == b"\x00\x01"
    assert json.loads(first.headers["x-sqs-data-types"]) == {
        "kind": "String",
        "count": "Number",
        "blob": "Binary",
    }
    assert messages[3].headers["via"] == "query"

    # -- SES v1 and SESv2 -----------------------------------------------------------------------------------------
    ses = _client("ses", url)
    ses.send_email(
        Source="shop@example.com",
        Destination={"ToAddresses": ["ann@example.com"], "BccAddresses": ["audit@example.com"]},
        Message={
            "Subject": {"Data": "v1 simple"},
            "Body": {"Text": {"Data": "hello"}, "Html": {"Data": "<b>hello</b>"}},
        },
    )
    raw = EmailMessage()
    raw["From"], raw["To"], raw["Subject"] = "shop@example.com", "bob@example.com", "v1 raw"
    raw.set_content("raw body")
    ses.send_raw_email(RawMessage={"Data": raw.as_bytes()})
    sesv2 = _client("sesv2", url)
    v2 = sesv2.send_email(
        FromEmailAddress="shop@example.com",
        Destination={"ToAddresses": ["cid@example.com"]},
        Content={"Simple": {"Subject": {"Data": "v2 simple"}, "Body": {"Text": {"Data": "v2 body"}}}},
    )
    assert v2["MessageId"]
    sesv2.send_email(Content={"Raw": {"Data": raw.as_bytes().replace(b"v1 raw", b"v2 raw")}})
    assert _error(
        lambda: ses.send_email(
            Source="shop@example.com",
            Destination={"ToAddresses": ["not-an-address"]},
            Message={"Subject": {"Data": "x"}, "Body": {"Text": {"Data": "x"}}},
        )
    )[0] == ("InvalidParameterValue")

    def mails() -> dict[str, EmailMessage]:
        return {str(m["Subject"]): m for m in mail_sink.messages}

    async def four() -> dict[str, EmailMessage] | None:
        return mails() if len(mails()) >= 4 else None

    got = await run.eventually(four, 20, "the four emails at the SMTP sink")
    assert set(got) == {"v1 simple", "v1 raw", "v2 simple", "v2 raw"}, set(got)
    assert got["v1 simple"]["To"] == "ann@example.com"
    assert "Bcc" not in got["v1 simple"]
    assert got["v1 simple"].get_body(("html",)).get_content().strip() == "<b>hello</b>"
    assert str(got["v2 simple"]["Message-ID"]).strip().startswith(f"<{v2['MessageId']}@")

    # -- bad signatures publish nothing -----------------------------------------------------------------------
    mail_count = len(mail_sink.messages)
    record_size = record.stat().st_size
    wrong = {s: _client(s, url, secret="wrong" + SECRET) for s in ("events", "sqs", "ses", "sesv2")}
    unknown = _client("sqs", url, key="AKIAUNKNOWN000000000")
    unsigned = {s: _client(s, url, signed=False) for s in ("events", "sqs", "ses")}
    entry = {"Source": "orders", "DetailType": "OrderProcessed", "Detail": json.dumps({"orderId": "bad"})}
    assert _error(lambda: wrong["events"].put_events(Entries=[entry])) == ("InvalidSignatureException", 403)
    assert _error(lambda: wrong["sqs"].send_message(QueueUrl=queue_url, MessageBody="bad")) == (
        "SignatureDoesNotMatch",
        403,
    )
    assert _error(
        lambda: wrong["ses"].send_email(
            Source="a@example.com",
            Destination={"ToAddresses": ["b@example.com"]},
            Message={"Subject": {"Data": "bad"}, "Body": {"Text": {"Data": "x"}}},
        )
    ) == ("SignatureDoesNotMatch", 403)
    assert _error(
        lambda: wrong["sesv2"].send_email(
            FromEmailAddress="a@example.com",
            Destination={"ToAddresses": ["b@example.com"]},
            Content={"Simple": {"Subject": {"Data": "bad"}, "Body": {"Text": {"Data": "x"}}}},
        )
    ) == ("InvalidSignatureException", 403)
    assert _error(lambda: unknown.send_message(QueueUrl=queue_url, MessageBody="bad")) == (
        "InvalidClientTokenId",
        403,
    )
    assert _error(lambda: unsigned["events"].put_events(Entries=[entry])) == (
        "MissingAuthenticationTokenException",
        403,
    )
    assert _error(lambda: unsigned["sqs"].send_message(QueueUrl=queue_url, MessageBody="bad")) == (
        "MissingAuthenticationToken",
        403,
    )
    assert _error(lambda: unsigned["ses"].send_raw_email(RawMessage={"Data": raw.as_bytes()})) == (
        "MissingAuthenticationToken",
        403,
    )
    # a body changed after signing: the signature covers it
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=dict(form, MessageBody="signed"),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(KEY, SECRET), "sqs", "eu-west-1").add_auth(request)
    prepared = request.prepare()
    body = prepared.body if isinstance(prepared.body, bytes) else str(prepared.body).encode()
    tampered = body.replace(b"signed", b"sneaky")
    headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    async with httpx.AsyncClient(trust_env=False) as http:
        reply = await http.post(url + "/", content=tampered, headers=headers)
    assert reply.status_code == 403, reply.text
    assert "<Code>SignatureDoesNotMatch</Code>" in reply.text
    await asyncio.sleep(1.0)  # what a publish would have taken, with room
    assert await drain_queue(amqp_url, queue) == []
    assert len(mail_sink.messages) == mail_count
    assert record.stat().st_size == record_size

    # -- a Lambda handler's own boto3, with only what kfaas set --------------------------------------------------
    async with httpx.AsyncClient(trust_env=False) as http:
        reply = await http.post(
            f"http://127.0.0.1:{run.broker_port}/default",
            headers={
                "ce-specversion": "1.0",
                "ce-id": "call-1",
                "ce-source": "test",
                "ce-type": "CallAws",
                "content-type": "application/json",
            },
            content=json.dumps({"orderId": "from-lambda"}),
        )
    assert reply.status_code == 202, reply.text

    async def from_lambda() -> list[dict[str, Any]] | None:
        seen = [e for e in watched(record) if e["source"] == "caller"]
        return seen or None

    seen = await run.eventually(from_lambda, 60, "the caller's PutEvents at the watcher")
    assert seen[0]["detail"] == {"orderId": "from-lambda"}

    async def lambda_mail() -> bool:  # the handler's last call: after its event and its message
        return "order from-lambda" in {str(m["Subject"]) for m in mail_sink.messages}

    await run.eventually(lambda_mail, 30, "the caller's SES email at the SMTP sink")
    caller_messages = await drain_queue(amqp_url, run.extra_env["CALLER_QUEUE"])
    assert [json.loads(m.body) for m in caller_messages] == [{"orderId": "from-lambda"}]
