"""The wire protocols of the AWS APIs served: awsJson (1.0 and 1.1), awsQuery and restJson.

- awsJson (EventBridge 1.1, SQS 1.0): ``POST /`` with ``X-Amz-Target: <prefix>.<Operation>``, a JSON body,
  errors as ``{"__type": ..., "message": ...}``; SQS adds ``x-amzn-query-error: <query code>;Sender`` so
  clients that know the query protocol's error codes read them (its model's ``awsQueryCompatible``);
- awsQuery (SES v1, SQS's older clients): a form body (``Action=...&Version=...``, lists as
  ``Name.member.N`` or ``Name.N``, maps as ``Name.N.Name``/``Name.N.Value``), XML answers and errors;
- restJson (SESv2): the operation is the path, JSON in and out, errors named by ``x-amzn-ErrorType``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

__all__ = ["Answer", "ApiError", "error_answer", "members", "parse_form", "xml_answer"]

Headers = list[tuple[bytes, bytes]]


@dataclass
class ApiError(Exception):
    """An AWS error: its code (the query protocol's, and ``json_type`` for awsJson when it differs)."""

    code: str
    message: str
    status: int = 400
    json_type: str | None = None
    sender: bool = True

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass
class Answer:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""


def request_id() -> str:
    return str(uuid.uuid4())


def parse_form(body: bytes, query: str = "") -> dict[str, str]:
    """The parameters of an awsQuery request (the query string's, then the body's)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError("MalformedQueryString", "the form body is not UTF-8") from None
    params = dict(parse_qsl(query, keep_blank_values=True))
    params.update(parse_qsl(text, keep_blank_values=True))
    return params


def members(params: Mapping[str, str], prefix: str) -> list[str]:
    """The values of a flattened list: ``prefix.1``, ``prefix.2``, ... in order (``.member.`` is in prefix)."""
    found: dict[int, str] = {}
    start = prefix + "."
    for key, value in params.items():
        if key.startswith(start) and key[len(start) :].isdigit():
            found[int(key[len(start) :])] = value
    return [found[i] for i in sorted(found)]


def indexed(params: Mapping[str, str], prefix: str) -> list[dict[str, str]]:
    """The structures of a flattened list: ``prefix.N.field=...`` -> one dict of fields per N, in order."""
    found: dict[int, dict[str, str]] = {}
    start = prefix + "."
    for key, value in params.items():
        if not key.startswith(start):
            continue
        index, _, rest = key[len(start) :].partition(".")
        if index.isdigit() and rest:
            found.setdefault(int(index), {})[rest] = value
    return [found[i] for i in sorted(found)]


def _xml_value(name: str, value: Any) -> str:
    if isinstance(value, list):
        return "".join(_xml_value(name, v) for v in value)
    if isinstance(value, dict):
        inner = "".join(_xml_value(k, v) for k, v in value.items() if v is not None)
        return f"<{name}>{inner}</{name}>"
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


def xml_answer(operation: str, namespace: str, result: Mapping[str, Any], rid: str) -> Answer:
    """``<OpResponse xmlns=...><OpResult>...</OpResult><ResponseMetadata>...`` (lists: repeated elements)."""
    inner = "".join(_xml_value(k, v) for k, v in result.items() if v is not None)
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{operation}Response xmlns="{namespace}">'
        f"<{operation}Result>{inner}</{operation}Result>"
        f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{operation}Response>"
    )
    return Answer(200, [(b"content-type", b"text/xml"), (b"x-amzn-requestid", rid.encode())], body.encode())


def json_answer(
    payload: Mapping[str, Any], rid: str, content_type: str = "application/x-amz-json-1.0"
) -> Answer:
    return Answer(
        200,
        [(b"content-type", content_type.encode()), (b"x-amzn-requestid", rid.encode())],
        json.dumps(payload).encode(),
    )


def error_answer(
    protocol: str, error: ApiError, rid: str, *, namespace: str = "", query_compatible: bool = False
) -> Answer:
    """The error as the protocol shapes it: ``query`` (XML), ``json`` (awsJson) or ``rest`` (restJson)."""
    headers: Headers = [(b"x-amzn-requestid", rid.encode())]
    if protocol == "query":
        kind = "Sender" if error.sender else "Receiver"
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="{namespace}"><Error>'
            f"<Type>{kind}</Type><Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message>"
            f"</Error><RequestId>{rid}</RequestId></ErrorResponse>"
        )
        return Answer(error.status, [(b"content-type", b"text/xml"), *headers], body.encode())
    name = error.json_type or error.code
    if protocol == "json":
        headers.append((b"content-type", b"application/x-amz-json-1.0"))
        if query_compatible:
            kind = "Sender" if error.sender else "Receiver"
            headers.append((b"x-amzn-query-error", f"{error.code};{kind}".encode()))
        payload = {"__type": name, "message": error.message}
    else:
        headers += [(b"content-type", b"application/json"), (b"x-amzn-errortype", name.encode())]
        payload = {"message": error.message}
    return Answer(error.status, headers, json.dumps(payload).encode())


def strings(value: Any, what: str) -> list[str]:
    """A JSON list of strings (None = empty), or an ApiError naming ``what``."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError("InvalidParameterValue", f"{what} must be a list of strings")
    return list(value)


def optional_str(body: Mapping[str, Any], key: str, what: str | None = None) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ApiError("InvalidParameterValue", f"{what or key} must be a string")


def require(value: str | None, name: str, code: str = "MissingParameter") -> str:
    if not value:
        raise ApiError(code, f"The request must contain the parameter {name}.")
    return value


def first(values: Sequence[str]) -> str | None:
    return values[0] if values else None
