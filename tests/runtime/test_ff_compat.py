"""What functions-framework's users use besides the signature types, under a real ``kfaas serve``: its package
without Flask until code needs it, ``errorhandler``, ``--debug``, ``--dry-run``; and ``kfaas.testing``'s
``create_app`` in process (it is a test client: that is where it runs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rawhttp import KfaasProcess, free_port

SAMPLES = Path(__file__).resolve().parents[1] / "test_functions"
EVENT = {"ce-specversion": "1.0", "ce-id": "c-1", "ce-source": "/tests", "ce-type": "t"}


def serve(scenario: str, target: str, source: str = "main.py", *args: str) -> KfaasProcess:
    path = str(SAMPLES / scenario / source)
    return KfaasProcess(
        ["serve", "--source", path, "--target", target, "--host", "127.0.0.1", "--port", "{port}", *args],
        env={"FUNCTION_SIGNATURE_TYPE": "http"},  # as Cloud Run sets it: the decorators still decide
    )


def reply(server: KfaasProcess, headers: dict[str, str] = EVENT) -> dict[str, object]:
    response = httpx.post(server.url + "/", headers=headers, content=b"", timeout=10)
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


# -- the package without Flask ------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["decorators_only", "aio_decorated"])
def test_decorators_alone_import_no_flask(target: str) -> None:
    with serve("ff_imports", target) as server:
        assert reply(server) == {"loaded": []}


def test_other_names_of_the_package_are_the_package_s_own() -> None:
    with serve("ff_imports", "uses_the_package") as server:
        answer = reply(server)
    assert answer["names"] == {
        "CloudEvent_is_the_sdks": True,
        "has_create_app": True,
        "exceptions": "FunctionsFrameworkException",
        "aio_create_asgi_app": True,
        "flask_request": "Request",
    }
    assert answer["loaded"] == ["flask", "starlette", "werkzeug"]


def test_import_star_gives_the_package_s_names() -> None:
    with serve("ff_imports", "star", "star.py") as server:
        answer = reply(server)
    assert answer == {"names": ["create_app", "errorhandler", "flask", "http", "typed"], "flask": True}


def test_code_importing_flask_itself_gets_flask() -> None:
    with serve("ff_imports", "hello", "own_flask.py") as server:
        response = httpx.get(server.url + "/", params={"name": "ada"}, timeout=10)
        assert response.json() == {"flask_request": True, "name": "ada"}
    with serve("ff_imports", "event", "own_flask.py") as server:
        response = httpx.post(server.url + "/", headers=EVENT, content=b"", timeout=10)
        assert response.status_code == 204


# -- errorhandler -------------------------------------------------------------------------------------------
def test_errorhandler_answers_a_flask_function_s_exception() -> None:
    with serve("ff_errorhandler", "function") as server:
        teapot = httpx.get(server.url + "/", timeout=10)
        assert (teapot.status_code, teapot.text) == (418, "I'm a teapot")
        missing = httpx.get(server.url + "/", params={"key": "k"}, timeout=10)  # KeyError: LookupError's
        assert (missing.status_code, missing.json()) == (404, {"missing": "'k'"})


def test_errorhandler_answers_event_and_typed_functions_and_the_rest_is_kfaas_s_500() -> None:
    with serve("ff_errorhandler", "on_event") as server:
        teapot = httpx.post(server.url + "/", headers=EVENT, content=b"", timeout=10)
        assert (teapot.status_code, teapot.text) == (418, "I'm a teapot")
        lookup = httpx.post(
            server.url + "/", headers={**EVENT, "ce-type": "lookup", "ce-subject": "k"}, timeout=10
        )
        assert (lookup.status_code, lookup.json()) == (404, {"missing": "'k'"})
        other = httpx.post(server.url + "/", headers={**EVENT, "ce-type": "teapot"}, timeout=10)
        assert other.status_code == 500
        assert other.json() == {"error": "the function failed (Teapot); see its log", "id": "c-1"}
    with serve("ff_errorhandler", "typed") as server:
        answer = httpx.post(server.url + "/", json={"value": 0}, timeout=10)
        assert (answer.status_code, answer.text) == (418, "I'm a teapot")
        assert httpx.post(server.url + "/", json={"value": 4}, timeout=10).json() == {"inverse": 0.25}


# -- --dry-run and --debug ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "target", "args", "kind"),
    [
        ("ff_conformance/main.py", "write_http", (), "http (flask)"),
        ("ff_conformance/main.py", "write_http", ("--asgi",), "http (starlette)"),
        ("ff_conformance/main.py", "write_legacy_event", ("--signature-type", "event"), "event"),
        ("ff_conformance/main.py", "typed_conformance_test", (), "typed"),
        ("ff_conformance/async_main.py", "write_http_declarative", (), "http (starlette)"),
        ("http_fn/main.py", "text", ("--signature-type", "cloudevent"), "http (starlette)"),
    ],
)
def test_dry_run_says_what_would_be_served(
    source: str, target: str, args: tuple[str, ...], kind: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kfaas", "serve", "--source", str(SAMPLES / source), "--target", target,
         "--dry-run", *args],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "FUNCTION_SIGNATURE_TYPE": "http"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"would serve {target} ({kind}) from ")


def test_typed_without_an_input_type_is_refused_at_start(tmp_path: Path) -> None:
    source = tmp_path / "main.py"
    source.write_text("def f(x):\n    return x\n")
    done = subprocess.run(
        [sys.executable, "-m", "kfaas", "serve", "--source", str(source), "--target", "f", "--signature-type",
         "typed", "--dry-run"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "a typed function needs an input type with a from_dict method" in done.stderr


def test_debug_restarts_on_a_change_and_answers_with_the_trace(tmp_path: Path) -> None:
    source = tmp_path / "main.py"
    source.write_text(
        "def hello(request):\n    return 'one'\n\ndef fail(request):\n    raise ValueError('x')\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kfaas", "serve", "--source", str(source), "--target", "hello", "--debug",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:

        def answer(expected: str, timeout: float = 30) -> None:
            deadline = time.monotonic() + timeout
            seen = None
            while time.monotonic() < deadline:
                try:
                    seen = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).text
                except httpx.TransportError:
                    seen = None
                if seen == expected:
                    return
                time.sleep(0.1)
            pytest.fail(f"expected {expected!r}, last answer {seen!r}")

        answer("one")
        time.sleep(1.1)  # a new mtime, whatever the file system's resolution
        source.write_text(source.read_text().replace("'one'", "'two'"))
        answer("two")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "restarting" in err
    assert '"level": "debug"' in err.lower() or "debug mode" in err


def test_debug_puts_the_trace_in_a_500() -> None:
    with KfaasProcess(
        ["serve", "--source", str(SAMPLES / "http_fn" / "main.py"), "--target", "fail", "--host", "127.0.0.1",
         "--port", "{port}"],
        env={"DEBUG": "true", "KFAAS_RELOADED_CHILD": "1"},  # the child --debug runs: no reloader here
    ) as server:  # fmt: skip
        response = httpx.get(server.url + "/", timeout=10)
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "the function failed (ValueError); see its log"
    assert "ValueError: secret internal detail" in body["trace"]


# -- kfaas.testing ----------------------------------------------------------------------------------------
def test_create_app_gives_a_flask_style_test_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kfaas.testing import create_app

    output = tmp_path / "out.json"
    monkeypatch.setenv("FF_OUTPUT", str(output))
    source = SAMPLES / "ff_conformance" / "main.py"
    with create_app("write_http_declarative", source).test_client() as client:
        response = client.post("/", json={"res": "PASS"})
        assert (response.status_code, response.data, response.text) == (200, b"OK", "OK")
        assert response.status == "200 OK"
        assert json.loads(output.read_text())["request"] == "flask.wrappers.Request"
    client = create_app("typed_conformance_test", str(source)).test_client()
    try:
        response = client.post("/", data=json.dumps({"message": "hi"}), content_type="application/json")
        assert response.get_json() == {"payload": {"message": "hi"}}
        assert response.json == {"payload": {"message": "hi"}}
        assert response.mimetype == "application/json"
    finally:
        client.close()
    event = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {"a": 1}}
    with create_app("write_cloud_event_declarative", source).test_client() as client:
        response = client.post(
            "/", data=json.dumps(event), headers={"content-type": "application/cloudevents+json"}
        )
        assert response.status_code == 204
        assert json.loads(output.read_text())["data"] == {"a": 1}


def test_a_signature_type_another_package_provides_is_taken_from_the_flag() -> None:
    # kfaas.aws registers `lambda` (entry point group kfaas.signature_types); the flag reaches it as the
    # variable does, beside the types the runtime knows
    done = subprocess.run(
        [sys.executable, "-m", "kfaas", "serve", "--source", str(SAMPLES / "lambda_py" / "app.py"),
         "--signature-type", "lambda", "--dry-run"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("would serve lambda_py (lambda) from ")


def test_an_unknown_signature_type_is_refused_naming_every_known_one() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kfaas", "serve", "--source", str(SAMPLES / "ff_conformance" / "main.py"),
         "--target", "write_http", "--signature-type", "background", "--dry-run"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "'background' is not one of: asgi, cloudevent, event, http, lambda, typed" in done.stderr
