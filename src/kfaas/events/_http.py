"""CloudEvents over HTTP: binary, structured and batch mode in, binary mode out, through the cloudevents SDK.

Before the SDK reads an event, the attributes are checked against the CloudEvents spec (v1.0.2, "Type
System" and the JSON event format): the required ones present and non-empty, each context attribute of the
type the spec fixes for it (``id``, ``source``, ``type``, ``subject``, ``datacontenttype`` strings,
``dataschema`` an absolute URI, ``time`` an RFC 3339 timestamp), extension names of lower-case letters and
digits, extension values a string, a boolean or a 32-bit integer, and no JSON nested deeper than
``MAX_JSON_DEPTH``. A request that breaks one of these is refused with a message naming the attribute.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

from kfaas.base.errors import InvalidEvent

__all__ = ["BATCH", "MAX_JSON_DEPTH", "STRUCTURED", "content_mode", "parse_events", "to_binary"]

BATCH = "application/cloudevents-batch+json"
STRUCTURED = "application/cloudevents"
MAX_JSON_DEPTH = 128  # nested arrays/objects; deeper input is refused before Python's recursion limit is near
_REQUIRED = ("id", "source", "specversion", "type")
_SPECVERSIONS = ("1.0", "0.3")
_STRINGS = ("id", "source", "specversion", "type", "subject", "datacontenttype", "dataschema", "time")
_NON_EMPTY = ("subject", "dataschema")  # optional, but "if present, MUST be a non-empty string"
_NOT_ATTRIBUTES = frozenset({"data", "data_base64"})
_NAME = re.compile(r"[a-z0-9]+")
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
# RFC 3339 date-time (section 5.6)
_TIMESTAMP = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
)
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S*")
# The spec's "String": no control characters, surrogates or noncharacters
_NOT_IN_STRING = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


class _TooDeep(InvalidEvent):
    pass


def _json(body: bytes, what: str) -> Any:
    try:
        value = json.loads(body)
    except RecursionError:
        raise _TooDeep(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except ValueError as exc:
        raise InvalidEvent(f"{what} is not valid JSON: {exc}") from None
    if len(body) > 2 * MAX_JSON_DEPTH and _too_deep(value):
        raise _TooDeep(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    return value


def read_json(body: bytes, what: str) -> Any:
    """``body`` as JSON, nested at most ``MAX_JSON_DEPTH`` levels; InvalidEvent naming ``what`` when not."""
    return _json(body, what)


def _too_deep(value: Any) -> bool:
    """Arrays and objects nested more than ``MAX_JSON_DEPTH`` levels deep (an explicit stack, no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > MAX_JSON_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _check_string(name: str, value: str, where: str) -> None:
    bad = _NOT_IN_STRING.search(value)
    if bad:
        raise InvalidEvent(
            f"{where}: attribute {name!r} holds the character U+{ord(bad.group()):04X}, which a CloudEvents "
            "String may not contain"
        )
    if name == "time" and not _TIMESTAMP.fullmatch(value):
        raise InvalidEvent(f"{where}: attribute 'time' must be an RFC 3339 timestamp, got {value[:64]!r}")
    if name == "dataschema" and not _ABSOLUTE_URI.fullmatch(value):
        raise InvalidEvent(f"{where}: attribute 'dataschema' must be an absolute URI, got {value[:64]!r}")


def _check_name(name: str, where: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidEvent(
            f"{where}: {name[:64]!r} is not a valid attribute name (lower-case letters a-z and digits only)"
        )
    if name == "extensions":  # the SDK (1.x) keeps its extensions under this name and fails on it
        raise InvalidEvent(f"{where}: 'extensions' cannot be used as an attribute name")


def check_attributes(attrs: Any, where: str) -> None:
    """A structured event's attributes: present, of their spec types (see the module docstring)."""
    if not isinstance(attrs, dict):
        raise InvalidEvent(f"{where}: expected a JSON object, got {type(attrs).__name__}")
    missing = [name for name in _REQUIRED if attrs.get(name) in (None, "")]
    if missing:
        raise InvalidEvent(f"{where}: missing required attribute(s): {', '.join(missing)}")
    if "data" in attrs and "data_base64" in attrs:
        raise InvalidEvent(f"{where}: 'data' and 'data_base64' must not both be present")
    for name, value in attrs.items():
        if name not in _NOT_ATTRIBUTES and value is not None:  # null: absent (JSON event format)
            _check_value(name, value, where)
    if attrs["specversion"] not in _SPECVERSIONS:
        raise InvalidEvent(
            f"{where}: unknown specversion {attrs['specversion']!r} (supported: {', '.join(_SPECVERSIONS)})"
        )


def _check_value(name: str, value: Any, where: str) -> None:
    _check_name(name, where)
    if name in _STRINGS:
        if not isinstance(value, str):
            raise InvalidEvent(
                f"{where}: attribute {name!r} must be a string, got {_json_type(value)} {_shown(value)}"
            )
        if name in _NON_EMPTY and not value:
            raise InvalidEvent(f"{where}: attribute {name!r} must not be empty when present")
        _check_string(name, value, where)
    elif isinstance(value, str):
        _check_string(name, value, where)
    elif isinstance(value, int) and not isinstance(value, bool) and not _INT_MIN <= value <= _INT_MAX:
        raise InvalidEvent(
            f"{where}: extension {name!r} is an integer outside the 32-bit range CloudEvents allows"
        )
    elif not isinstance(value, bool | int):
        raise InvalidEvent(
            f"{where}: extension {name!r} must be a string, a boolean or an integer, "
            f"got {_json_type(value)} {_shown(value)}"
        )


def _check_binary(headers: dict[str, str]) -> None:
    where = "binary CloudEvent"
    missing = [f"ce-{name}" for name in _REQUIRED if not headers.get(f"ce-{name}")]
    if missing:
        raise InvalidEvent(f"{where}: missing required header(s): {', '.join(missing)}")
    for header, value in headers.items():
        if header.startswith("ce-"):
            name = header[3:]
            _check_name(name, where)
            if name in _NON_EMPTY and not value:
                raise InvalidEvent(f"{where}: header {header} must not be empty when present")
            _check_string(name, value, where)
    if headers["ce-specversion"] not in _SPECVERSIONS:
        raise InvalidEvent(
            f"{where}: unknown specversion {headers['ce-specversion']!r} "
            f"(supported: {', '.join(_SPECVERSIONS)})"
        )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    return "an array" if isinstance(value, list) else "a string"


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, dict | list) else ""
    return f"({text[:32]})" if text else ""


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json") or content_type == "text/json"


def content_mode(headers: dict[str, str]) -> str | None:
    """``"batch"``, ``"structured"`` or ``"binary"``: how a request carries CloudEvents; ``None`` when it
    carries none (no ``ce-specversion`` header and neither CloudEvents content type)."""
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == BATCH:
        return "batch"
    if content_type.startswith(STRUCTURED):
        return "structured"
    return "binary" if "ce-specversion" in headers else None


def parse_events(headers: dict[str, str], body: bytes) -> list[Any]:
    """CloudEvents from an HTTP request in binary, structured or batch mode, as the SDK's ``CloudEvent``.

    The SDK fills in a random ``id`` when one is missing, so required attributes are checked first: a
    request without them is refused rather than given an identity it never had. A binary-mode event is
    built with the SDK's ``CloudEvent(attributes, data)`` from the ``ce-*`` header fields and the content
    type, as its ``from_http`` does, once they are checked; structured and batch mode go through
    ``from_http`` itself.
    """
    from cloudevents.exceptions import GenericException
    from cloudevents.http import from_http

    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if content_type == BATCH:
            items = _json(body, "batch body")
            if not isinstance(items, list):
                raise InvalidEvent("batch body must be a JSON array of structured CloudEvents")
            events = []
            for i, item in enumerate(items):
                check_attributes(item, f"batch[{i}]")
                events.append(
                    from_http({"content-type": "application/cloudevents+json"}, json.dumps(item).encode())
                )
            return events
        if content_type.startswith(STRUCTURED):
            check_attributes(_json(body, "structured CloudEvent"), "structured CloudEvent")
            # the content type alone: a stray ce-specversion header would make the SDK read binary mode
            return [from_http({"content-type": headers["content-type"]}, body)]
        if "ce-specversion" not in headers:
            raise InvalidEvent(
                f"not a CloudEvent: no ce-specversion header and content type {content_type or '(none)'!r} "
                "is neither application/cloudevents+json nor application/cloudevents-batch+json"
            )
        _check_binary(headers)
        if not body:
            return [_binary(headers, None)]
        if _is_json(content_type):
            # read here rather than by the SDK, so that nesting is bounded; like the SDK, data that is not
            # JSON despite its content type reaches the function as it came
            try:
                data: Any = _json(body, "binary CloudEvent: data")
            except _TooDeep:
                raise
            except InvalidEvent:
                data = body
            return [_binary(headers, data)]
        return [from_http(headers, body)]  # the SDK's own reading of other data (JSON if it parses)
    except GenericException as exc:
        raise InvalidEvent(f"invalid CloudEvent: {exc}") from None


def _binary(headers: dict[str, str], data: Any) -> Any:
    """The event of checked binary-mode headers, with the attributes the SDK's ``from_http`` gives it: each
    ``ce-<name>`` field and the content type as ``datacontenttype`` (the later of the two wins, as there).
    A ``ce-data`` field is no attribute: the body is the data."""
    from cloudevents.http import CloudEvent

    attributes: dict[str, Any] = {}
    for name, value in headers.items():
        if name == "content-type":
            attributes["datacontenttype"] = value
        elif name.startswith("ce-"):
            attributes[name[3:]] = value
    attributes.pop("data", None)
    return CloudEvent(attributes, data)


def to_binary(event: Any) -> tuple[dict[str, str], bytes]:
    """HTTP headers and body of ``event`` in binary content mode, written by the SDK.

    The answer always names its content type when it has a body: the event's ``datacontenttype``, else
    ``application/json`` for data the SDK writes as JSON and ``application/octet-stream`` for bytes. Text
    data of a non-JSON content type is written as UTF-8 text (the SDK alone would JSON-quote it).
    """
    from cloudevents.conversion import to_binary as sdk_to_binary

    declared = str(event.get("datacontenttype") or "")
    base = declared.split(";", 1)[0].strip().lower()

    def marshal(data: Any) -> Any:
        if isinstance(data, bytes | bytearray | memoryview) or data is None:
            return data
        if isinstance(data, str) and base and not _is_json(base):
            return data.encode()
        return json.dumps(data).encode()

    headers, body = cast("tuple[dict[str, str], Any]", sdk_to_binary(event, data_marshaller=marshal))
    if isinstance(body, str):
        body = body.encode()
    body = bytes(body or b"")
    if body and not any(key.lower() == "content-type" for key in headers):
        data = event.get_data()
        headers["content-type"] = (
            "application/octet-stream"
            if isinstance(data, bytes | bytearray | memoryview)
            else "application/json"
        )
    return headers, body
