"""Binary-mode CloudEvents are built with the SDK's ``CloudEvent(attributes, data)`` from the checked
header fields: the event a function gets is the one the SDK's ``from_http`` gives for the same request."""

from __future__ import annotations

import json

import pytest
from cloudevents.http import from_http

from kfaas.base.errors import InvalidEvent
from kfaas.events import parse_events

BASE = {"ce-specversion": "1.0", "ce-id": "b-1", "ce-source": "/tests", "ce-type": "com.example.t"}


@pytest.mark.parametrize(
    ("extra", "body"),
    [
        ({"content-type": "application/json"}, b'{"message": "hello"}'),
        ({"content-type": "application/vnd.example+json"}, b"[1, 2, 3]"),
        ({"content-type": "application/json; charset=utf-8"}, b"not json"),
        ({"content-type": "application/json"}, b""),
        ({}, b""),
        ({"content-type": "application/json", "ce-datacontenttype": "text/plain"}, b'"a"'),
        ({"ce-datacontenttype": "text/plain", "content-type": "application/json"}, b'"a"'),
        ({"content-type": "application/json", "ce-data": "ignored"}, b"{}"),
        (
            {"content-type": "application/json", "ce-time": "2026-01-02T03:04:05Z", "ce-subject": "s",
             "ce-dataschema": "https://example.com/s", "ce-traceparent": "00-ab-cd-01", "ce-n": "7",
             "host": "fn", "content-length": "2", "traceparent": "x"},
            b"{}",
        ),
        ({"ce-specversion": "0.3", "content-type": "application/json"}, b'{"v": "0.3"}'),
    ],
)  # fmt: skip
def test_the_event_is_the_one_from_http_gives(extra: dict[str, str], body: bytes) -> None:
    headers = {**BASE, **extra}
    (ours,) = parse_events(headers, body)
    theirs = from_http(headers, body)
    mine, sdk = dict(ours.get_attributes()), dict(theirs.get_attributes())
    if "ce-time" not in headers:  # both invent the time the sender did not give; it differs by microseconds
        mine.pop("time")
        sdk.pop("time")
    assert mine == sdk
    assert ours.get_data() == theirs.get_data()
    assert type(ours) is type(theirs)


def test_json_data_is_read_with_bounded_nesting() -> None:
    deep = b"[" * 200 + b"]" * 200
    with pytest.raises(InvalidEvent, match="nested too deeply"):
        parse_events({**BASE, "content-type": "application/json"}, deep)


def test_an_attribute_named_extensions_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="'extensions' cannot be used as an attribute name"):
        parse_events({**BASE, "ce-extensions": "x"}, b"")
    structured = json.dumps({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "extensions": "x"})
    with pytest.raises(InvalidEvent, match="'extensions' cannot be used"):
        parse_events({"content-type": "application/cloudevents+json"}, structured.encode())
