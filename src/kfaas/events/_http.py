"""CloudEvents over HTTP: binary, structured and batch mode in, binary mode out, through the cloudevents SDK."""

from __future__ import annotations

import json
from typing import Any, cast

from kfaas.base.errors import InvalidEvent

__all__ = ["BATCH", "STRUCTURED", "parse_events", "to_binary"]

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


def to_binary(event: Any) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body of ``event`` in binary content mode, written by the SDK."""
    from cloudevents.conversion import to_binary as sdk_to_binary

    headers, body = cast("tuple[dict[str, str], Any]", sdk_to_binary(event))
    if isinstance(body, str):
        body = body.encode()
    return headers, body or b""
