"""The gateway against real upstream HTTP servers on 127.0.0.1 (granian), driven through its ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kfaas.base.server import serve_embedded
from kfaas.dev.smtp import free_port
from kfaas.gateway import Gateway, build, routes_of
from kfaas.spec import AppSpec, FunctionSpec


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """An upstream that answers with what it received; /slow sleeps, and it sets its own CORS header."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if b"slow=1" in scope["query_string"]:
        await asyncio.sleep(3)
    payload = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        "body": body.decode(),
    }
    headers = [
        (b"content-type", b"application/json"),
        (b"access-control-allow-origin", b"*"),
        (b"location", b"/users/1"),
        (b"x-upstream", b"yes"),
    ]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    port = free_port()
    task = asyncio.create_task(serve_embedded(echo, "127.0.0.1", port))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                await client.get(url + "/")
                break
            await asyncio.sleep(0.05)
    yield url
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def app_spec() -> AppSpec:
    return AppSpec(
        root=Path("."),
        functions=[
            FunctionSpec(
                name="users",
                kind="http",
                routes=[{"path": "/users/{id}", "methods": ["GET"]}, {"path": "/users", "methods": ["POST"]}],
            ),
            FunctionSpec(name="stats", kind="http", routes=[{"path": "/users/stats"}], timeout=1),
            FunctionSpec(name="down", kind="http", routes=[{"path": "/down", "methods": ["GET"]}]),
            FunctionSpec(name="worker", kind="cloudevent"),
        ],
    )


@pytest.fixture
async def gateway(upstream: str) -> AsyncIterator[Gateway]:
    urls = {"users": upstream, "stats": upstream, "down": f"http://127.0.0.1:{free_port()}"}
    gw = build(app_spec(), urls, "http://{name}.invalid:8080", "*")
    await gw.start()
    yield gw
    await gw.close()


def client(gw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=gw), base_url="http://api.test")


async def test_routes_are_proxied_with_path_query_body_and_headers(gateway: Gateway) -> None:
    async with client(gateway) as c:
        got = await c.get("/users/42?x=1&y=%20", headers={"X-Request-Id": "r1", "Origin": "http://ui"})
        posted = await c.post("/users", json={"email": "a@b"})

    assert got.status_code == 201
    seen = got.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/users/42", "x=1&y=%20")
    assert seen["headers"]["x-request-id"] == "r1"
    assert seen["headers"]["x-forwarded-host"] == "api.test"
    assert got.headers["x-upstream"] == "yes"
    assert got.headers["location"] == "/users/1"
    # the function's own CORS header is replaced by the gateway's, not doubled
    assert got.headers.get_list("access-control-allow-origin") == ["*"]
    assert posted.json()["body"] == '{"email":"a@b"}'


async def test_literal_route_wins_over_template(gateway: Gateway) -> None:
    route, _ = gateway.match("GET", "/users/stats")
    assert route is not None
    assert route.function == "stats"
    route, _ = gateway.match("GET", "/users/7")
    assert route is not None
    assert route.function == "users"


async def test_unknown_route_is_404_json_and_wrong_method_405(gateway: Gateway) -> None:
    async with client(gateway) as c:
        missing = await c.get("/nothing")
        wrong = await c.delete("/users/1")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no route for GET /nothing"}
    assert missing.headers["access-control-allow-origin"] == "*"
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, HEAD"


async def test_preflight_is_answered_by_the_gateway(gateway: Gateway) -> None:
    async with client(gateway) as c:
        response = await c.options(
            "/users",
            headers={
                "Origin": "http://ui",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type"


async def test_listed_origins_are_echoed_and_others_get_no_cors(upstream: str) -> None:
    gw = build(app_spec(), {"users": upstream}, "http://{name}:8080", "http://ui,http://admin")
    async with client(gw) as c:
        allowed = await c.get("/users/1", headers={"Origin": "http://admin"})
        other = await c.get("/users/1", headers={"Origin": "http://evil"})
    await gw.close()
    assert allowed.headers["access-control-allow-origin"] == "http://admin"
    assert "access-control-allow-origin" not in other.headers


async def test_function_down_is_502_and_slow_is_504(gateway: Gateway) -> None:
    async with client(gateway) as c:
        down = await c.get("/down")
        started = asyncio.get_running_loop().time()
        slow = await c.get("/users/stats?slow=1")  # stats has timeout: 1 in its description
        waited = asyncio.get_running_loop().time() - started
    assert down.status_code == 502
    assert down.json() == {"error": "function down is not reachable"}
    assert slow.status_code == 504
    assert slow.json() == {"error": "function stats did not answer within 1s"}
    assert 0.9 < waited < 2.5


def test_the_same_route_declared_by_two_functions_is_refused() -> None:
    spec = AppSpec(
        root=Path("."),
        functions=[
            FunctionSpec(name="a", kind="http", routes=[{"path": "/x/{id}"}]),
            FunctionSpec(name="b", kind="http", routes=[{"path": "/x/{key}"}]),
        ],
    )
    with pytest.raises(ValueError, match="declared by both a and b"):
        routes_of(spec)


def test_routes_of_the_application_functions() -> None:
    from kfaas.spec import load_app

    app = load_app(Path(__file__).resolve().parents[2] / "functions")
    table = {(r.template, m): r.function for r in routes_of(app) for m in r.methods}
    assert table[("/orders", "POST")] == "place-order"
    assert table[("/orders/{id}", "GET")] == "get-order"
    assert all(fn.kind == "http" for fn in app.functions if fn.name in table.values())
