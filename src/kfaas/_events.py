"""Reading CloudEvents from HTTP requests: binary, structured and batch mode, through the cloudevents SDK.

Shared by the function runtime and the dev broker's ingress, so both refuse the same requests with the same
messages.
"""

from __future__ import annotations

import json
from typing import Any

from kfaas._context import InvalidEvent

__all__ = ["BATCH", "STRUCTURED", "parse_events", "read_body"]

BATCH = "application/cloudevents-batch+json"
STRUCTURED = "application/cloudevents"
_REQUIRED = ("id", "source", "specversion", "type")
_SPECVERSIONS = ("1.0", "0.3")


def _check_attributes(attrs: Any, where: str) -> None:
    if not isinstance(attrs, dict):
        raise InvalidEvent(f"{where}: expected a JSON object, got {type(attrs).__name__}")
    missing = [name for name in _REQUIRED if not attrs.get(name)]
    if missing:
        raise InvalidEvent(f"{where}: missing required attribute(s): {', '.join(missing)}")
    if attrs["specversion"] not in _SPECVERSIONS:
        raise InvalidEvent(
            f"{where}: unknown specversion {attrs['specversion']!r} (supported: {', '.join(_SPECVERSIONS)})"
        )


def parse_events(headers: dict[str, str], body: bytes) -> list[Any]:
    """CloudEvents from an HTTP request in binary, structured or batch mode, through the cloudevents SDK.

    The SDK fills in a random ``id`` when one is missing, so required attributes are checked first: a
    request without them is refused rather than given an identity it never had.
    """
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http

    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if content_type == BATCH:
            try:
                items = json.loads(body)
            except ValueError as exc:
                raise InvalidEvent(f"batch body is not valid JSON: {exc}") from None
            if not isinstance(items, list):
                raise InvalidEvent("batch body must be a JSON array of structured CloudEvents")
            events = []
            for i, item in enumerate(items):
                _check_attributes(item, f"batch[{i}]")
                events.append(
                    from_http({"content-type": "application/cloudevents+json"}, json.dumps(item).encode())
                )
            return events
        if content_type.startswith(STRUCTURED):
            try:
                raw = json.loads(body)
            except ValueError as exc:
                raise InvalidEvent(f"structured CloudEvent is not valid JSON: {exc}") from None
            _check_attributes(raw, "structured CloudEvent")
            return [from_http(headers, body)]
        if "ce-specversion" not in headers:
            raise InvalidEvent(
                f"not a CloudEvent: no ce-specversion header and content type {content_type or '(none)'!r} "
                "is neither application/cloudevents+json nor application/cloudevents-batch+json"
            )
        missing = [f"ce-{name}" for name in _REQUIRED if not headers.get(f"ce-{name}")]
        if missing:
            raise InvalidEvent(f"binary CloudEvent: missing required header(s): {', '.join(missing)}")
        if headers["ce-specversion"] not in _SPECVERSIONS:
            raise InvalidEvent(
                f"binary CloudEvent: unknown specversion {headers['ce-specversion']!r} "
                f"(supported: {', '.join(_SPECVERSIONS)})"
            )
        return [from_http(headers, body)]
    except GenericException as exc:
        raise InvalidEvent(f"invalid CloudEvent: {exc}") from None


async def read_body(receive: Any) -> bytes:
    """The whole body of an ASGI HTTP request (the broker ingress and the dead-letter sink)."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)
