"""``kfaas gateway`` as a process in front of ``kfaas serve`` processes: the merged OpenAPI document, ``/docs``,
what happens when a function is down, and the request limits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rawhttp import KfaasProcess, exchange, free_port, request

SAMPLES = Path(__file__).resolve().parents[1] / "test_functions"
DESCRIPTIONS = {
    "things-a": (
        "openapi_a",
        "routes:\n  - {path: /things, methods: [POST]}\n  - {path: '/things/{id}', methods: [GET]}\n",
    ),
    "things-b": ("openapi_b", "routes:\n  - {path: '/things/{id}', methods: [DELETE]}\n"),
    "gone": ("openapi_b", "routes:\n  - {path: /gone, methods: [GET, POST]}\n"),
}


@pytest.fixture(scope="module")
def functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gateway") / "functions"
    for name, (sample, routes) in DESCRIPTIONS.items():
        folder = root / name
        folder.mkdir(parents=True)
        shutil.copy(SAMPLES / sample / "main.py", folder / "main.py")
        (folder / "function.yaml").write_text(f"kind: http\ntarget: app\n{routes}")
    return root


def serve(functions: Path, name: str, port: int | None = None) -> KfaasProcess:
    args = ["serve", "--source", str(functions / name / "main.py"), "--host", "127.0.0.1", "--port", "{port}"]
    process = KfaasProcess(args, env={"KFAAS_FUNCTION": name})
    if port is not None:
        process.port = port
    return process


@pytest.fixture(scope="module")
def stack(functions: Path) -> Iterator[dict[str, Any]]:
    a, b = serve(functions, "things-a").start(), serve(functions, "things-b").start()
    gone_port = free_port()
    args = ["gateway", "--functions", str(functions), "--host", "127.0.0.1", "--port", "{port}"]
    args += [
        "--url",
        f"things-a={a.url}",
        "--url",
        f"things-b={b.url}",
        "--url",
        f"gone=http://127.0.0.1:{gone_port}",
    ]
    args += ["--openapi-ttl", "1", "--swagger-ui", "https://assets.example/swagger-ui-dist@5.17.14"]
    gateway = KfaasProcess(args, env={"KFAAS_BODY_TIMEOUT": "1"}).start()
    try:
        yield {"gateway": gateway, "gone_port": gone_port, "functions": functions}
    finally:
        for process in (gateway, a, b):
            process.stop()


def document(stack: dict[str, Any]) -> dict[str, Any]:
    response = httpx.get(stack["gateway"].url + "/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()  # type: ignore[no-any-return]


def test_the_document_holds_each_routed_operation_as_the_gateway_routes_it(stack: dict[str, Any]) -> None:
    doc = document(stack)
    assert doc["openapi"] == "3.1.0"
    # one spelling per path: things-b's DELETE /things/{id} joins things-a's /things/{thing_id}
    assert set(doc["paths"]) == {"/things", "/things/{thing_id}", "/gone"}
    assert set(doc["paths"]["/things/{thing_id}"]) == {"get", "delete"}
    delete = doc["paths"]["/things/{thing_id}"]["delete"]
    assert [p["name"] for p in delete["parameters"] if p["in"] == "path"] == ["thing_id"]
    assert delete["tags"] == ["things-b"]
    assert "/internal" not in doc["paths"]  # things-b serves it, the gateway does not route it
    # every operation declares the gateway's own answers, with their schema
    for item in doc["paths"].values():
        for operation in item.values():
            assert {"408", "413", "431", "502", "504"} <= set(operation["responses"])
    assert doc["x-kfaas"]["functions"]["things-a"] == "ok"
    assert doc["x-kfaas"]["functions"]["things-b"] == "ok"


def test_components_that_clash_are_renamed_not_overwritten(stack: dict[str, Any]) -> None:
    doc = document(stack)
    schemas = doc["components"]["schemas"]
    # the same definition in both documents is kept once; different ones under the function's name
    assert "Note" in schemas
    assert "Error" in schemas
    assert "Thing" not in schemas
    assert set(schemas["things-a.Thing"]["properties"]) == {"id", "colour", "note"}
    assert set(schemas["things-b.Thing"]["properties"]) == {"id", "weight", "note"}
    post = doc["paths"]["/things"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/things-a.Thing"
    }
    delete = doc["paths"]["/things/{thing_id}"]["delete"]
    assert delete["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/things-b.Thing"
    }
    assert doc["x-kfaas"]["renamed"] == {
        "things-a: #/components/schemas/Thing": "#/components/schemas/things-a.Thing",
        "things-b: #/components/schemas/Thing": "#/components/schemas/things-b.Thing",
    }
    refs = {m for m in json.dumps(doc).split('"') if m.startswith("#/components/")}
    for ref in refs:  # every reference resolves
        kind, name = ref.split("/")[2:4]
        assert name in doc["components"][kind], ref


def test_a_function_that_is_down_keeps_its_routes_and_says_why_until_it_is_back(
    stack: dict[str, Any],
) -> None:
    doc = document(stack)
    assert doc["x-kfaas"]["functions"]["gone"].startswith("unavailable: ")
    stub = doc["paths"]["/gone"]["get"]
    assert "Its OpenAPI document is missing here: unavailable: " in stub["description"]
    assert set(doc["paths"]["/gone"]) == {"get", "post"}
    gone = serve(stack["functions"], "gone", port=stack["gone_port"]).start()
    try:
        deadline = time.monotonic() + 10
        while document(stack)["x-kfaas"]["functions"]["gone"] != "ok":
            assert time.monotonic() < deadline, (
                "the document of a function that came back was not fetched again"
            )
            time.sleep(0.3)
    finally:
        gone.stop()


def test_docs_is_swagger_ui_on_the_merged_document(stack: dict[str, Any]) -> None:
    response = httpx.get(stack["gateway"].url + "/docs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert "url: '/openapi.json'" in page
    assert (
        '<script src="https://assets.example/swagger-ui-dist@5.17.14/swagger-ui-bundle.js"></script>' in page
    )
    assert 'href="https://assets.example/swagger-ui-dist@5.17.14/swagger-ui.css"' in page
    refused = httpx.post(stack["gateway"].url + "/openapi.json")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
    assert refused.json() == {"error": "method POST not allowed on /openapi.json"}


def test_the_gateway_has_the_runtime_s_limits(stack: dict[str, Any]) -> None:
    port = stack["gateway"].port
    announced = exchange(
        port, request("POST", "/things", [("content-type", "application/json")], b"{}", length=20_000_000)
    )
    assert announced.status == 413
    assert announced.json() == {
        "error": "request body too large: Content-Length 20000000, at most 10485760 bytes are accepted"
    }
    stalled = exchange(
        port, request("POST", "/things", [("content-type", "application/json")], b"{", length=100)
    )
    assert stalled.status == 408
    assert stalled.json() == {"error": "the request body did not arrive within 1s"}
    # room is left for what the gateway adds when it forwards: the function never refuses those
    many = exchange(port, request("GET", "/things/1", [(f"x-h{i}", "v") for i in range(60)]))
    assert many.status == 431
    assert many.json() == {"error": "too many header fields: 61, at most 56 are accepted"}
    fits = exchange(port, request("GET", "/things/1", [(f"x-h{i}", "v") for i in range(54)]))
    assert fits.status == 200


def test_a_route_on_a_path_the_gateway_serves_itself_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "functions" / "docs"
    folder.mkdir(parents=True)
    (folder / "main.py").write_text("def app(request):\n    return 'hi'\n")
    (folder / "function.yaml").write_text(
        "kind: http\ntarget: app\nroutes:\n  - {path: /docs, methods: [GET]}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "kfaas", "gateway", "--functions", str(tmp_path / "functions"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "docs declares /docs, which the gateway serves itself" in done.stderr
