"""``kfaas aws-endpoints``: the parts of the EventBridge, SQS and SES APIs that migrated code calls.

An unchanged AWS SDK pointed here with its standard endpoint settings (``AWS_ENDPOINT_URL_EVENTBRIDGE``,
``AWS_ENDPOINT_URL_SQS``, ``AWS_ENDPOINT_URL_SES``, ``AWS_ENDPOINT_URL_SESV2``: one URL serves all four)
reaches kfaas's services (docs/migrating-from-aws.md, "AWS SDK calls"):

- EventBridge ``PutEvents`` (awsJson 1.1) -> CloudEvents on the broker (``_eventbridge``);
- SQS ``SendMessage``, ``SendMessageBatch``, ``GetQueueUrl`` (awsJson 1.0 and awsQuery) -> RabbitMQ queues
  with publisher confirms (``_sqs``);
- SES ``SendEmail``, ``SendRawEmail`` (awsQuery) and SESv2 ``SendEmail`` (restJson) -> the SMTP relay
  (``_ses``).

Every request must carry an AWS Signature V4 by one of the configured access keys (``_sigv4``; env
``KFAAS_AWS_ACCESS_KEY_ID`` / ``KFAAS_AWS_SECRET_ACCESS_KEY``, a Secret on Kubernetes); one that is unsigned
or wrongly signed gets AWS's error for it and nothing is published. Any other operation is answered with
the protocol's "unknown operation" error, naming it. ``GET /health/readiness`` and ``/health/liveness`` answer
200 for probes (readiness: RabbitMQ connected).

May import: the shared base, the events part and botocore (its signer); never the runtime, the broker, the
spec or pydantic (an import rule): it is a platform service standing on the external contracts of the
broker (its HTTP ingress), RabbitMQ and SMTP.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from kfaas.aws._ses import SmtpSettings
from kfaas.aws._wire import Answer, ApiError

__all__ = ["AwsEndpoints", "SmtpSettings", "configure", "credentials_from_env", "run", "serve_endpoints"]

log = logging.getLogger("kfaas.aws.endpoints")

MAX_BODY = 16 * 1024 * 1024  # a 10 MB raw email, base64 in a form body
SQS_NS = "http://queue.amazonaws.com/doc/2012-11-05/"
SES_NS = "http://ses.amazonaws.com/doc/2010-12-01/"
SQS_OPERATIONS = {"SendMessage", "SendMessageBatch", "GetQueueUrl"}
SES_OPERATIONS = {"SendEmail", "SendRawEmail"}
JSON_11 = "application/x-amz-json-1.1"
JSON_10 = "application/x-amz-json-1.0"

# AWS's error for each signature problem, per protocol family: the awsQuery services (SQS, SES) name them
# as the query protocol does, the JSON services (EventBridge, SESv2) as their JSON errors do.
_AUTH_ERRORS: dict[str, tuple[tuple[str, int], tuple[str, int]]] = {
    # kind: ((query code, status), (json type, status))
    "missing": (("MissingAuthenticationToken", 403), ("MissingAuthenticationTokenException", 403)),
    "incomplete": (("IncompleteSignature", 400), ("IncompleteSignatureException", 400)),
    "unknown-key": (("InvalidClientTokenId", 403), ("UnrecognizedClientException", 403)),
    "mismatch": (("SignatureDoesNotMatch", 403), ("InvalidSignatureException", 403)),
    "expired": (("SignatureDoesNotMatch", 403), ("InvalidSignatureException", 403)),
    "scope": (("SignatureDoesNotMatch", 403), ("InvalidSignatureException", 403)),
}


class _Request:
    """One API call as it arrived: which service and operation, in which protocol."""

    def __init__(self, service: str, protocol: str, operation: str, namespace: str = "") -> None:
        self.service = service  # the signing name: events, sqs, ses
        self.protocol = protocol  # json, query, rest
        self.operation = operation
        self.namespace = namespace


def _classify(  # noqa: PLR0911 (one answer per protocol)
    method: str, path: str, headers: Mapping[str, str], form: dict[str, str] | None
) -> _Request:
    target = headers.get("x-amz-target", "")
    if target:
        prefix, _, operation = target.partition(".")
        if prefix == "AWSEvents":
            return _Request("events", "json", operation)
        if prefix == "AmazonSQS":
            return _Request("sqs", "json", operation)
        raise ApiError(
            "UnknownOperationException", f"kfaas does not serve the API of X-Amz-Target {target!r}"
        )
    if path.startswith("/v2/email/"):
        operation = (
            "SendEmail" if (method, path.rstrip("/")) == ("POST", "/v2/email/outbound-emails") else path
        )
        return _Request("ses", "rest", operation)
    action = (form or {}).get("Action", "")
    if action in SES_OPERATIONS:
        return _Request("ses", "query", action, SES_NS)
    if action in SQS_OPERATIONS or (form is not None and path.count("/") >= 2):
        return _Request("sqs", "query", action, SQS_NS)
    if action:  # answered InvalidAction once the signature is checked, in the shape of the signed service
        if "/ses/aws4_request" in headers.get("authorization", ""):
            return _Request("ses", "query", action, SES_NS)
        return _Request("sqs", "query", action, SQS_NS)
    raise ApiError(
        "MissingAction",
        "kfaas serves EventBridge (X-Amz-Target: AWSEvents.*), SQS (AmazonSQS.* or Action=), SES (Action=) and "
        "SESv2 (/v2/email/outbound-emails); this request is none of them",
    )


class AwsEndpoints:
    """The ASGI app of the endpoints (also embedded by ``kfaas dev``); ``start`` before, ``close`` after."""

    def __init__(
        self,
        credentials: Mapping[str, str],
        *,
        broker_url: str | None,
        amqp_url: str | None,
        smtp: Any = None,
        account: str = "000000000000",
        limits: Any = None,
    ) -> None:
        from kfaas.aws._eventbridge import EventBus
        from kfaas.aws._ses import Mailer, SmtpSettings
        from kfaas.aws._sigv4 import Credentials
        from kfaas.base.inflight import InFlight

        if not credentials:
            raise ValueError("no credentials: set KFAAS_AWS_ACCESS_KEY_ID and KFAAS_AWS_SECRET_ACCESS_KEY")
        self.credentials = Credentials(dict(credentials))
        self.events = EventBus(broker_url) if broker_url else None
        self.queues: Any = None
        if amqp_url:
            from kfaas.aws._sqs import Queues

            self.queues = Queues(amqp_url)
        self.mailer = Mailer(smtp or SmtpSettings(""))
        self.account = account
        self.limits = limits
        self.in_flight = InFlight()
        self.draining = False

    async def start(self) -> None:
        if self.events is not None:
            await self.events.start()
        if self.queues is not None:
            await self.queues.start()

    async def close(self) -> None:
        if self.events is not None:
            await self.events.close()
        if self.queues is not None:
            await self.queues.close()

    async def drain(self, timeout: float) -> bool:
        self.draining = True
        return await self.in_flight.wait_idle(timeout)

    async def shutdown(self) -> None:
        await self.close()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from kfaas.base.asgi import send_answer

        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        with self.in_flight:
            what, answer = await self._handle(scope, receive)
        await send_answer(send, answer.status, answer.headers, answer.body)
        log.info(
            "%s %s -> %d",
            scope["method"],
            what,
            answer.status,
            extra={
                "operation": what,
                "status": answer.status,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    async def _handle(self, scope: Any, receive: Any) -> tuple[str, Answer]:
        from kfaas.aws import _wire
        from kfaas.aws._sigv4 import AuthError, verify
        from kfaas.base.asgi import RequestRefused, read_body

        method, path = scope["method"], scope["path"]
        raw_path = scope.get("raw_path") or path.encode()
        raw_path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else str(raw_path)
        query = (scope.get("query_string") or b"").decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = _wire.request_id()
        if method == "GET" and path in ("/health/readiness", "/health/liveness"):
            ready = path.endswith("liveness") or self._ready()
            return path, Answer(
                200 if ready else 503,
                [(b"content-type", b"application/json")],
                json.dumps({"ready": ready}).encode(),
            )
        request = _Request("", "json", "?")
        try:
            if self.limits is not None:
                self.limits.check_head(scope["headers"])
            body = await read_body(receive, MAX_BODY)
            form = None
            if "x-amz-target" not in headers and not path.startswith("/v2/email/"):
                form = _wire.parse_form(body, query) if method in ("POST", "GET") else {}
            request = _classify(method, path, headers, form)
            if (
                form is not None
                and request.service == "sqs"
                and not form.get("QueueUrl")
                and path.count("/") >= 2
            ):
                form["QueueUrl"] = path  # older clients POST to the queue's URL
            try:
                verify(
                    self.credentials,
                    method,
                    path=raw_path,
                    query=query,
                    headers=headers,
                    body=body,
                    service=request.service,
                )
            except AuthError as exc:
                (qcode, qstatus), (jtype, jstatus) = _AUTH_ERRORS[exc.kind]
                if request.protocol == "query" or request.service == "sqs":
                    raise ApiError(qcode, exc.message, status=qstatus, json_type=qcode) from None
                raise ApiError(jtype, exc.message, status=jstatus) from None
            if self.draining:
                raise ApiError("ServiceUnavailable", "the endpoints are stopping", status=503, sender=False)
            answer = await self._operation(request, headers, body, form, rid)
        except ApiError as exc:
            answer = _wire.error_answer(
                request.protocol,
                exc,
                rid,
                namespace=request.namespace or SQS_NS,
                query_compatible=request.service == "sqs",
            )
            if exc.status >= 500 or exc.code in ("SignatureDoesNotMatch", "InvalidSignatureException"):
                log.warning("%s %s: %s", request.service or "?", request.operation, exc)
        except RequestRefused as exc:
            error = ApiError("RequestRefused", str(exc), status=getattr(exc, "status", 400))
            answer = _wire.error_answer(request.protocol, error, rid, namespace=request.namespace or SQS_NS)
        except ConnectionAbortedError:
            answer = Answer(400, [], b"")
        return f"{request.service}.{request.operation}", answer

    def _ready(self) -> bool:
        connection = getattr(self.queues, "_connection", None) if self.queues is not None else None
        return self.queues is None or (connection is not None and not connection.is_closed)

    async def _operation(
        self,
        request: _Request,
        headers: Mapping[str, str],
        body: bytes,
        form: dict[str, str] | None,
        rid: str,
    ) -> Answer:
        from kfaas.aws import _wire

        if request.protocol == "query":
            assert form is not None
            if request.service == "sqs":
                return await self._sqs_query(request.operation, form, headers, rid)
            return await self._ses_query(request.operation, form, rid)
        payload = _json_body(body)
        if request.service == "events":
            if request.operation != "PutEvents":
                raise ApiError(
                    "UnknownOperationException",
                    f"kfaas serves PutEvents of EventBridge, not {request.operation}",
                )
            if self.events is None:
                raise ApiError(
                    "ServiceUnavailable",
                    "no broker is configured (KFAAS_BROKER_URL)",
                    status=503,
                    sender=False,
                )
            return _wire.json_answer(await self.events.put_events(payload), rid, JSON_11)
        if request.service == "sqs":
            result = await self._sqs(request.operation, payload, headers)
            return _wire.json_answer(result, rid, JSON_10)
        if request.operation != "SendEmail":
            raise ApiError(
                "NotFoundException",
                f"kfaas serves SESv2's SendEmail (POST /v2/email/outbound-emails), not {request.operation}",
                status=404,
            )
        return _wire.json_answer({"MessageId": await self._sesv2_send(payload)}, rid, "application/json")

    # -- SQS ------------------------------------------------------------------------------------------------
    def _queue_url(self, headers: Mapping[str, str], name: str) -> str:
        host = headers.get("host", "localhost")
        scheme = headers.get("x-forwarded-proto", "http")
        return f"{scheme}://{host}/{self.account}/{name}"

    async def _sqs(  # noqa: PLR0912 (one check per SQS rule)
        self, operation: str, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        from kfaas.aws import _sqs

        if self.queues is None:
            raise ApiError(
                "ServiceUnavailable", "no RabbitMQ is configured (AMQP_URL)", status=503, sender=False
            )
        if operation == "GetQueueUrl":
            name = payload.get("QueueName")
            if not isinstance(name, str) or not name:
                raise ApiError(
                    "MissingParameter",
                    "The request must contain the parameter QueueName.",
                    json_type="com.amazonaws.sqs#MissingParameter",
                )
            _sqs.queue_name(name)
            if not await self.queues.exists(name):
                raise self.queues._no_queue(name)
            return {"QueueUrl": self._queue_url(headers, name)}
        url = payload.get("QueueUrl")
        if not isinstance(url, str) or not url:
            raise ApiError(
                "MissingParameter",
                "The request must contain the parameter QueueUrl.",
                json_type="com.amazonaws.sqs#MissingParameter",
            )
        name = _sqs.queue_name(url)
        if operation == "SendMessage":
            return await self._send_one(name, payload)
        if operation == "SendMessageBatch":
            entries = payload.get("Entries")
            if not isinstance(entries, list) or not entries:
                raise ApiError(
                    "AWS.SimpleQueueService.EmptyBatchRequest",
                    "There should be at least one SendMessageBatchRequestEntry in the request.",
                    json_type="com.amazonaws.sqs#EmptyBatchRequest",
                )
            if len(entries) > _sqs.MAX_BATCH:
                raise ApiError(
                    "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                    f"Maximum number of entries per request are {_sqs.MAX_BATCH}. You have sent {len(entries)}.",
                    json_type="com.amazonaws.sqs#TooManyEntriesInBatchRequest",
                )
            ids = [e.get("Id") if isinstance(e, dict) else None for e in entries]
            for entry_id in ids:
                if (
                    not isinstance(entry_id, str)
                    or not entry_id
                    or len(entry_id) > 80
                    or not all(c.isalnum() or c in "-_" for c in entry_id)
                ):
                    raise ApiError(
                        "AWS.SimpleQueueService.InvalidBatchEntryId",
                        f"A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long: {entry_id!r}",
                        json_type="com.amazonaws.sqs#InvalidBatchEntryId",
                    )
            if len(set(ids)) != len(ids):
                raise ApiError(
                    "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                    "Two or more batch entries in the request have the same Id.",
                    json_type="com.amazonaws.sqs#BatchEntryIdsNotDistinct",
                )
            total = sum(len(str(e.get("MessageBody", "")).encode()) for e in entries)
            if total > _sqs.MAX_MESSAGE:
                raise ApiError(
                    "AWS.SimpleQueueService.BatchRequestTooLong",
                    f"Batch requests cannot be longer than {_sqs.MAX_MESSAGE} bytes. You have sent {total} bytes.",
                    json_type="com.amazonaws.sqs#BatchRequestTooLong",
                )
            # one after the other: the queue keeps the batch's order
            successful, failed = [], []
            for entry in entries:
                try:
                    result = await self._send_one(name, entry)
                except ApiError as exc:
                    if exc.code == "AWS.SimpleQueueService.NonExistentQueue":
                        raise  # the whole request fails, as SQS's does
                    failed.append(
                        {
                            "Id": entry["Id"],
                            "SenderFault": exc.sender,
                            "Code": exc.code,
                            "Message": exc.message,
                        }
                    )
                    continue
                successful.append({"Id": entry["Id"], **result})
            return {"Successful": successful, "Failed": failed}
        raise ApiError(
            "InvalidAction",
            f"The action {operation} is not valid for this web service: kfaas serves SendMessage, SendMessageBatch and GetQueueUrl",
            json_type="com.amazonaws.sqs#InvalidAction",
        )

    async def _send_one(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        from kfaas.aws import _sqs

        attributes = _sqs.message_attributes(payload.get("MessageAttributes"))
        body = _sqs.check_body(payload.get("MessageBody"), attributes)
        _sqs.check_delay(payload.get("DelaySeconds"))
        extra = {}
        for key, header in (
            ("MessageGroupId", "x-sqs-message-group-id"),
            ("MessageDeduplicationId", "x-sqs-message-deduplication-id"),
        ):
            value = payload.get(key)
            if isinstance(value, str) and value:
                extra[header] = value
        message_id = await self.queues.send(name, body, attributes, extra)
        result: dict[str, Any] = {"MessageId": message_id, "MD5OfMessageBody": _sqs._md5(body.encode())}
        md5 = _sqs.attributes_md5(attributes)
        if md5:
            result["MD5OfMessageAttributes"] = md5
        return result

    async def _sqs_query(
        self, operation: str, form: dict[str, str], headers: Mapping[str, str], rid: str
    ) -> Answer:
        from kfaas.aws import _wire

        def attributes(params: Mapping[str, str], prefix: str) -> dict[str, Any] | None:
            items = _wire.indexed(params, prefix)
            if not items:
                return None
            out: dict[str, Any] = {}
            for item in items:
                value: dict[str, Any] = {"DataType": item.get("Value.DataType")}
                if "Value.StringValue" in item:
                    value["StringValue"] = item["Value.StringValue"]
                if "Value.BinaryValue" in item:
                    value["BinaryValue"] = item["Value.BinaryValue"]
                out[item.get("Name", "")] = value
            return out

        def message(params: Mapping[str, str], prefix: str = "") -> dict[str, Any]:
            return {
                "MessageBody": params.get(prefix + "MessageBody"),
                "DelaySeconds": params.get(prefix + "DelaySeconds"),
                "MessageGroupId": params.get(prefix + "MessageGroupId"),
                "MessageDeduplicationId": params.get(prefix + "MessageDeduplicationId"),
                "MessageAttributes": attributes(params, prefix + "MessageAttribute"),
            }

        path_url = form.get("QueueUrl")
        if operation == "GetQueueUrl":
            result = await self._sqs(operation, {"QueueName": form.get("QueueName")}, headers)
            return _wire.xml_answer(operation, SQS_NS, result, rid)
        if operation == "SendMessage":
            result = await self._sqs(operation, {"QueueUrl": path_url, **message(form)}, headers)
            return _wire.xml_answer(operation, SQS_NS, result, rid)
        if operation == "SendMessageBatch":
            entries = []
            for item in _wire.indexed(form, "SendMessageBatchRequestEntry"):
                entries.append({"Id": item.get("Id"), **message(item)})
            result = await self._sqs(operation, {"QueueUrl": path_url, "Entries": entries}, headers)
            xml = {
                "SendMessageBatchResultEntry": result["Successful"],
                "BatchResultErrorEntry": result["Failed"],
            }
            return _wire.xml_answer(operation, SQS_NS, xml, rid)
        raise ApiError(
            "InvalidAction",
            f"The action {operation or '(none)'} is not valid for this web service: kfaas serves SendMessage, SendMessageBatch and GetQueueUrl",
        )

    # -- SES ------------------------------------------------------------------------------------------------
    async def _ses_query(self, operation: str, form: dict[str, str], rid: str) -> Answer:
        from kfaas.aws import _wire
        from kfaas.aws._ses import SimpleEmail

        if operation == "SendEmail":
            source = _wire.require(form.get("Source"), "Source")
            subject = form.get("Message.Subject.Data")
            if subject is None:
                raise ApiError(
                    "MissingParameter", "The request must contain the parameter Message.Subject.Data."
                )
            mail = SimpleEmail(
                source=source,
                to=_wire.members(form, "Destination.ToAddresses.member"),
                cc=_wire.members(form, "Destination.CcAddresses.member"),
                bcc=_wire.members(form, "Destination.BccAddresses.member"),
                reply_to=_wire.members(form, "ReplyToAddresses.member"),
                subject=subject,
                text=form.get("Message.Body.Text.Data"),
                html=form.get("Message.Body.Html.Data"),
                headers=[],
            )
            message_id = await self.mailer.send_simple(mail)
        elif operation == "SendRawEmail":
            data = _wire.require(form.get("RawMessage.Data"), "RawMessage.Data")
            raw = _b64(data, "RawMessage.Data")
            message_id = await self.mailer.send_raw(
                raw, form.get("Source"), _wire.members(form, "Destinations.member")
            )
        else:
            raise ApiError(
                "InvalidAction",
                f"The action {operation} is not valid for this web service: kfaas serves SendEmail and "
                "SendRawEmail of SES",
            )
        return _wire.xml_answer(operation, SES_NS, {"MessageId": message_id}, rid)

    async def _sesv2_send(self, payload: dict[str, Any]) -> str:
        from kfaas.aws._ses import SimpleEmail, address_list

        def bad(message: str) -> ApiError:
            return ApiError("BadRequestException", message)

        content = payload.get("Content")
        if not isinstance(content, dict):
            raise bad("Content is required: Simple or Raw")
        destination = payload.get("Destination") or {}
        if not isinstance(destination, dict):
            raise bad("Destination must be an object")
        source = payload.get("FromEmailAddress")
        if content.get("Template") is not None:
            raise bad("Content.Template is not supported by kfaas: send Simple or Raw content")
        try:
            to = address_list(destination.get("ToAddresses"), "Destination.ToAddresses")
            cc = address_list(destination.get("CcAddresses"), "Destination.CcAddresses")
            bcc = address_list(destination.get("BccAddresses"), "Destination.BccAddresses")
            reply_to = address_list(payload.get("ReplyToAddresses"), "ReplyToAddresses")
        except ApiError as exc:
            raise bad(exc.message) from None
        raw = content.get("Raw")
        if isinstance(raw, dict):
            data = raw.get("Data")
            if not isinstance(data, str) or not data:
                raise bad("Content.Raw.Data is required")
            return await _bad_request(
                self.mailer.send_raw(_b64(data, "Content.Raw.Data"), source, [*to, *cc, *bcc])
            )
        simple = content.get("Simple")
        if not isinstance(simple, dict):
            raise bad("Content needs Simple or Raw")
        if not isinstance(source, str) or not source:
            raise bad("FromEmailAddress is required for Simple content")
        subject = (simple.get("Subject") or {}).get("Data")
        if not isinstance(subject, str):
            raise bad("Content.Simple.Subject.Data is required")
        body = simple.get("Body") or {}
        text = (body.get("Text") or {}).get("Data")
        html = (body.get("Html") or {}).get("Data")
        headers = [
            (str(h.get("Name")), str(h.get("Value")))
            for h in simple.get("Headers") or []
            if isinstance(h, dict)
        ]
        mail = SimpleEmail(source, to, cc, bcc, reply_to, subject, text, html, headers)
        return await _bad_request(self.mailer.send_simple(mail))


async def _bad_request(work: Any) -> str:
    """SESv2 names its client errors BadRequestException (MessageRejected stays: it is one of SESv2's too)."""
    try:
        return str(await work)
    except ApiError as exc:
        if exc.code == "InvalidParameterValue":
            raise ApiError("BadRequestException", exc.message) from None
        raise


def _b64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("InvalidParameterValue", f"{what} is not base64") from None


def _json_body(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ApiError("SerializationException", f"the request body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError("SerializationException", "the request body must be a JSON object")
    return payload


# -- the command ---------------------------------------------------------------------------------------------
def credentials_from_env(env: Mapping[str, str]) -> dict[str, str]:
    key, secret = env.get("KFAAS_AWS_ACCESS_KEY_ID", ""), env.get("KFAAS_AWS_SECRET_ACCESS_KEY", "")
    if bool(key) != bool(secret):
        raise ValueError("set both KFAAS_AWS_ACCESS_KEY_ID and KFAAS_AWS_SECRET_ACCESS_KEY, or neither")
    return {key: secret} if key else {}


def configure(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--port", type=int, default=int(env("PORT", "8080")), help="port (env PORT)")
    parser.add_argument("--host", default=env("HOST", "0.0.0.0"), help="address (env HOST)")
    parser.add_argument(
        "--broker-url",
        default=env("KFAAS_BROKER_URL") or env("K_SINK", ""),
        help="the broker ingress of the default event bus, e.g. http://broker:8080/default (env "
        "KFAAS_BROKER_URL, else K_SINK: a SinkBinding's)",
    )
    parser.add_argument("--amqp-url", default=env("AMQP_URL", ""), help="RabbitMQ for SQS (env AMQP_URL)")
    parser.add_argument(
        "--account", default=env("KFAAS_AWS_ACCOUNT", "000000000000"), help="account id in queue URLs"
    )


def run(args: argparse.Namespace) -> int:
    from kfaas.base.asgi import Limits
    from kfaas.base.log import configure_logging
    from kfaas.base.server import PortClaim
    from kfaas.base.server import run as run_server

    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    if importlib.util.find_spec("botocore") is None:
        sys.stderr.write(
            "kfaas aws-endpoints: botocore is not installed (it checks the signatures): "
            "install kfaas[platform], as the platform image does\n"
        )
        return 2
    try:
        credentials = credentials_from_env(os.environ)
        if not credentials:
            raise ValueError("no credentials: set KFAAS_AWS_ACCESS_KEY_ID and KFAAS_AWS_SECRET_ACCESS_KEY")
        endpoints = AwsEndpoints(
            credentials,
            broker_url=args.broker_url or None,
            amqp_url=args.amqp_url or None,
            smtp=SmtpSettings.from_env(dict(os.environ)),
            account=args.account,
            limits=Limits.from_env(),
        )
    except ValueError as exc:
        sys.stderr.write(f"kfaas aws-endpoints: {exc}\n")
        return 2
    try:
        claim = PortClaim(args.host, args.port)
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return 1
    served = [
        name
        for name, on in (
            ("EventBridge", endpoints.events),
            ("SQS", endpoints.queues),
            ("SES", endpoints.mailer.settings.host),
        )
        if on
    ]
    log.info(
        "AWS endpoints on http://%s:%d: %s", args.host, args.port, ", ".join(served) or "none configured"
    )
    try:
        run_server(endpoints, args.host, args.port, drain_seconds=10.0, claim=claim)
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return 1
    return 0


async def serve_endpoints(endpoints: AwsEndpoints, host: str, port: int, claim: Any = None) -> None:
    """Serve ``endpoints`` in the running loop until cancelled (``kfaas dev``); started and closed here."""
    from kfaas.base.server import serve_embedded

    await endpoints.start()
    try:
        await serve_embedded(endpoints, host, port, claim=claim)
    finally:
        await endpoints.close()
