"""``kfaas aws-endpoints`` as its own process: its command-line errors, and the requests it refuses.

The refusals are AWS's: a signature made too long ago, one made for another service, an operation kfaas
does not serve, an SQS batch AWS would refuse, an event bus with no broker configured, each with the
protocol's error shape. The happy paths through every API are in test_endpoints_boto3 and _go.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from awsapi import KEY, SECRET
from lambdatest import free_port

pytestmark = pytest.mark.integration


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KFAAS_", "AWS_", "SMTP_", "AMQP_"))}
    env.update(extra)
    return env


def test_without_credentials_it_says_what_to_set() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kfaas", "aws-endpoints", "--port", str(free_port())],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "KFAAS_AWS_ACCESS_KEY_ID" in done.stderr
    half = subprocess.run(
        [sys.executable, "-m", "kfaas", "aws-endpoints", "--port", str(free_port())],
        env=_env(KFAAS_AWS_ACCESS_KEY_ID=KEY),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert half.returncode == 2
    assert "both" in half.stderr


@pytest.fixture(scope="module")
def server(amqp_url: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "kfaas", "aws-endpoints", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(KFAAS_AWS_ACCESS_KEY_ID=KEY, KFAAS_AWS_SECRET_ACCESS_KEY=SECRET, AMQP_URL=amqp_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health/readiness", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out = process.communicate()[0].decode(errors="replace")
            assert process.stdout is not None
            process.stdout.close()
            pytest.fail(f"kfaas aws-endpoints did not become ready:\n{out}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        code = process.wait(30)
        assert process.stdout is not None
        process.stdout.close()
        assert code == 0


def _signed(
    url: str,
    service: str,
    target: str | None,
    body: dict[str, Any] | str,
    *,
    when: datetime | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> httpx.Response:
    import botocore.auth
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    if when is not None:
        assert monkeypatch is not None
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when.replace(tzinfo=None))
    if isinstance(body, dict):
        data, ctype = json.dumps(body), "application/x-amz-json-1.0"
    else:
        data, ctype = body, "application/x-www-form-urlencoded; charset=utf-8"
    headers = {"Content-Type": ctype}
    if target:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=url + "/", data=data, headers=headers)
    SigV4Auth(Credentials(KEY, SECRET), service, "eu-west-1").add_auth(request)
    prepared = request.prepare()
    return httpx.post(url + "/", content=prepared.body, headers=dict(prepared.headers), timeout=10)


def test_a_signature_made_twenty_minutes_ago_has_expired(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = _signed(
        server,
        "sqs",
        "AmazonSQS.GetQueueUrl",
        {"QueueName": "x"},
        when=datetime.now(UTC) - timedelta(minutes=20),
        monkeypatch=monkeypatch,
    )
    assert answer.status_code == 403
    assert answer.headers["x-amzn-query-error"] == "SignatureDoesNotMatch;Sender"
    assert "Signature expired" in answer.json()["message"]


def test_a_signature_for_another_service_is_refused(server: str) -> None:
    answer = _signed(server, "ses", "AmazonSQS.GetQueueUrl", {"QueueName": "x"})
    assert answer.status_code == 403
    assert "scoped to correct service: 'sqs'" in answer.json()["message"]
    events = _signed(server, "sqs", "AWSEvents.PutEvents", {"Entries": []})
    assert events.status_code == 403
    assert events.json()["__type"] == "InvalidSignatureException"


def test_operations_kfaas_does_not_serve_are_named(server: str) -> None:
    sqs = _signed(server, "sqs", "AmazonSQS.DeleteQueue", {"QueueUrl": "http://x/000000000000/q"})
    assert sqs.status_code == 400
    assert sqs.headers["x-amzn-query-error"] == "InvalidAction;Sender"
    assert "DeleteQueue" in sqs.json()["message"]
    events = _signed(server, "events", "AWSEvents.PutRule", {"Name": "r"})
    assert events.status_code == 400
    assert events.json()["__type"] == "UnknownOperationException"
    ses = _signed(server, "ses", None, "Action=ListIdentities&Version=2010-12-01")
    assert ses.status_code == 400
    assert "<Code>InvalidAction</Code>" in ses.text


def test_sqs_batches_aws_would_refuse(server: str) -> None:
    url = "http://127.0.0.1/000000000000/whatever"
    twice = _signed(
        server,
        "sqs",
        "AmazonSQS.SendMessageBatch",
        {"QueueUrl": url, "Entries": [{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}]},
    )
    assert twice.status_code == 400
    assert twice.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct;Sender"
    many = _signed(
        server,
        "sqs",
        "AmazonSQS.SendMessageBatch",
        {"QueueUrl": url, "Entries": [{"Id": f"e{i}", "MessageBody": "x"} for i in range(11)]},
    )
    assert many.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest;Sender"
    empty = _signed(server, "sqs", "AmazonSQS.SendMessage", {"QueueUrl": url, "MessageBody": ""})
    assert empty.headers["x-amzn-query-error"] == "MissingParameter;Sender"


def test_put_events_without_a_broker_is_unavailable_and_says_why(server: str) -> None:
    entry = {"Source": "s", "DetailType": "t", "Detail": "{}"}
    answer = _signed(server, "events", "AWSEvents.PutEvents", {"Entries": [entry]})
    assert answer.status_code == 503
    assert "KFAAS_BROKER_URL" in answer.json()["message"]
