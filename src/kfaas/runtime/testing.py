"""A function as ``kfaas serve`` runs it, in the test's own process (``kfaas.testing`` is its public face).

:func:`create_app` takes functions-framework's arguments (``target``, ``source``, ``signature_type``, with
the same environment variables as defaults) and gives the ASGI app ``kfaas serve`` would run, with a
``test_client()`` in the manner of Flask's: ``client.post("/", json=...)`` answers with ``status_code``,
``data``, ``text``, ``json``, ``get_json()`` and ``headers``. Tests written for
``functions_framework.create_app(...).test_client()`` run against kfaas by changing that one import.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["App", "TestClient", "TestResponse", "create_app"]


def create_app(
    target: str | None = None, source: str | None = None, signature_type: str | None = None, **settings: Any
) -> App:
    """Load ``target`` from ``source`` (default ``FUNCTION_TARGET`` / ``FUNCTION_SOURCE``, ``main.py``) and
    return its app. ``settings`` are :class:`kfaas.Settings` fields (``mongodb_url=...``) over the
    environment's."""
    from kfaas.runtime.app import FunctionApp
    from kfaas.runtime.context import Context
    from kfaas.runtime.settings import Settings
    from kfaas.runtime.targets import load_target

    env = Settings.from_env(
        target=target or None, source=source and str(source), signature_type=signature_type, **settings
    )
    if not env.target:
        from kfaas.runtime.targets import LoadError

        raise LoadError("no function target: pass target= or set FUNCTION_TARGET")
    loaded = load_target(env.source, env.target, env.signature_type, asgi=env.asgi, threads=env.threads)
    return App(FunctionApp(loaded, Context(env)))


class App:
    """The ASGI app of one function (``kfaas.runtime.app.FunctionApp``), with a Flask-style test client."""

    def __init__(self, app: Any) -> None:
        self.function_app = app
        self.target = app.target

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.function_app(scope, receive, send)

    def test_client(self) -> TestClient:
        return TestClient(self)


class TestResponse:
    """An answer, read as Flask's test responses are."""

    __test__ = False  # not a pytest test class

    def __init__(self, response: Any) -> None:
        self._response = response
        self.status_code: int = response.status_code
        self.headers = response.headers
        self.data: bytes = response.content

    @property
    def status(self) -> str:
        return f"{self.status_code} {self._response.reason_phrase}"

    @property
    def content_type(self) -> str:
        return str(self.headers.get("content-type", ""))

    @property
    def mimetype(self) -> str:
        return self.content_type.split(";", 1)[0].strip()

    @property
    def text(self) -> str:
        return self.data.decode()

    def get_data(self, as_text: bool = False) -> bytes | str:
        return self.text if as_text else self.data

    def get_json(self, force: bool = False, silent: bool = False) -> Any:
        if not force and not (self.mimetype == "application/json" or self.mimetype.endswith("+json")):
            return None
        try:
            return json.loads(self.data)
        except ValueError:
            if silent:
                return None
            raise

    @property
    def json(self) -> Any:
        return self.get_json()


class TestClient:
    """Requests to the app in this process, through its ASGI interface (httpx), on an event loop of its own
    in a background thread, with the app's start-up before the first and its shutdown at ``close()``. Use
    it as a context manager, or call ``close()``."""

    __test__ = False

    def __init__(self, app: App) -> None:
        import httpx

        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kfaas-test-client", daemon=True)
        self._thread.start()
        self._run(app.function_app.startup())
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://function")
        self._closed = False

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def __enter__(self) -> TestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._client.aclose())
            self._run(self._app.function_app.shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def open(
        self,
        path: str = "/",
        method: str = "GET",
        *,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
        query_string: str | Mapping[str, Any] | None = None,
        content_type: str | None = None,
    ) -> TestResponse:
        fields = dict(headers or {})
        if content_type:
            fields["content-type"] = content_type
        body: dict[str, Any] = {}
        if json is not None:
            body["json"] = json
        elif isinstance(data, str | bytes):
            body["content"] = data
        elif data is not None:
            body["data"] = data
        if isinstance(query_string, str):
            path = f"{path}?{query_string.lstrip('?')}" if query_string else path
            query_string = None
        request = self._client.request(method, path, headers=fields, params=query_string, **body)
        return TestResponse(self._run(request))

    def get(self, path: str = "/", **kwargs: Any) -> TestResponse:
        return self.open(path, "GET", **kwargs)

    def post(self, path: str = "/", **kwargs: Any) -> TestResponse:
        return self.open(path, "POST", **kwargs)

    def put(self, path: str = "/", **kwargs: Any) -> TestResponse:
        return self.open(path, "PUT", **kwargs)

    def patch(self, path: str = "/", **kwargs: Any) -> TestResponse:
        return self.open(path, "PATCH", **kwargs)

    def delete(self, path: str = "/", **kwargs: Any) -> TestResponse:
        return self.open(path, "DELETE", **kwargs)

    def head(self, path: str = "/", **kwargs: Any) -> TestResponse:
        return self.open(path, "HEAD", **kwargs)

    def options(self, path: str = "/", **kwargs: Any) -> TestResponse:
        return self.open(path, "OPTIONS", **kwargs)
