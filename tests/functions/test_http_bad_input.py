"""The HTTP functions as ``kfaas serve`` processes on the real MongoDB and RabbitMQ, driven with bad input:
every refusal a 400 naming the field or the problem (never a 500), and documents that declare every answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rawhttp import KfaasProcess

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HTTP_FUNCTIONS = ("create-user", "get-user", "place-order", "get-order")
ORDER = {"userId": "u-1", "items": [{"sku": "book", "qty": 2, "price": 12.5}], "total": 25.0}


class Functions:
    def __init__(self, processes: dict[str, KfaasProcess], database: str, queue: str) -> None:
        self.processes = processes
        self.database = database
        self.queue = queue

    def url(self, name: str) -> str:
        return self.processes[name].url


@pytest.fixture(scope="module")
async def functions(mongodb_url: str, amqp_url: str) -> AsyncIterator[Functions]:
    run = uuid.uuid4().hex[:10]
    database, queue = f"kfaas_bad_{run}", f"orders-bad-{run}"
    env = {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DATABASE": database,
        "AMQP_URL": amqp_url,
        "ORDERS_QUEUE": queue,
    }
    processes = {}
    try:
        for name in HTTP_FUNCTIONS:
            args = ["serve", "--source", str(ROOT / "functions" / name / "main.py"), "--host", "127.0.0.1"]
            process = KfaasProcess([*args, "--port", "{port}"], env={**env, "KFAAS_FUNCTION": name})
            processes[name] = process.start()
        yield Functions(processes, database, queue)
    finally:
        for process in processes.values():
            process.stop()
        import aio_pika
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
        await client.drop_database(database)
        await client.close()
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            await (await connection.channel()).queue_delete(queue)


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"total": 1e308}, "total", "Input should be less than or equal to 5000000000000"),
        ({"total": False}, "total", "Input should be a valid number, got a boolean (false)"),
        ({"total": "25"}, "total", "Input should be a valid number, got a string"),
        ({"total": 26}, "total", "26.0 differs from the sum of the items, 25.00"),
        ({"items": [{"sku": "a", "qty": 1, "price": True}]}, "items[0].price", "got a boolean (true)"),
        (
            {"items": [{"sku": "a", "qty": True, "price": 1}]},
            "items[0].qty",
            "Input should be a valid integer",
        ),
        (
            {"items": [{"sku": "a", "qty": "2", "price": 1}]},
            "items[0].qty",
            "Input should be a valid integer",
        ),
        ({"items": [{"sku": "a", "qty": 1.5, "price": 1}]}, "items[0].qty", "fractional part"),
        (
            {"items": [{"sku": "a", "qty": 1, "price": 1e308}]},
            "items[0].price",
            "less than or equal to 1000000",
        ),
        ({"userId": 7}, "userId", "Input should be a valid string, got a number"),
    ],
)
async def test_place_order_names_the_field_of_a_bad_number(
    functions: Functions, change: dict[str, Any], field: str, problem: str
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(functions.url("place-order") + "/orders", json={**ORDER, **change})
    assert response.status_code == 400, response.text
    body = response.json()
    assert [f["field"] for f in body["fields"]] == [field]
    assert problem in body["fields"][0]["problem"]
    assert body["error"].startswith(f"invalid request: {field}: ")


async def test_place_order_takes_json_numbers_as_json_schema_does(functions: Functions) -> None:
    order = {**ORDER, "items": [{"sku": "book", "qty": 2.0, "price": 12}], "total": 24}
    async with httpx.AsyncClient() as client:
        response = await client.post(functions.url("place-order") + "/orders", json=order)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == response.json()["statusUrl"]


@pytest.mark.parametrize("name", ["place-order", "create-user"])
@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        (
            {"content-type": "application/json"},
            b'{"email": ',
            "invalid request: body: not valid JSON: Expecting value at character 10",
        ),
        (
            {"content-type": "text/plain"},
            b'{"email": "a@b.co", "name": "A"}',
            "invalid request: body: the body must be JSON sent with Content-Type: application/json; "
            "got Content-Type text/plain",
        ),
        (
            {"content-type": "application/x-www-form-urlencoded"},
            b"email=a%40b.co&name=A",
            "invalid request: body: the body must be JSON sent with Content-Type: application/json; "
            "got Content-Type application/x-www-form-urlencoded",
        ),
        (
            {},
            b'{"email": "a@b.co", "name": "A"}',
            "invalid request: body: the body must be JSON sent with Content-Type: application/json; "
            "got no Content-Type",
        ),
        ({"content-type": "application/json"}, b"", "invalid request: body: the request has no body"),
        (
            {"content-type": "application/json"},
            b"[" * 5000 + b"]" * 5000,
            "invalid request: the JSON body is nested too deeply",
        ),
        (
            {"content-type": "application/json"},
            b'{"email": "\xff"}',
            "invalid request: the body is not valid UTF-8 (JSON must be)",
        ),
    ],
    ids=["not-json", "text-plain", "form", "no-content-type", "empty", "deep", "not-utf8"],
)
async def test_a_body_that_is_not_json_gets_a_message_a_user_can_act_on(
    functions: Functions, name: str, headers: dict[str, str], body: bytes, message: str
) -> None:
    path = "/orders" if name == "place-order" else "/users"
    async with httpx.AsyncClient() as client:
        response = await client.post(functions.url(name) + path, headers=headers, content=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message)


async def test_create_user_validates_what_its_document_says(functions: Functions) -> None:
    url = functions.url("create-user") + "/users"
    async with httpx.AsyncClient() as client:
        spaced = await client.post(url, json={"email": " ada@example.com", "name": "Ada"})
        assert spaced.status_code == 400
        assert spaced.json()["fields"][0]["field"] == "email"
        flag = await client.post(url, json={"email": "ada@example.com", "name": True})
        assert flag.status_code == 400
        assert flag.json()["fields"] == [
            {"field": "name", "problem": "Input should be a valid string, got a boolean (true)"}
        ]
        lone = await client.post(
            url,
            content=b'{"email": "a@b.co", "name": "\\ud800"}',
            headers={"content-type": "application/json"},
        )
        assert lone.status_code == 400  # a lone surrogate can never be stored (BSON is UTF-8)
        created = await client.post(
            url, json={"email": f"Ada.{uuid.uuid4().hex[:6]}@Example.com", "name": "Ada"}
        )
        assert created.status_code == 201
        assert created.json()["email"] == created.json()["email"].lower()


@pytest.mark.parametrize(
    ("name", "path"),
    [("get-user", "/users/not-an-id"), ("get-order", "/orders/$bad"), ("get-order", "/orders/a%0A")],
)
async def test_malformed_ids_are_400(functions: Functions, name: str, path: str) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(functions.url(name) + path)
    assert response.status_code == 400
    assert "malformed" in response.json()["error"]


async def test_each_document_declares_every_answer_with_json(functions: Functions) -> None:
    async with httpx.AsyncClient() as client:
        documents = {
            name: (await client.get(functions.url(name) + "/openapi.json")).json() for name in HTTP_FUNCTIONS
        }
    for name, document in documents.items():
        assert "HTTPValidationError" not in document["components"]["schemas"], name
        for path, item in document["paths"].items():
            for method, operation in item.items():
                responses = operation["responses"]
                assert "422" not in responses, (name, method, path)
                assert {"400", "500", "503"} <= set(responses), (name, method, path)
                for status, response in responses.items():
                    if status[0] in "45":
                        schema = response["content"]["application/json"]["schema"]
                        assert schema == {"$ref": "#/components/schemas/Error"}, (name, path, status)
    assert "404" in documents["get-user"]["paths"]["/users/{user_id}"]["get"]["responses"]
    assert "404" in documents["get-order"]["paths"]["/orders/{order_id}"]["get"]["responses"]
    assert "409" in documents["create-user"]["paths"]["/users"]["post"]["responses"]
    assert "409" in documents["place-order"]["paths"]["/orders"]["post"]["responses"]


def test_an_http_function_failing_with_a_kfaas_error_says_so() -> None:
    source = ROOT / "tests" / "test_functions" / "asgi_app" / "main.py"
    args = ["serve", "--source", str(source), "--target", "app", "--host", "127.0.0.1", "--port", "{port}"]
    with KfaasProcess(args, env={"MONGODB_URL": ""}) as server:
        misconfigured = httpx.get(server.url + "/misconfigured")
        boom = httpx.get(server.url + "/boom")
    assert misconfigured.status_code == 500
    assert misconfigured.json() == {
        "error": "the function failed (ConfigurationError: MongoDB is not configured: set MONGODB_URL); see its log"
    }
    assert boom.json() == {"error": "internal error; see the function's log"}
