"""The events AWS Lambda hands a handler, built from what kfaas receives, and the answers read back.

Pure functions over plain data: no I/O, no framework. The shapes are AWS's (the documented event formats and
AWS's published sample events, which the tests compare field by field and parse with Powertools' event data
classes):

- an HTTP request on a route → an API Gateway REST proxy event (payload 1.0) or an HTTP API event (2.0);
  the handler's answer → the HTTP response, as API Gateway reads it (:func:`http_response`);
- a queue source's event → an SQS record (:func:`sqs_record`), several of them → one SQS event;
- a ping source's event → an EventBridge "Scheduled Event"; a bucket source's event → an S3 event
  notification (:func:`s3_event`, one record, the key URL-encoded as AWS sends it); any other broker event →
  an EventBridge event (``detail-type``, ``source``, ``detail``, ``time``, ``id`` from the CloudEvent).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote

__all__ = [
    "S3_TYPES",
    "ApiRequest",
    "HttpAnswer",
    "RouteMatch",
    "api_event",
    "eventbridge_event",
    "http_response",
    "is_text",
    "kinesis_event",
    "kinesis_record",
    "match_route",
    "s3_event",
    "scheduled_event",
    "sqs_event",
    "sqs_record",
]

# Content types whose bodies API Gateway hands over as text; everything else is base64 (isBase64Encoded)
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml")
_TEXT_EXACT = ("application/x-www-form-urlencoded", "application/graphql", "application/x-ndjson")
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Account:
    """Where a function lives, for the ARNs and ids in events and contexts."""

    region: str = "us-east-1"
    account: str = "000000000000"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request as the runtime received it (ASGI: names lower-cased, the raw query string)."""

    method: str
    path: str
    query: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    received: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RouteMatch:
    template: str
    parameters: dict[str, str]


def match_route(templates: Sequence[str], path: str) -> RouteMatch | None:
    """The route template ``path`` matches (``/users/{id}``; a last ``{name+}`` takes the rest), most literal
    segments first, with the path parameters decoded as API Gateway decodes them."""
    parts = path.strip("/").split("/") if path.strip("/") else []
    best: tuple[int, RouteMatch] | None = None
    for template in templates:
        found = _match(template, parts)
        if found is not None and (best is None or found[0] > best[0]):
            best = (found[0], RouteMatch(template, found[1]))
    return best[1] if best else None


def _match(template: str, parts: list[str]) -> tuple[int, dict[str, str]] | None:  # noqa: PLR0911 - one exit per way a segment misses
    segments = template.strip("/").split("/") if template.strip("/") else []
    params: dict[str, str] = {}
    literal = 0
    for i, segment in enumerate(segments):
        m = _PARAM.match(segment)
        if m and m.group(2):  # greedy, and last: the rest of the path, at least one segment
            if i != len(segments) - 1 or i >= len(parts):
                return None
            params[m.group(1)] = unquote("/".join(parts[i:]))
            return literal, params
        if i >= len(parts):
            return None
        if m:
            if not parts[i]:
                return None
            params[m.group(1)] = unquote(parts[i])
        elif segment != parts[i]:
            return None
        else:
            literal += 1
    if len(parts) != len(segments):
        return None
    return literal, params


def is_text(content_type: str | None) -> bool:
    """Whether API Gateway would hand this body over as text (else base64-encoded)."""
    if not content_type:
        return True
    kind = content_type.split(";")[0].strip().lower()
    return kind.startswith(_TEXT_TYPES) or kind.endswith(_TEXT_SUFFIXES) or kind in _TEXT_EXACT


def _body(request: ApiRequest) -> tuple[str | None, bool]:
    if not request.body:
        return None, False
    content_type = next((v for k, v in request.headers if k == "content-type"), None)
    if is_text(content_type):
        try:
            return request.body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(request.body).decode("ascii"), True


def _clf_time(at: float) -> str:
    """API Gateway's requestTime: ``04/Mar/2020:19:15:17 +0000``."""
    t = datetime.fromtimestamp(at, UTC)
    return f"{t.day:02d}/{_MONTHS[t.month - 1]}/{t.year}:{t:%H:%M:%S} +0000"


def _headers(request: ApiRequest) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in request.headers:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _query(request: ApiRequest) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    pairs = parse_qsl(request.query, keep_blank_values=True)
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def api_event(
    request: ApiRequest,
    route: RouteMatch,
    *,
    api: str,
    stage: str,
    account: Account,
    api_id: str,
) -> dict[str, Any]:
    """The API Gateway event of ``request`` on ``route``: ``api`` is ``rest`` (payload 1.0) or ``http`` (2.0)."""
    body, encoded = _body(request)
    host = next((v for k, v in request.headers if k == "host"), "localhost")
    agent = next((v for k, v in request.headers if k == "user-agent"), None)
    epoch_ms = int(request.received * 1000)
    path_parameters = dict(route.parameters) or None
    domain_prefix = host.split(".")[0].split(":")[0]
    if api == "http":
        return _http_api_event(
            request,
            route=route,
            body=body,
            encoded=encoded,
            host=host,
            agent=agent,
            epoch_ms=epoch_ms,
            path_parameters=path_parameters,
            stage=stage,
            account=account,
            api_id=api_id,
        )
    single, multi = _headers(request)
    query, multi_query = _query(request)
    return {
        "version": "1.0",
        "resource": route.template,
        "path": request.path,
        "httpMethod": request.method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "accountId": account.account,
            "apiId": api_id,
            "domainName": host,
            "domainPrefix": domain_prefix,
            "extendedRequestId": request.request_id,
            "httpMethod": request.method,
            "identity": {
                "accessKey": None,
                "accountId": None,
                "apiKey": None,
                "apiKeyId": None,
                "caller": None,
                "clientCert": None,
                "cognitoAuthenticationProvider": None,
                "cognitoAuthenticationType": None,
                "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None,
                "principalOrgId": None,
                "sourceIp": request.source_ip,
                "user": None,
                "userAgent": agent,
                "userArn": None,
            },
            "path": request.path,
            "protocol": "HTTP/1.1",
            "requestId": request.request_id,
            "requestTime": _clf_time(request.received),
            "requestTimeEpoch": epoch_ms,
            "resourceId": None,
            "resourcePath": route.template,
            "stage": stage,
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


def _http_api_event(
    request: ApiRequest,
    *,
    route: RouteMatch,
    body: str | None,
    encoded: bool,
    host: str,
    agent: str | None,
    epoch_ms: int,
    path_parameters: dict[str, str] | None,
    stage: str,
    account: Account,
    api_id: str,
) -> dict[str, Any]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        if name == "cookie":  # payload 2.0: cookies apart, one entry per cookie
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(request.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    route_key = f"{request.method} {route.template}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": account.account,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": host.split(".", maxsplit=1)[0].split(":", maxsplit=1)[0],
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": "HTTP/1.1",
            "sourceIp": request.source_ip,
            "userAgent": agent or "",
        },
        "requestId": request.request_id,
        "routeKey": route_key,
        "stage": stage,
        "time": _clf_time(request.received),
        "timeEpoch": epoch_ms,
    }
    if body is not None:
        event["body"] = body
    if path_parameters:
        event["pathParameters"] = path_parameters
    event["isBase64Encoded"] = encoded
    return event


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class MalformedResponse(ValueError):
    """The handler's answer is not a proxy response API Gateway accepts (REST answers 502)."""


def _json_body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def http_response(result: Any, *, api: str) -> HttpAnswer:
    """The HTTP response API Gateway makes of a handler's answer.

    REST (payload 1.0): a ``{statusCode, headers, multiValueHeaders, body, isBase64Encoded}`` object; anything
    else is a malformed proxy response (raises :class:`MalformedResponse`: API Gateway answers 502).
    HTTP API (2.0): that object (with ``cookies``), or any other value, which becomes a 200 with the value as
    JSON (a string as it is) and ``content-type: application/json``.
    """
    if api == "http" and not (isinstance(result, dict) and "statusCode" in result):
        if isinstance(result, str):
            return HttpAnswer(200, [("content-type", "application/json")], result.encode())
        return HttpAnswer(200, [("content-type", "application/json")], _json_body(result))
    if not isinstance(result, dict):
        raise MalformedResponse(f"the handler returned {type(result).__name__}, not a proxy response object")
    allowed = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded", "cookies"}
    unknown = set(result) - allowed
    if api == "rest" and unknown:
        raise MalformedResponse(f"a proxy response has no field(s) {', '.join(sorted(unknown))}")
    status = result.get("statusCode", 200)
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode {status!r} is not an HTTP status")
    headers = _response_headers(result)
    raw = _response_body(result, api)
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("content-type", "application/json"))
    return HttpAnswer(status, headers, raw)


def _response_headers(result: dict[str, Any]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, Mapping) or not isinstance(multi, Mapping):
        raise MalformedResponse("headers and multiValueHeaders must be objects")
    for name, value in single.items():
        if name not in multi:
            headers.append((str(name), _header_value(value)))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedResponse(f"multiValueHeaders.{name} must be a list")
        headers.extend((str(name), _header_value(v)) for v in values)
        if name in single and single[name] not in values:
            headers.append((str(name), _header_value(single[name])))
    for cookie in result.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    return headers


def _response_body(result: dict[str, Any], api: str) -> bytes:
    body = result.get("body")
    if body is None:
        return b""
    if isinstance(body, str):
        if result.get("isBase64Encoded"):
            try:
                return base64.b64decode(body, validate=True)
            except ValueError as exc:
                raise MalformedResponse(
                    f"isBase64Encoded is true but the body is not base64: {exc}"
                ) from None
        else:
            return body.encode()
    elif api == "http":
        return _json_body(body)
    else:
        raise MalformedResponse(f"body must be a string, got {type(body).__name__}")


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).replace("\r", " ").replace("\n", " ")


# --- events of the broker ------------------------------------------------------------------------------------


def _iso_z(value: str | None) -> str:
    """A CloudEvent time as EventBridge writes times (UTC, seconds, ``Z``)."""
    if not value:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch_ms(value: str | None) -> str:
    if not value:
        return str(int(time.time() * 1000))
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return str(int(stamp.timestamp() * 1000))


def _data_text(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes | bytearray):
        return bytes(data).decode("utf-8", errors="replace")
    if isinstance(data, str):
        return data
    return json.dumps(data, separators=(",", ":"))


def _data_json(data: Any) -> Any:
    """A CloudEvent's data as a JSON value: parsed when it is JSON text, else the text itself."""
    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode("utf-8", errors="replace")
    if isinstance(data, str):
        try:
            return json.loads(data)
        except ValueError:
            return data
    return data


def sqs_record(
    attributes: Mapping[str, Any],
    data: Any,
    *,
    queue: str,
    account: Account,
    receive_count: int = 1,
    first_received: float | None = None,
) -> dict[str, Any]:
    """One SQS record from a queue source's event (RabbitmqSource: the message body is the data)."""
    body = _data_text(data)
    message_id = str(attributes.get("subject") or attributes["id"])
    sent = _epoch_ms(attributes.get("time"))
    return {
        "messageId": message_id,
        "receiptHandle": base64.b64encode(f"{queue}/{attributes['id']}".encode()).decode("ascii"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": sent,
            "SenderId": str(attributes.get("source", "")),
            "ApproximateFirstReceiveTimestamp": str(int((first_received or time.time()) * 1000)),
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "md5OfMessageAttributes": None,
        "eventSource": "aws:sqs",
        "eventSourceARN": account.arn("sqs", queue),
        "awsRegion": account.region,
    }


def kinesis_record(
    attributes: Mapping[str, Any], data: Any, *, stream: str, account: Account
) -> dict[str, Any]:
    """One Kinesis record from a stream source's record (kfaas.broker: ``streamoffset``, ``partitionkey``).

    The offset is the sequence number (zero-padded, so sequence numbers compare as text as they do on AWS);
    the data is the record's data, base64 as Kinesis delivers it; the one shard is ``shardId-000000000000``.
    """
    if isinstance(data, bytes | bytearray):
        raw = bytes(data)
    elif data is None:
        raw = b""
    else:
        raw = _data_text(data).encode()
    sequence = f"{int(attributes.get('streamoffset', 0)):020d}"
    arrived = int(_epoch_ms(attributes.get("time"))) / 1000
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": str(
                attributes.get("partitionkey") or attributes.get("subject") or attributes["id"]
            ),
            "sequenceNumber": sequence,
            "data": base64.b64encode(raw).decode("ascii"),
            "approximateArrivalTimestamp": arrived,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000000:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{account.account}:role/kfaas",
        "awsRegion": account.region,
        "eventSourceARN": account.arn("kinesis", f"stream/{stream}"),
    }


def kinesis_event(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}


def sqs_event(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}


def scheduled_event(attributes: Mapping[str, Any], *, rule: str, account: Account) -> dict[str, Any]:
    """EventBridge's "Scheduled Event" for a ping source's event (the rule named after the source)."""
    return {
        "version": "0",
        "id": str(attributes["id"]),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account.account,
        "time": _iso_z(attributes.get("time")),
        "region": account.region,
        "resources": [account.arn("events", f"rule/{rule}")],
        "detail": {},
    }


def eventbridge_event(attributes: Mapping[str, Any], data: Any, *, account: Account) -> dict[str, Any]:
    """An EventBridge event for a broker event: ``detail-type`` = type, ``source``, ``detail`` = data."""
    detail = _data_json(data)
    subject = attributes.get("subject")
    return {
        "version": "0",
        "id": str(attributes["id"]),
        "detail-type": str(attributes["type"]),
        "source": str(attributes["source"]),
        "account": account.account,
        "time": _iso_z(attributes.get("time")),
        "region": account.region,
        "resources": [str(subject)] if subject else [],
        "detail": detail if detail is not None else {},
    }


S3_TYPES = ("com.amazonaws.s3.ObjectCreated", "com.amazonaws.s3.ObjectRemoved")


def s3_event(attributes: Mapping[str, Any], data: Any, *, account: Account) -> dict[str, Any]:
    """The S3 event notification AWS hands a Lambda function, for one event of a bucket source.

    The record is rebuilt from the event's data (bucket, key, size, etag, eventName, time, versionId,
    sequencer), in AWS's format whatever the store sent: the key URL-encoded (spaces as ``+``), the bucket ARN
    well-formed, ``eventName`` without the ``s3:`` prefix.
    """
    detail = _data_json(data)
    if not isinstance(detail, dict):
        detail = {}
    bucket = str(detail.get("bucket") or attributes.get("bucket") or "")
    key = str(detail.get("key") or attributes.get("subject") or "")
    created = str(attributes.get("type")) == S3_TYPES[0]
    name = str(detail.get("eventName") or ("ObjectCreated:Put" if created else "ObjectRemoved:Delete"))
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "sequencer": str(detail.get("sequencer") or "0")}
    if created:
        obj["size"] = int(detail.get("size") or 0)
    if detail.get("etag"):
        obj["eTag"] = str(detail["etag"])
    if detail.get("versionId"):
        obj["versionId"] = str(detail["versionId"])
    stamp = _iso_z(str(detail.get("time") or attributes.get("time") or "") or None)
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": str(detail.get("region") or account.region),
        "eventTime": stamp.replace("Z", ".000Z"),
        "eventName": name.removeprefix("s3:"),
        "userIdentity": {"principalId": account.account},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {
            "x-amz-request-id": str(attributes["id"])[:16],
            "x-amz-id-2": str(attributes["id"]),
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "kfaas",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": account.account},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }
    return {"Records": [record]}
