"""Every event kfaas builds against AWS's own readers and AWS's own samples.

Two checks per event kind:

1. it parses with Powertools for AWS Lambda: the event data class (every property read, nested ones too)
   and the parser's pydantic model (strict: types and required fields);
2. it carries the fields AWS's published samples carry (../shared/conformance/lambda-events/: aws-lambda-go,
   Powertools, SAM CLI): every key path of every sample of that kind is compared with the event's, and the
   only ones allowed to be absent are those listed in ``NOT_PRODUCED`` with the reason.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from kfaas.aws.events import (
    Account,
    ApiRequest,
    MalformedResponse,
    RouteMatch,
    api_event,
    eventbridge_event,
    http_response,
    kinesis_event,
    kinesis_record,
    match_route,
    scheduled_event,
    sqs_event,
    sqs_record,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "conformance" / "lambda-events"
ACCOUNT = Account("eu-west-1", "123456789012")

# sample file -> the event kind it is an example of
KINDS = {
    "aws-lambda-go/apigw-request.json": "rest",
    "powertools/apiGatewayProxyEvent.json": "rest",
    "sam-cli/apigateway-aws-proxy.json": "rest",
    "aws-lambda-go/apigw-v2-request-no-authorizer.json": "http",
    "powertools/apiGatewayProxyV2Event.json": "http",
    "sam-cli/apigateway-http-api-proxy.json": "http",
    "aws-lambda-go/sqs-event.json": "sqs",
    "powertools/sqsEvent.json": "sqs",
    "sam-cli/sqs-receive-message.json": "sqs",
    "powertools/eventBridgeEvent.json": "eventbridge",
    "sam-cli/cloudwatch-scheduled-event.json": "scheduled",
}

# Key paths a sample has and kfaas's event leaves out, with the reason. A path ending in ".*" covers what is
# under it. Nothing else may be missing.
NOT_PRODUCED = {
    # no authorizer runs in front of kfaas's functions (the gateway's OIDC check is not an API authorizer)
    "requestContext.authorizer.*": "no API Gateway authorizer",
    # mutual TLS is not terminated by kfaas's gateway
    "requestContext.authentication.*": "no mutual TLS client certificate",
    "requestContext.identity.clientCert.*": "no mutual TLS client certificate (the key is there, null)",
    # stage variables are a deployment feature of API Gateway with no counterpart here: payload 1.0 has the
    # key, null; payload 2.0 leaves it out, as AWS does when a stage has none
    "stageVariables": "no stage variables",
    # EventBridge archive replays
    "replay-name": "no EventBridge archive replays",
}


# Objects whose keys are data (header names, parameters, the detail of an event), not fields: compared as
# present or not, not key by key.
MAPS = {
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "pathParameters",
    "stageVariables",
    "detail",
    "Records[].messageAttributes",
    "requestContext.authorizer.jwt.claims",
}


def _paths(value: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if prefix in MAPS:
        return out
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else key
            out.add(path)
            out |= _paths(child, path)
    elif isinstance(value, list):
        for child in value:
            out |= _paths(child, f"{prefix}[]")
    return out


def _allowed(path: str) -> bool:
    return _pattern(path) is not None


def _pattern(path: str) -> str | None:
    for pattern in NOT_PRODUCED:
        if pattern.endswith(".*"):
            base = pattern[:-2]
            if path == base or path.startswith(base + ".") or path.startswith(base + "["):
                return pattern
        elif path == pattern:
            return pattern
    return None


def _samples(kind: str) -> list[tuple[str, Any]]:
    if not SAMPLES.is_dir():
        pytest.skip(f"{SAMPLES} is not there (AWS's sample events live in ../shared/conformance)")
    return [(name, json.loads((SAMPLES / name).read_text())) for name, k in KINDS.items() if k == kind]


def _walk(obj: Any, depth: int = 0) -> int:
    """Read every public property of a Powertools data class, and of the data classes it returns."""
    from aws_lambda_powertools.utilities.data_classes.common import DictWrapper

    if depth > 6:
        return 0
    read = 0
    for name in dir(type(obj)):
        if name.startswith("_") or not isinstance(getattr(type(obj), name, None), property):
            continue
        if "nested" in name:  # reads the body as another service's event (S3 or SNS through SQS)
            continue
        value = getattr(obj, name)
        read += 1
        if isinstance(value, DictWrapper):
            read += _walk(value, depth + 1)
        elif isinstance(value, list | tuple) or (
            hasattr(value, "__iter__") and not isinstance(value, str | bytes | dict)
        ):
            for item in list(value)[:5]:
                if isinstance(item, DictWrapper):
                    read += _walk(item, depth + 1)
    return read


def _request(**overrides: Any) -> ApiRequest:
    values: dict[str, Any] = {
        "method": "POST",
        "path": "/users/u%201/orders",
        "query": "a=1&a=2&b=x%20y",
        "headers": [
            ("host", "api.example.com"),
            ("user-agent", "curl/8"),
            ("content-type", "application/json"),
            ("x-multi", "1"),
            ("x-multi", "2"),
            ("cookie", "a=1; b=2"),
        ],
        "body": b'{"total": 25}',
        "source_ip": "203.0.113.7",
        "request_id": "req-1",
        "received": 1_700_000_000.25,
    }
    values.update(overrides)
    return ApiRequest(**values)


ROUTE = RouteMatch("/users/{id}/orders", {"id": "u 1"})


def _built(kind: str) -> Any:
    if kind == "rest":
        return api_event(_request(), ROUTE, api="rest", stage="prod", account=ACCOUNT, api_id="abc123")
    if kind == "http":
        return api_event(_request(), ROUTE, api="http", stage="$default", account=ACCOUNT, api_id="abc123")
    attributes = {
        "id": "e-1",
        "source": "/apis/v1/namespaces/default/rabbitmqsources/process-order-orders#orders",
        "type": "dev.knative.rabbitmq.event",
        "subject": "m-1",
        "time": "2026-04-10T09:12:03.5+00:00",
    }
    if kind == "sqs":
        record = sqs_record(attributes, b'{"ID": "o-1"}', queue="orders", account=ACCOUNT, receive_count=2)
        return sqs_event([record, {**record, "messageId": "m-2"}])
    if kind == "scheduled":
        return scheduled_event(
            {**attributes, "type": "dev.knative.sources.ping"}, rule="daily-report-nightly", account=ACCOUNT
        )
    return eventbridge_event(
        {**attributes, "type": "com.kfaas.order.processed", "source": "/kfaas/process-order"},
        b'{"orderId": "o-1"}',
        account=ACCOUNT,
    )


def _powertools(kind: str) -> tuple[Any, Any]:
    from aws_lambda_powertools.utilities.data_classes import (
        APIGatewayProxyEvent,
        APIGatewayProxyEventV2,
        EventBridgeEvent,
        SQSEvent,
    )
    from aws_lambda_powertools.utilities.parser import models

    return {
        "rest": (APIGatewayProxyEvent, models.APIGatewayProxyEventModel),
        "http": (APIGatewayProxyEventV2, models.APIGatewayProxyEventV2Model),
        "sqs": (SQSEvent, models.SqsModel),
        "eventbridge": (EventBridgeEvent, models.EventBridgeModel),
        "scheduled": (EventBridgeEvent, models.EventBridgeModel),
    }[kind]


KIND_NAMES = ["rest", "http", "sqs", "eventbridge", "scheduled"]


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_built_events_parse_with_powertools(kind: str) -> None:
    data_class, model = _powertools(kind)
    event = _built(kind)
    assert _walk(data_class(event)) >= 4
    model.model_validate(event)  # raises on a wrong type or a missing required field


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_built_events_carry_the_fields_of_awss_samples(kind: str) -> None:
    ours = _paths(_built(kind))
    compared = 0
    for name, sample in _samples(kind):
        missing = sorted(p for p in _paths(sample) if p not in ours and not _allowed(p))
        assert not missing, f"{name}: kfaas's {kind} event lacks {missing}"
        compared += len(_paths(sample))
    assert compared >= 5  # key paths compared over the samples of this kind


def test_every_field_left_out_is_one_a_sample_has() -> None:
    """NOT_PRODUCED cannot go stale: each entry excuses a field that some sample has and kfaas leaves out."""
    used: set[str] = set()
    for kind in KIND_NAMES:
        ours = _paths(_built(kind))
        for _, sample in _samples(kind):
            for path in _paths(sample) - ours:
                pattern = _pattern(path)
                if pattern is not None:
                    used.add(pattern)
    assert used == set(NOT_PRODUCED)


# SAM CLI's "Scheduled Event" template has no "version", which Powertools' EventBridgeModel requires (and
# which EventBridge sends: kfaas's scheduled event has it)
_SAMPLE_QUIRKS = {"sam-cli/cloudwatch-scheduled-event.json": "SAM CLI's template lacks 'version'"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=_SAMPLE_QUIRKS[n], strict=True))
        if n in _SAMPLE_QUIRKS
        else n
        for n in sorted(KINDS)
    ],
)
def test_the_samples_themselves_parse_with_the_same_checks(name: str) -> None:
    """The checks above are the ones AWS's samples pass (a sample that failed would make them meaningless)."""
    if not SAMPLES.is_dir():
        pytest.skip(f"{SAMPLES} is not there (AWS's sample events live in ../shared/conformance)")
    sample = json.loads((SAMPLES / name).read_text())
    _, model = _powertools(KINDS[name])
    model.model_validate(sample)


def test_rest_event_values() -> None:
    event = _built("rest")
    assert event["resource"] == "/users/{id}/orders"
    assert event["path"] == "/users/u%201/orders"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"id": "u 1"}
    assert event["queryStringParameters"] == {"a": "2", "b": "x y"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x y"]}
    assert event["headers"]["x-multi"] == "2"
    assert event["multiValueHeaders"]["x-multi"] == ["1", "2"]
    assert event["body"] == '{"total": 25}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "prod"
    assert context["requestId"] == "req-1"
    assert context["identity"]["sourceIp"] == "203.0.113.7"
    assert context["requestTimeEpoch"] == 1_700_000_000_250
    assert context["requestTime"] == "14/Nov/2023:22:13:20 +0000"


def test_http_api_event_values() -> None:
    event = _built("http")
    assert event["routeKey"] == "POST /users/{id}/orders"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["headers"]["x-multi"] == "1,2"
    assert event["cookies"] == ["a=1", "b=2"]
    assert "cookie" not in event["headers"]
    assert event["requestContext"]["http"]["method"] == "POST"


@pytest.mark.parametrize("api", ["rest", "http"])
def test_binary_bodies_are_base64(api: str) -> None:
    raw = bytes(range(256))
    request = _request(headers=[("content-type", "image/png")], body=raw)
    event = api_event(request, ROUTE, api=api, stage="s", account=ACCOUNT, api_id="a")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_sqs_and_eventbridge_values() -> None:
    record = _built("sqs")["Records"][0]
    assert record["messageId"] == "m-1"
    assert record["body"] == '{"ID": "o-1"}'
    assert record["eventSourceARN"] == "arn:aws:sqs:eu-west-1:123456789012:orders"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["attributes"]["SentTimestamp"] == "1775812323500"
    bridge = _built("eventbridge")
    assert bridge["detail-type"] == "com.kfaas.order.processed"
    assert bridge["source"] == "/kfaas/process-order"
    assert bridge["detail"] == {"orderId": "o-1"}
    assert bridge["time"] == "2026-04-10T09:12:03Z"
    assert bridge["id"] == "e-1"
    scheduled = _built("scheduled")
    assert scheduled["resources"] == ["arn:aws:events:eu-west-1:123456789012:rule/daily-report-nightly"]


def test_routes_match_as_api_gateway_matches_them() -> None:
    templates = ["/users/{id}", "/users/me", "/files/{path+}", "/"]
    assert match_route(templates, "/users/me") == RouteMatch("/users/me", {})
    assert match_route(templates, "/users/42") == RouteMatch("/users/{id}", {"id": "42"})
    assert match_route(templates, "/files/a/b%20c.txt") == RouteMatch("/files/{path+}", {"path": "a/b c.txt"})
    assert match_route(templates, "/files/") is None
    assert match_route(templates, "/users/42/x") is None
    assert match_route(templates, "/") == RouteMatch("/", {})


def test_rest_responses() -> None:
    answer = http_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-One": "1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": "created",
        },
        api="rest",
    )
    assert answer.status == 201
    assert answer.body == b"created"
    assert ("Set-Cookie", "a=1") in answer.headers
    assert ("Set-Cookie", "b=2") in answer.headers
    binary = http_response(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\xff").decode(), "isBase64Encoded": True},
        api="rest",
    )
    assert binary.body == b"\x00\xff"
    assert http_response({"statusCode": 204}, api="rest").body == b""
    for malformed in ("a string", {"body": {"not": "a string"}}, {"statusCode": 200, "extra": 1}, None):
        with pytest.raises(MalformedResponse):
            http_response(malformed, api="rest")


def test_http_api_responses_infer_a_200() -> None:
    assert http_response({"hello": "world"}, api="http").body == b'{"hello":"world"}'
    assert http_response("text", api="http").body == b"text"
    cookies = http_response({"statusCode": 200, "cookies": ["a=1"], "body": "x"}, api="http")
    assert ("set-cookie", "a=1") in cookies.headers


def test_a_bucket_source_event_becomes_the_s3_event_aws_sends() -> None:
    from aws_lambda_powertools.utilities.data_classes import S3Event
    from aws_lambda_powertools.utilities.parser import models

    from kfaas.aws.events import Account, s3_event

    data = {
        "bucket": "uploads",
        "key": "trip/beach photo+1.jpg",
        "size": 2048,
        "etag": "5d41402abc4b2a76b9719d911017c592",
        "time": "2026-12-02T01:01:58Z",
        "eventName": "s3:ObjectCreated:Put",
        "sequencer": "7",
    }
    attributes = {
        "type": "com.amazonaws.s3.ObjectCreated",
        "source": "/kfaas/buckets/uploads",
        "id": "abc123",
    }
    event = s3_event(attributes, json.dumps(data).encode(), account=Account("eu-west-1", "123456789012"))
    record = event["Records"][0]
    assert record["s3"]["object"]["key"] == "trip/beach+photo%2B1.jpg"  # URL-encoded, as AWS sends it
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["bucket"]["arn"] == "arn:aws:s3:::uploads"
    assert record["eventTime"] == "2026-12-02T01:01:58.000Z"
    parsed = S3Event(event)
    assert parsed.object_key == "trip/beach photo+1.jpg"  # Powertools decodes it back
    assert parsed.bucket_name == "uploads"
    assert parsed.record.s3.get_object.size == 2048
    assert parsed.record.s3.get_object.etag == data["etag"]
    model = models.S3Model.model_validate(event)
    assert model.Records[0].s3.object.size == 2048


def test_a_stream_record_is_a_kinesis_record_powertools_reads() -> None:
    from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent

    attributes = {
        "id": "e-7",
        "source": "/kfaas/process-order",
        "type": "com.kfaas.order.processed",
        "time": "2026-04-10T09:12:03.5+00:00",
        "streamoffset": "41",
        "streamname": "order-events",
        "partitionkey": "o-1",
    }
    event = KinesisStreamEvent(
        kinesis_event(
            [kinesis_record(attributes, b'{"orderId": "o-1"}', stream="order-events", account=ACCOUNT)]
        )
    )
    (record,) = list(event.records)
    assert record.event_source == "aws:kinesis"
    assert (
        record.event_source_arn == f"arn:aws:kinesis:{ACCOUNT.region}:{ACCOUNT.account}:stream/order-events"
    )
    assert record.kinesis.partition_key == "o-1"
    assert record.kinesis.sequence_number == "00000000000000000041"
    assert record.kinesis.data_as_json() == {"orderId": "o-1"}
    assert record.kinesis.approximate_arrival_timestamp == 1775812323.5
    assert _walk(event) > 10
