"""The runtime's HTTP contract, in process: CloudEvents in every mode, replies, errors, health and logs."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.conversion import to_structured
from cloudevents.http import CloudEvent, from_http

from kfaas import Context, Settings
from kfaas.runtime.app import FunctionApp
from kfaas.runtime.log import RequestLog
from kfaas.runtime.targets import load_target

SAMPLES = Path(__file__).resolve().parents[1] / "test_functions"

BINARY = {
    "ce-id": "e-1",
    "ce-source": "/tests",
    "ce-type": "com.example.test",
    "ce-specversion": "1.0",
    "content-type": "application/json",
}

Client = Callable[..., Any]


@pytest.fixture
def serve() -> Callable[..., Any]:
    """``async with serve(scenario, target) as (client, log_stream, app)`` runs a FunctionApp in process."""
    import contextlib

    @contextlib.asynccontextmanager
    async def run(
        scenario: str, target: str, **settings: Any
    ) -> AsyncIterator[tuple[httpx.AsyncClient, io.StringIO, FunctionApp]]:
        loaded = load_target(SAMPLES / scenario / "main.py", target)
        stream = io.StringIO()
        app = FunctionApp(
            loaded, Context(Settings(function_name="sample", **settings)), RequestLog("sample", stream)
        )
        await app.startup()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://fn") as client:
                yield client, stream, app
        finally:
            await app.shutdown()

    return run


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_binary_event_reaches_the_function_and_is_logged(serve: Any) -> None:
    async with serve("cloudevents", "record") as (client, stream, app):
        response = await client.post(
            "/", headers={**BINARY, "traceparent": "00-abc-def-01"}, content=b'{"n": 1}'
        )
        assert response.status_code == 204
        assert response.content == b""
        assert app.target.func.__globals__["SEEN"][-1] == "e-1"
    (line,) = log_lines(stream)
    assert line["method"] == "POST"
    assert line["path"] == "/"
    assert line["status"] == 204
    assert line["ce_id"] == "e-1"
    assert line["ce_type"] == "com.example.test"
    assert line["ce_source"] == "/tests"
    assert line["traceparent"] == "00-abc-def-01"
    assert line["duration_ms"] >= 0


async def test_structured_event_is_accepted(serve: Any) -> None:
    event = CloudEvent({"id": "s-1", "type": "com.example.structured", "source": "/tests"}, {"x": 1})
    headers, body = to_structured(event)
    async with serve("cloudevents", "record") as (client, _, app):
        response = await client.post("/", headers=headers, content=body)
        assert response.status_code == 204
        assert app.target.func.__globals__["SEEN"][-1] == "s-1"


async def test_batch_delivers_every_event_in_order(serve: Any) -> None:
    batch = [
        {
            "specversion": "1.0",
            "id": f"b-{i}",
            "source": "/tests",
            "type": "com.example.batch",
            "data": {"i": i},
        }
        for i in range(3)
    ]
    async with serve("cloudevents", "record") as (client, _, app):
        response = await client.post(
            "/", headers={"content-type": "application/cloudevents-batch+json"}, content=json.dumps(batch)
        )
        assert response.status_code == 204
        assert app.target.func.__globals__["SEEN"][-3:] == ["b-0", "b-1", "b-2"]


@pytest.mark.parametrize(
    ("headers", "body", "problem"),
    [
        ({k: v for k, v in BINARY.items() if k != "ce-id"}, b"{}", "missing required header(s): ce-id"),
        ({k: v for k, v in BINARY.items() if k not in ("ce-type", "ce-source")}, b"{}", "ce-source, ce-type"),
        ({**BINARY, "ce-specversion": "9.9"}, b"{}", "unknown specversion '9.9'"),
        ({"content-type": "text/plain"}, b"hello", "no ce-specversion header and content type 'text/plain'"),
        (
            {"content-type": "application/cloudevents+json"},
            b"{not json",
            "structured CloudEvent is not valid JSON",
        ),
        (
            {"content-type": "application/cloudevents+json"},
            json.dumps({"specversion": "1.0", "type": "t", "source": "/s"}).encode(),
            "structured CloudEvent: missing required attribute(s): id",
        ),
        ({"content-type": "application/cloudevents-batch+json"}, b'{"a": 1}', "must be a JSON array"),
        (
            {"content-type": "application/cloudevents-batch+json"},
            json.dumps(
                [{"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, {"id": "2"}]
            ).encode(),
            "batch[1]: missing required attribute(s): source, specversion, type",
        ),
    ],
)
async def test_invalid_events_get_400_naming_the_problem(
    serve: Any, headers: dict[str, str], body: bytes, problem: str
) -> None:
    async with serve("cloudevents", "record") as (client, stream, _):
        response = await client.post("/", headers=headers, content=body)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert problem in response.json()["error"]
    assert log_lines(stream)[0]["status"] == 400


async def test_returned_cloudevent_is_the_binary_mode_reply(serve: Any) -> None:
    async with serve("cloudevents", "reply") as (client, _, _app):
        response = await client.post("/", headers=BINARY, content=b'{"n": 7}')
    assert response.status_code == 200
    assert response.headers["ce-type"] == "com.example.replied"
    assert response.headers["ce-source"] == "/tests/reply"
    assert response.headers["ce-id"]
    reply = from_http(dict(response.headers), response.content)
    assert reply.data == {"echo": {"n": 7}}


async def test_sync_function_reply(serve: Any) -> None:
    async with serve("cloudevents", "sync_reply") as (client, _, _app):
        response = await client.post("/", headers=BINARY, content=b"{}")
    assert response.status_code == 200
    assert from_http(dict(response.headers), response.content).data == {"id": "e-1"}


async def test_handler_exception_is_500_json_without_the_trace(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="kfaas.serve"):
        async with serve("cloudevents", "explode") as (client, _, _app):
            response = await client.post("/", headers=BINARY, content=b"{}")
    assert response.status_code == 500
    assert response.json() == {"error": "the function failed (RuntimeError); see its log", "id": "e-1"}
    assert "secret internal detail" not in response.text
    assert any("secret internal detail" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_refused_event_is_422_with_the_reason(serve: Any) -> None:
    async with serve("cloudevents", "refuse") as (client, _, _app):
        response = await client.post("/", headers=BINARY, content=b"{}")
    assert response.status_code == 422
    assert response.json()["error"] == "order total does not match its items"


async def test_unavailable_service_is_503(serve: Any) -> None:
    async with serve("cloudevents", "unavailable") as (client, _, _app):
        response = await client.post("/", headers=BINARY, content=b"{}")
    assert response.status_code == 503
    assert "database did not answer" in response.json()["error"]


async def test_non_event_return_is_a_500_explained_in_the_log(serve: Any) -> None:
    async with serve("cloudevents", "wrong_return") as (client, _, _app):
        response = await client.post("/", headers=BINARY, content=b"{}")
    assert response.status_code == 500
    assert "other than None or a CloudEvent" in response.json()["error"]


async def test_routes_and_methods_of_a_cloudevent_function(serve: Any) -> None:
    async with serve("cloudevents", "record") as (client, _, _app):
        not_found = await client.post("/elsewhere", headers=BINARY, content=b"{}")
        wrong_method = await client.get("/")
    assert not_found.status_code == 404
    assert "CloudEvents go to POST /" in not_found.json()["error"]
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"


async def test_health_endpoints(serve: Any) -> None:
    async with serve("cloudevents", "record") as (client, _, app):
        live = await client.get("/health/liveness")
        ready = await client.get("/health/readiness")
        assert live.status_code == 200
        assert live.json() == {"status": "alive"}
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}  # no backing service configured, nothing to check
        app.draining = True
        draining = await client.get("/health/readiness")
    assert draining.status_code == 503
    assert draining.json() == {"status": "draining"}


async def test_readiness_fails_when_a_configured_service_does_not_answer(serve: Any) -> None:
    # a port nothing listens on: MongoDB is configured but absent
    url = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200"
    async with serve("cloudevents", "record", mongodb_url=url, ready_timeout=0.5) as (client, _, _app):
        response = await client.get("/health/readiness")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["mongodb"].startswith("error:")


async def test_functions_framework_code_runs_unchanged(serve: Any) -> None:
    async with serve("ff_style", "handle") as (client, _, app):
        assert app.target.signature_type == "cloudevent"
        response = await client.post("/", headers=BINARY, content=b"{}")
        assert response.status_code == 204
        assert app.target.func.__wrapped__.__globals__["RECEIVED"][-1] == "com.example.test"
    async with serve("ff_style", "handle_async") as (client, _, app):
        assert app.target.is_async
        response = await client.post("/", headers=BINARY, content=b"{}")
        assert response.status_code == 204
        assert app.target.func.__wrapped__.__globals__["RECEIVED"][-1] == ("async", "e-1")


async def test_functions_framework_aio_http(serve: Any) -> None:
    async with serve("ff_aio", "hello") as (client, stream, app):
        assert app.target.signature_type == "http"
        response = await client.get("/anything", params={"name": "kfaas"})
    assert response.status_code == 200
    assert response.json() == {"hello": "kfaas"}
    assert log_lines(stream)[0]["path"] == "/anything"


async def test_http_function_reply_shapes(serve: Any) -> None:
    async with serve("http_fn", "text") as (client, _, _app):
        response = await client.get("/", params={"name": "ada"})
        assert (response.status_code, response.text) == (200, "hello ada")
    async with serve("http_fn", "created", port=9999) as (client, _, _app):
        response = await client.post("/")
        assert response.status_code == 201
        assert response.json() == {"settings_port": 9999}
        assert response.headers["x-kind"] == "tuple"
    async with serve("http_fn", "fail") as (client, _, _app):
        response = await client.get("/")
        assert response.status_code == 500
        assert "secret" not in response.text


async def test_asgi_app_gets_the_context_and_its_lifespan_runs(serve: Any) -> None:
    async with serve("asgi_app", "app") as (client, stream, app):
        assert app.target.signature_type == "asgi"
        started = sys.modules["main"].STARTED
        assert started[-1] == "sample"
        response = await client.get("/things/3")
        assert response.json() == {"n": 3, "function": "sample"}
        invalid = await client.get("/things/x")
        assert invalid.status_code == 400
        assert invalid.json()["fields"][0]["field"] == "n"
        boom = await client.get("/boom")
        assert boom.status_code == 500
        assert "secret" not in boom.text
        preflight = await client.options(
            "/things/3", headers={"origin": "https://example.com", "access-control-request-method": "GET"}
        )
        assert preflight.headers["access-control-allow-origin"] == "*"
    assert started[-1] == "stopped"
    assert [line["status"] for line in log_lines(stream)] == [200, 400, 500, 200]


async def test_functions_framework_flask_http_runs_unchanged(serve: Any) -> None:
    async with serve("ff_flask", "greet") as (client, stream, _app):
        by_json = await client.post("/greet", json={"name": "ada"})
        by_query = await client.get("/", params={"name": "bob"})
        teapot = await client.get("/", params={"name": "teapot"})
    assert by_json.status_code == 200
    assert by_json.json() == {"hello": "ada", "path": "/greet"}
    assert by_query.json() == {"hello": "bob", "path": "/"}
    assert (teapot.status_code, teapot.text) == (418, "short and stout")
    assert [line["status"] for line in log_lines(stream)] == [200, 200, 418]
