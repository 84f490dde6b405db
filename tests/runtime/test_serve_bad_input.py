"""``kfaas serve`` as a process, driven with malformed and oversized requests: every refusal is a 4xx with a
JSON body naming the problem (never a plain-text 500), and no request holds memory or a connection beyond
the limits. Raw sockets (tests/rawhttp.py) send what a well-behaved client would not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rawhttp import KfaasProcess, exchange, request

SAMPLES = Path(__file__).resolve().parents[1] / "test_functions"
BINARY = [("ce-id", "b-1"), ("ce-source", "/tests"), ("ce-type", "t"), ("ce-specversion", "1.0")]
STRUCTURED = {"content-type": "application/cloudevents+json"}


def serve(target: str, scenario: str = "cloudevents", **env: str) -> KfaasProcess:
    source = str(SAMPLES / scenario / "main.py")
    args = ["serve", "--source", source, "--target", target, "--host", "127.0.0.1", "--port", "{port}"]
    return KfaasProcess(args, env={"KFAAS_FUNCTION": "sample", "KFAAS_BODY_TIMEOUT": "1", **env})


@pytest.fixture(scope="module")
def record() -> Iterator[KfaasProcess]:
    with serve("record") as server:
        yield server


def event(**attributes: object) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": "s-1", "source": "/tests", "type": "t", **attributes}
    ).encode()


def test_json_nested_thousands_of_levels_deep_is_a_400_json(record: KfaasProcess) -> None:
    deep = "[" * 2000 + "]" * 2000
    structured = httpx.post(
        record.url, headers=STRUCTURED, content=event()[:-1] + b', "data": ' + deep.encode() + b"}"
    )
    assert structured.status_code == 400
    assert structured.json() == {"error": "structured CloudEvent is nested too deeply (at most 128 levels)"}
    binary = httpx.post(
        record.url, headers={**dict(BINARY), "content-type": "application/json"}, content=deep.encode()
    )
    assert binary.status_code == 400
    assert "data is nested too deeply" in binary.json()["error"]
    # at the bound (the envelope is the first of the 128 levels) it is an event like any other
    fine = "[" * 127 + "]" * 127
    assert httpx.post(record.url, headers=STRUCTURED, content=event(data=json.loads(fine))).status_code == 204


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"id": 1}, "attribute 'id' must be a string, got a number (1)"),
        ({"id": True}, "attribute 'id' must be a string, got a boolean (true)"),
        ({"source": ["/a"]}, "attribute 'source' must be a string, got an array"),
        ({"type": {"a": 1}}, "attribute 'type' must be a string, got an object"),
        ({"subject": 7}, "attribute 'subject' must be a string"),
        ({"subject": ""}, "attribute 'subject' must not be empty when present"),
        ({"time": "yesterday"}, "attribute 'time' must be an RFC 3339 timestamp"),
        ({"time": "2026-13-01T00:00:00Z"}, "attribute 'time' must be an RFC 3339 timestamp"),
        ({"dataschema": "schemas/order.json"}, "attribute 'dataschema' must be an absolute URI"),
        ({"datacontenttype": 5}, "attribute 'datacontenttype' must be a string"),
        ({"myext": {"a": 1}}, "extension 'myext' must be a string, a boolean or an integer, got an object"),
        ({"myext": 1.5}, "extension 'myext' must be a string, a boolean or an integer, got a number (1.5)"),
        ({"myext": 2**40}, "extension 'myext' is an integer outside the 32-bit range"),
        ({"My_Ext": "x"}, "'My_Ext' is not a valid attribute name"),
        ({"id": "a\u0000b"}, "attribute 'id' holds the character U+0000"),
        ({"data": 1, "data_base64": "AQ=="}, "'data' and 'data_base64' must not both be present"),
    ],
)
def test_structured_attributes_of_the_wrong_type_are_refused(
    record: KfaasProcess, attributes: dict[str, object], message: str
) -> None:
    response = httpx.post(record.url, headers=STRUCTURED, content=event(**attributes))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_attribute_types_the_spec_allows_are_accepted(record: KfaasProcess) -> None:
    body = event(
        time="2026-12-01T10:00:00.123+01:00",
        dataschema="https://example.com/order.json",
        subject="o-1",
        count=-(2**31),
        flag=False,
        note="ok",
        traceparent=None,
    )
    assert httpx.post(record.url, headers=STRUCTURED, content=body).status_code == 204


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("ce-time", "01/12/2026", "attribute 'time' must be an RFC 3339 timestamp"),
        ("ce-my_ext", "x", "'my_ext' is not a valid attribute name"),
        ("ce-dataschema", "", "header ce-dataschema must not be empty"),
    ],
)
def test_binary_attributes_are_checked_too(
    record: KfaasProcess, header: str, value: str, message: str
) -> None:
    response = httpx.post(record.url, headers={**dict(BINARY), header: value}, content=b"")
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_a_ce_header_outside_visible_ascii_is_named_as_such(record: KfaasProcess) -> None:
    """Event functions are served over RSGI, as the broker ingress is: a CloudEvents attribute with bytes
    outside visible ASCII (invalid UTF-8, or UTF-8 the CloudEvents HTTP binding says to percent-encode)
    is refused naming the field, with the ingress's message, never taken for a missing attribute."""
    message = (
        "header ce-id holds bytes outside visible ASCII: invalid UTF-8, or UTF-8 that is not percent-encoded "
        "(the CloudEvents HTTP binding percent-encodes such characters)"
    )
    for value in (b"\xff\xfeid", "é".encode()):
        answer = exchange(record.port, request("POST", "/", [("ce-id", value), *BINARY[1:]]))
        assert answer.status == 400
        assert answer.json() == {"error": message}
    assert exchange(record.port, request("POST", "/", [("ce-id", "%C3%A9"), *BINARY[1:]])).status == 204


def test_too_many_header_fields_get_kfaas_s_431_with_a_json_body(record: KfaasProcess) -> None:
    headers = [*BINARY, *((f"ce-x{i}", "v") for i in range(70))]
    answer = exchange(record.port, request("POST", "/", headers))
    assert answer.status == 431
    assert answer.json() == {"error": "too many header fields: 75, at most 64 are accepted"}


def test_header_fields_too_large_get_kfaas_s_431_naming_the_largest(record: KfaasProcess) -> None:
    answer = exchange(record.port, request("POST", "/", [("ce-id", "a" * 100_000), *BINARY[1:]]))
    assert answer.status == 431
    assert "header fields too large" in answer.json()["error"]
    assert "the largest is ce-id, 100000 bytes" in answer.json()["error"]


@pytest.mark.parametrize(
    "headers",
    [
        [*BINARY, *((f"ce-x{i}", "v") for i in range(1000))],  # more than hyper's 100 fields
        [("ce-id", "a" * 1_000_000), *BINARY[1:]],  # a head larger than granian's 417,792-byte buffer
    ],
    ids=["1000-headers", "1MB-ce-id"],
)
def test_far_over_the_limits_granian_answers_431_itself_with_an_empty_body(
    record: KfaasProcess, headers: list[tuple[str, str]]
) -> None:
    """What a client sees when the server in front refuses the head before kfaas sees it (docs/runtime.md)."""
    answer = exchange(record.port, request("POST", "/", headers))
    assert answer.status == 431
    assert answer.reason == "Request Header Fields Too Large"
    assert answer.headers.get("content-length") == "0"
    assert answer.headers.get("connection") == "close"
    assert answer.body == b""
    assert httpx.get(record.url + "/health/liveness").status_code == 200  # and the server goes on


def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read(record: KfaasProcess) -> None:
    # 20 MB announced, 10 bytes sent: the answer comes at once, without waiting for the rest
    answer = exchange(record.port, request("POST", "/", BINARY, b"0123456789", length=20_000_000))
    assert answer.status == 413
    assert answer.json() == {
        "error": "request body too large: Content-Length 20000000, at most 10485760 bytes are accepted"
    }
    assert answer.seconds < 0.9  # well within KFAAS_BODY_TIMEOUT=1: no waiting for the body


def test_a_chunked_body_over_the_limit_is_refused_while_it_is_read(record: KfaasProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    response = httpx.post(record.url, headers=dict(BINARY), content=chunks())
    assert response.status_code == 413
    assert response.json() == {"error": "request body too large: more than 10485760 bytes, the limit"}


def test_a_stalled_body_is_answered_408_once_the_body_timeout_passed(record: KfaasProcess) -> None:
    answer = exchange(record.port, request("POST", "/", BINARY, b"012", length=1000))
    assert answer.status == 408
    assert answer.json() == {"error": "the request body did not arrive within 1s"}
    assert 0.9 < answer.seconds < 5


def test_the_binary_mode_reply_carries_its_content_type() -> None:
    headers = {**dict(BINARY), "content-type": "application/json"}
    for target, content_type, body in [
        ("reply", "application/json", b'{"echo": {"a": 1}}'),
        ("reply_bytes", "application/octet-stream", b"\x00\x01"),
        ("reply_text", "text/plain", b"hello"),
    ]:
        with serve(target) as server:
            response = httpx.post(server.url, headers=headers, content=b'{"a": 1}')
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        assert response.content == body


def test_a_kfaas_error_s_message_is_in_the_500_any_other_only_its_type() -> None:
    with serve("misconfigured", MONGODB_URL="") as server:
        response = httpx.post(server.url, headers=dict(BINARY), content=b"")
    assert response.status_code == 500
    assert response.json() == {
        "error": "the function failed (ConfigurationError: MongoDB is not configured: set MONGODB_URL); "
        "see its log",
        "id": "b-1",
    }
    with serve("explode") as server:
        response = httpx.post(server.url, headers=dict(BINARY), content=b"")
    assert response.json() == {"error": "the function failed (RuntimeError); see its log", "id": "b-1"}


def test_an_asgi_app_gets_the_same_body_limits() -> None:
    with serve("app", "asgi_app", KFAAS_MAX_BODY_BYTES="1000") as server:
        ok = httpx.post(server.url + "/echo", content=b"x" * 1000)
        assert ok.json() == {"bytes": 1000}
        big = exchange(server.port, request("POST", "/echo", [], b"x" * 1001))
        assert big.status == 413
        assert big.json() == {
            "error": "request body too large: Content-Length 1001, at most 1000 bytes are accepted"
        }
        stalled = exchange(server.port, request("POST", "/echo", [], b"x", length=10))
        assert stalled.status == 408
        assert stalled.json() == {"error": "the request body did not arrive within 1s"}
        many = exchange(server.port, request("GET", "/things/1", [(f"x-h{i}", "v") for i in range(70)]))
        assert many.status == 431
        assert many.json()["error"].startswith("too many header fields")


def test_limit_settings_are_checked_at_start() -> None:
    source = str(SAMPLES / "cloudevents" / "main.py")
    done = subprocess.run(
        [sys.executable, "-m", "kfaas", "serve", "--source", source, "--target", "record", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "KFAAS_MAX_BODY_BYTES": "0"},
        check=False,
    )
    assert done.returncode == 2
    assert "KFAAS_MAX_BODY_BYTES=0 must be greater than 0" in done.stderr
