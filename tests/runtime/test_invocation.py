"""Every delivery path runs one invocation bounded by ``KFAAS_TIMEOUT`` (a 504 after it) and ended when its
caller goes away: event functions over RSGI (as ``kfaas serve`` serves them) and ASGI, CloudEvents and legacy
events, and typed functions, each through a real granian server in this process."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kfaas import Context, Settings
from kfaas.base.server import serve_embedded
from kfaas.dev.smtp import free_port
from kfaas.runtime.app import FunctionApp
from kfaas.runtime.log import RequestLog
from kfaas.runtime.targets import load_target

SAMPLES = Path(__file__).resolve().parents[1] / "test_functions"

Served = tuple[str, FunctionApp, io.StringIO]


@pytest.fixture
def served() -> Callable[..., contextlib.AbstractAsyncContextManager[Served]]:
    """``async with served(source, target, rsgi=..., timeout=...) as (url, app, log)``."""

    @contextlib.asynccontextmanager
    async def run(source: str, target: str, *, rsgi: bool, timeout: float) -> AsyncIterator[Served]:
        stream = io.StringIO()
        app = FunctionApp(
            load_target(SAMPLES / source, target),
            Context(Settings(function_name="sample", timeout=timeout)),
            RequestLog("sample", stream),
        )
        await app.startup()
        port = free_port()
        task = asyncio.ensure_future(serve_embedded(app, "127.0.0.1", port, rsgi=rsgi))
        url = f"http://127.0.0.1:{port}/"
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                for _ in range(200):
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(url + "health/liveness")).status_code == 200:
                            break
                    await asyncio.sleep(0.05)
                else:
                    pytest.fail("the server did not answer")
            yield url, app, stream
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await app.shutdown()

    return run


def _binary(event_id: str, seconds: float) -> dict[str, Any]:
    headers = {
        "ce-id": event_id,
        "ce-source": "/tests/invocation",
        "ce-type": "com.example.slow",
        "ce-specversion": "1.0",
        "content-type": "application/json",
    }
    return {"headers": headers, "content": json.dumps({"seconds": seconds})}


def _legacy(event_id: str, seconds: float) -> dict[str, Any]:
    payload = {
        "eventId": event_id,
        "timestamp": "2026-12-02T00:00:00.000Z",
        "eventType": "google.storage.object.finalize",
        "resource": {
            "service": "storage.googleapis.com",
            "name": "projects/_/buckets/b/objects/o",
            "type": "storage#object",
        },
        "data": {"seconds": seconds},
    }
    return {"headers": {"content-type": "application/json"}, "content": json.dumps(payload)}


def _log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def _until_idle(app: FunctionApp, seconds: float) -> None:
    end = time.monotonic() + seconds
    while app.in_flight.count:
        if time.monotonic() > end:
            pytest.fail(
                f"{app.in_flight.count} request(s) still in flight {seconds:g}s after the caller left"
            )
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("rsgi", [True, False], ids=["rsgi", "asgi"])
@pytest.mark.parametrize("request_of", [_binary, _legacy], ids=["cloudevent", "legacy-event"])
@pytest.mark.parametrize("target", ["slow", "blocking"])
async def test_an_event_function_past_its_timeout_is_answered_504(
    served: Any, rsgi: bool, request_of: Callable[[str, float], dict[str, Any]], target: str
) -> None:
    async with served("cloudevents/main.py", target, rsgi=rsgi, timeout=0.5) as (url, _, _stream):
        async with httpx.AsyncClient(timeout=10.0) as client:
            started = time.monotonic()
            answer = await client.post(url, **request_of("e-late", 3))
            took = time.monotonic() - started
            quick = await client.post(url, **request_of("e-quick", 0))
    assert answer.status_code == 504, answer.text
    assert answer.json() == {
        "error": "the function did not finish within its timeout of 0.5s (KFAAS_TIMEOUT)",
        "id": "e-late",
    }
    assert took < 2.5, f"answered after {took:.1f}s"
    assert quick.status_code == 204, quick.text


@pytest.mark.parametrize("rsgi", [True, False], ids=["rsgi", "asgi"])
async def test_an_event_function_whose_caller_went_away_is_cancelled(served: Any, rsgi: bool) -> None:
    """The caller leaves after 0.3 s of a 30 s call: the invocation ends then (nothing is in flight any
    more, the request is logged 499), far before its timeout."""
    async with served("cloudevents/main.py", "slow", rsgi=rsgi, timeout=60) as (url, app, stream):
        async with httpx.AsyncClient(timeout=0.3) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(url, **_binary("e-left", 30))
        await _until_idle(app, 5.0)
        app.request_log.flush()
        lines = _log_lines(stream)
    assert [(line["status"], line.get("ce_id")) for line in lines] == [(499, "e-left")]


@pytest.mark.parametrize("target", ["sleeps", "awaits"])
async def test_a_typed_function_past_its_timeout_is_answered_504(served: Any, target: str) -> None:
    async with served("slow_typed/main.py", target, rsgi=False, timeout=0.5) as (url, _, _stream):
        async with httpx.AsyncClient(timeout=10.0) as client:
            late = await client.post(url, json={"seconds": 3})
            quick = await client.post(url, json={"seconds": 0})
    assert late.status_code == 504, late.text
    assert late.json() == {"error": "the function did not finish within its timeout of 0.5s (KFAAS_TIMEOUT)"}
    assert quick.status_code == 200, quick.text
    assert quick.json() == {"waited": 0.0}


async def test_a_typed_function_whose_caller_went_away_is_cancelled(served: Any) -> None:
    async with served("slow_typed/main.py", "awaits", rsgi=False, timeout=60) as (url, app, stream):
        async with httpx.AsyncClient(timeout=0.3) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(url, json={"seconds": 30})
        await _until_idle(app, 5.0)
        app.request_log.flush()
        lines = _log_lines(stream)
    assert [line["status"] for line in lines] == [499]
