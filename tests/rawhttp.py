"""Real server processes and raw HTTP/1.1 for the tests of bad input.

``exchange`` writes bytes no well-behaved client would send (invalid UTF-8 in a header, a body that stops
half-way, a Content-Length larger than what follows) and reads the answer as it comes off the socket, so a
test sees exactly what a client sees: status, header fields and body, even when the server answers before
the request is complete. ``KfaasProcess`` runs a ``kfaas`` command as a child process on a free port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Answer:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    seconds: float = 0.0

    def json(self) -> Any:
        assert self.headers.get("content-type") == "application/json", (self.headers, self.body[:200])
        return json.loads(self.body)


def request(
    method: str,
    path: str,
    headers: list[tuple[str, str | bytes]],
    body: bytes = b"",
    *,
    length: int | None = None,
) -> bytes:
    """The bytes of one request; ``length`` overrides the Content-Length (a body that falls short of it)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"host: 127.0.0.1"]
    for name, value in headers:
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
    if length is not None or body:
        lines.append(f"content-length: {len(body) if length is None else length}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exchange(port: int, data: bytes, *, timeout: float = 15.0, then: bytes = b"") -> Answer:
    """Send ``data``, read the answer (until its Content-Length, or until the server closes)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if then:
                sock.sendall(then)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before it took everything: read what it said
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        _, status, *reason = status_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "-1"))
        while length < 0 or len(body) < length:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            body += chunk
    return Answer(int(status), reason[0] if reason else "", headers, body, time.monotonic() - started)


@dataclass
class KfaasProcess:
    """``python -m kfaas ARGS`` on ``port``; ``ready_path`` must answer 200 before a test uses it."""

    args: list[str]
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/health/liveness"
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> KfaasProcess:
        args = [arg.replace("{port}", str(self.port)) for arg in self.args]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kfaas", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _, err = self.process.communicate()
                pytest.fail(f"kfaas {' '.join(args)} exited {self.process.returncode}: {err[-3000:]}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"kfaas {' '.join(args)} did not answer {self.ready_path} within {timeout:g}s")

    def stop(self) -> tuple[str, str]:
        if self.process is None:
            return "", ""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        return out, err

    def __enter__(self) -> KfaasProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
