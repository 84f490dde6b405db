"""functions-framework code under a real ``kfaas serve``, checked as the Functions Framework conformance suite
checks a framework (GoogleCloudPlatform/functions-framework-conformance v1.8.8: its README, docs/mapping.md
and client/validate.go; functions-framework-python's two conformance workflows, 12 jobs).

The suite starts the framework with ``FUNCTION_SIGNATURE_TYPE`` set (as Cloud Run's build environment does),
sends requests to it, and compares what the function wrote to ``function_output.json`` with what it
expects: an http function the JSON body it was sent, a CloudEvent function each CloudEvent as it was sent
and each legacy event converted to its CloudEvent, a legacy function each legacy event as it was sent and
each CloudEvent converted to its legacy form, a typed function its input echoed under ``payload``; and
ten concurrent requests to a function that sleeps a second finish within twice the time of one.

The event pairs are the suite's own, read from ../shared/conformance/ff-events/ (SOURCES.md there); without
that folder the event cases skip and say so. The functions are tests/test_functions/ff_conformance/.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from rawhttp import KfaasProcess

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "test_functions"
EVENTS = ROOT.parent / "shared" / "conformance" / "ff-events"
NAMES = sorted(p.name.removesuffix("-legacy-input.json") for p in EVENTS.glob("*-legacy-input.json"))


def needs_events() -> None:
    if not EVENTS.is_dir() or not NAMES:
        pytest.skip(f"{EVENTS} is absent: the conformance event pairs are not checked")


def load(name: str, kind: str) -> Any:
    return json.loads((EVENTS / f"{name}-{kind}.json").read_text(encoding="utf-8"))


class Function:
    """A ``kfaas serve`` process of one target, started with the suite's environment."""

    def __init__(self, tmp: Path, source: str, target: str, *args: str, signature_type: str = "") -> None:
        self.output = tmp / "function_output.json"
        env = {"FF_OUTPUT": str(self.output), "KFAAS_FUNCTION": target}
        if signature_type:
            env["FUNCTION_SIGNATURE_TYPE"] = signature_type
        self.process = KfaasProcess(
            ["serve", "--source", str(SAMPLES / "ff_conformance" / source), "--target", target,
             "--host", "127.0.0.1", "--port", "{port}", *args],
            env=env,
        )  # fmt: skip

    def __enter__(self) -> Function:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        _out, err = self.process.stop()
        assert self.process.process is not None
        assert self.process.process.returncode == 0, err[-3000:]

    @property
    def url(self) -> str:
        return self.process.url

    def post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        self.output.unlink(missing_ok=True)
        return httpx.post(self.url + "/", content=body, headers=headers, timeout=10)

    def written(self) -> Any:
        return json.loads(self.output.read_text(encoding="utf-8"))


def as_binary(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A CloudEvent in binary content mode, as the suite's client (the Go SDK's default) sends it."""
    headers = {f"ce-{k}": v for k, v in event.items() if k not in ("data", "datacontenttype")}
    headers["content-type"] = event.get("datacontenttype", "application/json")
    return json.dumps(event["data"]).encode(), headers


def as_structured(event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    return json.dumps(event).encode(), {"content-type": "application/cloudevents+json"}


def as_legacy(payload: Any) -> tuple[bytes, dict[str, str]]:
    return json.dumps(payload).encode(), {"content-type": "application/json"}


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def cloudevent_problems(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What validators.go compares of a CloudEvent: id, source, subject, type, time, datacontenttype, data."""
    problems = []
    for key in ("id", "source", "subject", "type", "datacontenttype", "data"):
        if got.get(key) != want.get(key):
            problems.append(f"{key}: got {got.get(key)!r}, want {want.get(key)!r}")
    if moment(got["time"]) != moment(want["time"]):
        problems.append(f"time: got {got['time']!r}, want {want['time']!r}")
    return problems


def legacy_problems(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What validators.go compares of a legacy event: eventId, eventType (or their snake_case), timestamp
    (as a time), resource and data."""
    problems = []
    context, expected = got["context"], want["context"]
    for key, snake in (("eventId", "event_id"), ("eventType", "event_type")):
        value = context.get(key, context.get(snake))
        if value != expected[key]:
            problems.append(f"{key}: got {value!r}, want {expected[key]!r}")
    if moment(context["timestamp"]) != moment(expected["timestamp"]):
        problems.append(f"timestamp: got {context['timestamp']!r}, want {expected['timestamp']!r}")
    if context.get("resource") != expected["resource"]:
        problems.append(f"resource: got {context.get('resource')!r}, want {expected['resource']!r}")
    if got.get("data") != want.get("data"):
        problems.append(f"data: got {got.get('data')!r}, want {want.get('data')!r}")
    return problems


def check_events(function: Function, inputs: dict[str, tuple[bytes, dict[str, str]]], expect: Any) -> None:
    """Send every input; each must be answered 2xx and the written output must match ``expect(name)``."""
    failures = {}
    for name, (body, headers) in inputs.items():
        response = function.post(body, headers)
        if not response.is_success:
            failures[name] = [f"answered {response.status_code}: {response.text[:300]}"]
            continue
        problems = expect(name, function.written())
        if problems:
            failures[name] = problems
    assert not failures, json.dumps(failures, indent=2)
    assert len(inputs) == len(NAMES) == 17


# -- http -----------------------------------------------------------------------------------------------
def test_http_function_with_signature_type_http_gets_a_flask_request(tmp_path: Path) -> None:
    with Function(tmp_path, "main.py", "write_http", "--signature-type", "http", signature_type="http") as fn:
        response = fn.post(b'{"res": "PASS"}', {"content-type": "application/json"})
        assert (response.status_code, response.text) == (200, "OK")
        assert fn.written() == {"res": "PASS"}


def test_declared_http_function_wins_over_the_environment_and_reads_the_body_every_way(
    tmp_path: Path,
) -> None:
    """FUNCTION_SIGNATURE_TYPE=http is set, as the suite and Cloud Run set it: the decorator still decides,
    and the function gets a Flask request whose get_json(), json and data all give the body, whether it
    came with a Content-Length or chunked (the bridge to Flask reads it through a coroutine receive)."""
    body = {"res": "PASS", "n": [1, 2]}
    with Function(tmp_path, "main.py", "write_http_declarative", signature_type="http") as fn:
        response = fn.post(json.dumps(body).encode(), {"content-type": "application/json"})
        assert (response.status_code, response.text) == (200, "OK")
        expected = {
            "get_json": body,
            "json": body,
            "data": json.dumps(body),
            "request": "flask.wrappers.Request",
        }
        assert fn.written() == expected

        def chunks() -> Iterator[bytes]:
            text = json.dumps(body).encode()
            yield text[:5]
            yield text[5:]

        fn.output.unlink()
        chunked = httpx.post(
            fn.url + "/any/path", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.request.headers.get("transfer-encoding") == "chunked"
        assert chunked.status_code == 200, chunked.text
        assert fn.written() == expected


def test_typed_function_echoes_its_input(tmp_path: Path) -> None:
    with Function(tmp_path, "main.py", "typed_conformance_test", signature_type="http") as fn:
        response = fn.post(b'{"message": "Hello world!"}', {"content-type": "application/json"})
        assert response.status_code == 200
        assert response.json() == {"payload": {"message": "Hello world!"}}
        refused = fn.post(b'{"message": ', {"content-type": "application/json"})
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("body: not valid JSON")
        get = httpx.get(fn.url + "/", timeout=5)
        assert get.status_code == 405


def test_typed_function_by_annotation_returns_a_builtin(tmp_path: Path) -> None:
    with Function(tmp_path, "main.py", "typed_annotated") as fn:
        response = fn.post(b'{"a": "b"}', {"content-type": "application/json"})
        assert response.status_code == 200
        assert response.json() == {"builtin": {"a": "b"}}


# -- CloudEvent functions ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "args"),
    [("write_cloud_event", ("--signature-type", "cloudevent")), ("write_cloud_event_declarative", ())],
)
def test_cloudevent_function_gets_cloudevents_unchanged_and_legacy_events_converted(
    tmp_path: Path, target: str, args: tuple[str, ...]
) -> None:
    needs_events()
    with Function(tmp_path, "main.py", target, *args, signature_type="cloudevent") as fn:
        inputs = {name: as_binary(load(name, "cloudevent-input")) for name in NAMES}
        check_events(fn, inputs, lambda name, got: cloudevent_problems(got, load(name, "cloudevent-input")))
        inputs = {name: as_structured(load(name, "cloudevent-input")) for name in NAMES}
        check_events(fn, inputs, lambda name, got: cloudevent_problems(got, load(name, "cloudevent-input")))
        inputs = {name: as_legacy(load(name, "legacy-input")) for name in NAMES}
        check_events(fn, inputs, lambda name, got: cloudevent_problems(got, load(name, "cloudevent-output")))


# -- legacy (background) functions ------------------------------------------------------------------------
def legacy_expected(name: str) -> Any:
    converted = EVENTS / f"{name}-legacy-output-converted.json"
    return json.loads(converted.read_text()) if converted.exists() else load(name, "legacy-output")


def test_legacy_function_gets_legacy_events_unchanged_and_cloudevents_converted(tmp_path: Path) -> None:
    needs_events()
    args = ("--signature-type", "event")
    with Function(tmp_path, "main.py", "write_legacy_event", *args, signature_type="event") as fn:
        inputs = {name: as_legacy(load(name, "legacy-input")) for name in NAMES}
        check_events(fn, inputs, lambda name, got: legacy_problems(got, load(name, "legacy-output")))
        inputs = {name: as_binary(load(name, "cloudevent-input")) for name in NAMES}
        check_events(fn, inputs, lambda name, got: legacy_problems(got, legacy_expected(name)))
        inputs = {name: as_structured(load(name, "cloudevent-input")) for name in NAMES}
        check_events(fn, inputs, lambda name, got: legacy_problems(got, legacy_expected(name)))


def test_legacy_function_gets_any_other_cloudevent_with_its_own_attributes(tmp_path: Path) -> None:
    event = {"specversion": "1.0", "id": "o-1", "source": "/orders", "type": "com.example.placed",
             "time": "2026-01-02T03:04:05Z", "datacontenttype": "application/json", "data": {"n": 1}}  # fmt: skip
    with Function(tmp_path, "main.py", "write_legacy_event", "--signature-type", "event") as fn:
        assert fn.post(*as_binary(event)).status_code == 204
        assert fn.written() == {
            "data": {"n": 1},
            "context": {"eventId": "o-1", "timestamp": "2026-01-02T03:04:05Z",
                        "eventType": "com.example.placed", "resource": "/orders"},
        }  # fmt: skip


def test_what_is_neither_a_cloudevent_nor_a_legacy_event_is_refused_naming_why(tmp_path: Path) -> None:
    with Function(tmp_path, "main.py", "write_cloud_event_declarative") as fn:
        plain = fn.post(b'{"name": "x"}', {"content-type": "application/json"})
        assert plain.status_code == 400
        assert plain.json()["error"].startswith("not a CloudEvent: no ce-specversion header")
        unknown = fn.post(
            *as_legacy({"eventId": "1", "eventType": "my.own.type", "resource": "r", "data": {}})
        )
        assert unknown.status_code == 400
        assert unknown.json() == {
            "error": "legacy event: no CloudEvent type is known for eventType 'my.own.type'"
        }
        no_domain = load("firebase-db1", "legacy-input") if EVENTS.is_dir() else None
        if no_domain is not None:
            del no_domain["domain"]
            answer = fn.post(*as_legacy(no_domain))
            assert answer.status_code == 400
            assert "needs a 'domain'" in answer.json()["error"]
        assert not fn.output.exists()


# -- ASGI mode (functions_framework.aio, --asgi) ------------------------------------------------------------
def test_asgi_mode_http_functions_get_a_starlette_request(tmp_path: Path) -> None:
    with Function(tmp_path, "async_main.py", "write_http", "--signature-type", "http", "--asgi") as fn:
        assert fn.post(b'{"res": "PASS"}', {"content-type": "application/json"}).status_code == 200
        assert fn.written() == {"res": "PASS"}
    with Function(tmp_path, "async_main.py", "write_http_declarative", "--asgi", signature_type="http") as fn:
        assert fn.post(b'{"res": "PASS"}', {"content-type": "application/json"}).status_code == 200
        assert fn.written() == {"json": {"res": "PASS"}, "request": "starlette.requests"}


@pytest.mark.parametrize(
    ("target", "args"),
    [
        ("write_cloud_event", ("--signature-type", "cloudevent", "--asgi")),
        ("write_cloud_event_declarative", ("--asgi",)),
    ],
)
def test_asgi_mode_cloudevent_functions(tmp_path: Path, target: str, args: tuple[str, ...]) -> None:
    needs_events()
    with Function(tmp_path, "async_main.py", target, *args, signature_type="cloudevent") as fn:
        inputs = {name: as_binary(load(name, "cloudevent-input")) for name in NAMES}
        check_events(fn, inputs, lambda name, got: cloudevent_problems(got, load(name, "cloudevent-input")))


# -- concurrency ------------------------------------------------------------------------------------------
def concurrency(url: str, body: bytes, headers: dict[str, str]) -> tuple[float, float]:
    """(seconds for one request, seconds for ten at once), as client/concurrency.go measures them.

    One client for all (httpx.post builds a client and its TLS context per call, which on a busy machine
    costs the client more than the server's work): the time measured is the server's."""
    statuses: list[int] = []
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=10)) as client:
        assert client.get(url.rstrip("/") + "/health/liveness").is_success  # the client is warm
        started = time.monotonic()
        assert client.post(url, content=body, headers=headers).is_success
        single = time.monotonic() - started

        def one() -> None:
            statuses.append(client.post(url, content=body, headers=headers).status_code)

        workers = [threading.Thread(target=one) for _ in range(10)]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        ten = time.monotonic() - started
    assert len(statuses) == 10
    assert all(200 <= s < 300 for s in statuses), statuses
    return single, ten


CONCURRENT = [
    ("main.py", "write_http_declarative_concurrent", (), as_legacy({"data": "hello"})),
    ("async_main.py", "write_http_declarative_concurrent", ("--asgi",), as_legacy({"data": "hello"})),
    ("main.py", "write_cloud_event_concurrent", (), as_structured(
        {"specversion": "1.0", "type": "t", "source": "/s", "id": "1", "data": {}})),
    ("main.py", "write_legacy_event_concurrent", ("--signature-type", "event"), as_legacy(
        {"eventId": "1", "eventType": "providers/firebase.auth/eventTypes/user.create",
         "resource": "projects/p", "timestamp": "2020-09-29T11:32:00.123Z", "data": {"uid": "u"}})),
]  # fmt: skip


@pytest.mark.parametrize(
    ("source", "target", "args", "request_"), CONCURRENT, ids=lambda v: v if isinstance(v, str) else ""
)
def test_ten_concurrent_requests_take_less_than_twice_one(
    tmp_path: Path, source: str, target: str, args: tuple[str, ...], request_: tuple[bytes, dict[str, str]]
) -> None:
    with Function(tmp_path, source, target, *args, signature_type="http") as fn:
        single, ten = concurrency(fn.url + "/", *request_)
    assert single >= 1.0
    assert ten <= 2 * single, f"10 concurrent requests took {ten:.2f}s, one took {single:.2f}s"
