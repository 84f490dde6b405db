"""The users API (get-user, create-user) through the kfaas runtime against a real MongoDB-wire server."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from tcpproxy import TcpProxy

from kfaas import Context, Settings
from kfaas.runtime.app import FunctionApp
from kfaas.runtime.targets import load_target

pytestmark = pytest.mark.integration

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"


@contextlib.asynccontextmanager
async def running(
    name: str, mongodb_url: str, database: str, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    target = load_target(FUNCTIONS / name / "main.py", "app")
    app = FunctionApp(
        target,
        Context(Settings(function_name=name, mongodb_url=mongodb_url, mongodb_database=database, **settings)),
    )
    await app.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            yield client
    finally:
        await app.shutdown()


@pytest.fixture
async def database(mongodb_url: str) -> AsyncIterator[str]:
    from pymongo import AsyncMongoClient

    name = f"kfaas_users_{uuid.uuid4().hex[:10]}"
    yield name
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
    await client.drop_database(name)
    await client.close()


async def test_create_then_get(mongodb_url: str, database: str) -> None:
    async with (
        running("create-user", mongodb_url, database) as create,
        running("get-user", mongodb_url, database) as get,
    ):
        created = await create.post("/users", json={"email": "Ada@Example.com", "name": "Ada Lovelace"})
        assert created.status_code == 201
        body = created.json()
        assert body["email"] == "ada@example.com"
        assert created.headers["location"] == f"/users/{body['id']}"

        fetched = await get.get(created.headers["location"])
        assert fetched.status_code == 200
        assert fetched.json() == {"id": body["id"], "email": "ada@example.com", "name": "Ada Lovelace"}


async def test_unknown_and_malformed_ids(mongodb_url: str, database: str) -> None:
    async with running("get-user", mongodb_url, database) as get:
        missing = await get.get("/users/0123456789abcdef01234567")
        malformed = await get.get("/users/not-an-id")
    assert missing.status_code == 404
    assert missing.json() == {"error": "User not found"}
    assert malformed.status_code == 400
    assert "malformed user id" in malformed.json()["error"]


async def test_duplicate_email_is_409(mongodb_url: str, database: str) -> None:
    async with running("create-user", mongodb_url, database) as create:
        first = await create.post("/users", json={"email": "bob@example.com", "name": "Bob"})
        again = await create.post("/users", json={"email": "BOB@example.com", "name": "Robert"})
    assert first.status_code == 201
    assert again.status_code == 409
    assert "already exists" in again.json()["error"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "No Email"}, "email"),
        ({"email": "not-an-email", "name": "X"}, "email"),
        ({"email": "a@example.com", "name": ""}, "name"),
        ({"email": "a@example.com", "name": "X", "$where": "sleep(1000)"}, "$where"),
        ({"email": "a@example.com", "name": "X", "profile.admin": True}, "profile.admin"),
        ({"email": {"$ne": None}, "name": "X"}, "email"),
    ],
)
async def test_invalid_bodies_are_400_naming_the_field(
    mongodb_url: str, database: str, payload: dict[str, Any], field: str
) -> None:
    async with running("create-user", mongodb_url, database) as create:
        response = await create.post("/users", json=payload)
    assert response.status_code == 400
    assert field in [f["field"] for f in response.json()["fields"]]


async def test_not_json_is_400(mongodb_url: str, database: str) -> None:
    async with running("create-user", mongodb_url, database) as create:
        response = await create.post("/users", content=b"{oops", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "invalid request" in response.json()["error"]


async def test_cors_as_the_seed_api(mongodb_url: str, database: str) -> None:
    async with running("get-user", mongodb_url, database) as get:
        preflight = await get.options(
            "/users/0123456789abcdef01234567",
            headers={"origin": "https://app.example", "access-control-request-method": "GET"},
        )
        simple = await get.get("/users/0123456789abcdef01234567", headers={"origin": "https://app.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert simple.headers["access-control-allow-origin"] == "*"


async def test_mongodb_outage_is_a_bounded_503_and_the_function_recovers(
    mongodb_url: str, database: str
) -> None:
    parts = urlsplit(mongodb_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 27017)
    await proxy.start()
    netloc = parts.netloc.rsplit("@", 1)
    via_proxy = urlunsplit(
        parts._replace(netloc=(f"{netloc[0]}@" if len(netloc) == 2 else "") + f"127.0.0.1:{proxy.port}")
    )
    via_proxy += ("&" if "?" in via_proxy else "?") + "directConnection=true"
    try:
        async with (
            running("create-user", via_proxy, database, mongodb_timeout_ms=500) as create,
            running("get-user", via_proxy, database, mongodb_timeout_ms=500) as get,
        ):
            created = await create.post("/users", json={"email": "cy@example.com", "name": "Cy"})
            assert created.status_code == 201
            location = created.headers["location"]

            await proxy.stop()  # MongoDB is gone for these functions
            started = time.monotonic()
            down = await get.get(location)
            elapsed = time.monotonic() - started
            assert down.status_code == 503
            assert down.headers["retry-after"] == "1"
            assert "did not answer" in down.json()["error"]
            assert elapsed < 5, f"503 took {elapsed:.1f}s"
            write_down = await create.post("/users", json={"email": "dee@example.com", "name": "Dee"})
            assert write_down.status_code == 503

            await proxy.start()  # same port: MongoDB is back
            deadline = time.monotonic() + 15
            while True:
                back = await get.get(location)
                if back.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert back.status_code == 200, back.text
            assert back.json()["email"] == "cy@example.com"
    finally:
        await proxy.stop()
