"""The Runtime API as a runtime client sees it, over real TCP: what aws-lambda-go and awslambdaric send.

kfaas's side runs with ``external=True`` (a Lambda image's client, no process started); the test is the
client, writing the raw HTTP/1.1 each real client writes: chunked bodies with a trailer (aws-lambda-go),
Content-Length (awslambdaric), keep-alive between the poll and the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from kfaas.aws._bridge import BridgeInvoker
from kfaas.aws._config import config_from
from kfaas.aws._errors import HandlerError
from kfaas.aws._invoke import Invocation


def _config(tmp_path: Path, port: int) -> Any:
    raw = {
        "kind": "lambda",
        "name": "fn",
        "image": "example/fn:1",
        "timeout": 3,
        "lambda": {"runtimeApiPort": port},
    }
    return config_from(raw, tmp_path, {})


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, dict[str, str], bytes]:
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers, body


async def test_a_client_polls_and_answers_chunked_with_a_trailer_or_with_content_length(
    tmp_path: Path,
) -> None:
    port = _free_port()
    bridge = BridgeInvoker(_config(tmp_path, port), external=True)
    await bridge.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        deadline = int((time.time() + 3) * 1000)
        call = asyncio.create_task(
            bridge.invoke({"n": 1}, Invocation("req-1", deadline, None, {"custom": {"a": "b"}}))
        )
        status, headers, body = await _request(
            reader, writer, b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert status == 200
        assert json.loads(body) == {"n": 1}
        assert headers["lambda-runtime-aws-request-id"] == "req-1"
        assert headers["lambda-runtime-deadline-ms"] == str(deadline)
        assert (
            headers["lambda-runtime-invoked-function-arn"]
            == "arn:aws:lambda:us-east-1:000000000000:function:fn"
        )
        assert headers["lambda-runtime-trace-id"].startswith("Root=1-")
        assert json.loads(headers["lambda-runtime-client-context"]) == {"custom": {"a": "b"}}
        # aws-lambda-go: chunked, with a trailer
        answer = b'{"ok": true}'
        chunked = (
            b"POST /2018-06-01/runtime/invocation/req-1/response HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Trailer: Lambda-Runtime-Function-Error-Type\r\n\r\n"
            + b"%x\r\n%s\r\n" % (len(answer[:5]), answer[:5])
            + b"%x\r\n%s\r\n" % (len(answer[5:]), answer[5:])
            + b"0\r\nLambda-Runtime-Function-Error-Type: \r\n\r\n"
        )
        status, _, body = await _request(reader, writer, chunked)
        assert status == 202
        assert await call == {"ok": True}

        # awslambdaric: Content-Length; the error type is in the JSON body (no header)
        call = asyncio.create_task(bridge.invoke({"n": 2}, Invocation("req-2", deadline)))
        status, headers, _ = await _request(
            reader, writer, b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        error = json.dumps(
            {"errorMessage": "declined", "errorType": "PaymentError", "stackTrace": ["  File x"]}
        ).encode()
        status, _, _ = await _request(
            reader,
            writer,
            b"POST /2018-06-01/runtime/invocation/req-2/error HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(error), error),
        )
        assert status == 202
        with pytest.raises(HandlerError) as failed:
            await call
        assert type(failed.value).__name__ == "PaymentError"
        assert failed.value.error_message == "declined"
        assert failed.value.stack_trace == ["  File x"]

        # an answer for no invocation in progress, and a path the API does not have
        status, _, body = await _request(
            reader,
            writer,
            b"POST /2018-06-01/runtime/invocation/nope/response HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        )
        assert status == 400
        assert json.loads(body)["errorType"] == "InvalidRequestID"
        status, _, _ = await _request(reader, writer, b"GET /2018-06-01/other HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404
        status, _, _ = await _request(
            reader,
            writer,
            b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\nContent-Length: 49\r\n\r\n"
            b'{"errorMessage":"no config","errorType":"Config"}',
        )
        assert status == 202
        writer.close()
    finally:
        await bridge.stop()


async def test_an_image_client_that_never_answers_times_out(tmp_path: Path) -> None:
    port = _free_port()
    bridge = BridgeInvoker(_config(tmp_path, port), external=True)
    await bridge.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        call = asyncio.create_task(bridge.invoke({}, Invocation("req-3", int((time.time() + 0.5) * 1000))))
        status, _, _ = await _request(
            reader, writer, b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert status == 200
        with pytest.raises(HandlerError) as failed:
            await call
        assert type(failed.value).__name__ == "Sandbox.Timedout"
        writer.close()
    finally:
        await bridge.stop()
