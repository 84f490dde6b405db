"""A small keep-alive HTTP/1.1 client for the broker's deliveries (plain http, POST only).

Every delivery is one POST to a function inside the same machine or compose network. A general client
(httpx) spent most of the broker's CPU in its connection pool (bench/broker.py, docs/benchmarks.md); this one
keeps a stack of idle connections per host and does nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["HttpClient", "Response"]

MAX_IDLE = 128  # idle connections kept per host
DRAIN_ABOVE = 64 * 1024  # bytes left in a connection's send buffer before a request waits for them


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class _Closed(ConnectionError):
    """The server closed a reused connection before answering: safe to retry on a new one."""


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    path: bytes
    host_header: bytes


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpClient:
    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[Conn]] = {}
        self._targets: dict[str, _Target] = {}

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"the dev broker delivers over plain http only, not to {url!r}")
            port = parts.port or 80
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            target = _Target(parts.hostname, port, path.encode(), parts.netloc.encode())
            self._targets[url] = target
        return target

    async def post(self, url: str, headers: dict[str, str], body: bytes, timeout: float) -> Response:
        """POST and read the whole answer; raises TimeoutError, or OSError when no answer came."""
        target = self._target(url)
        head = [
            b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n"
            % (target.path, target.host_header, len(body))
        ]
        for name, value in headers.items():
            head.append(b"%s: %s\r\n" % (name.encode("latin-1"), _clean(value)))
        request = b"".join(head) + b"\r\n" + body
        async with asyncio.timeout(timeout):
            while True:
                conn, reused = await self._acquire(target)
                try:
                    response, keep = await self._exchange(conn, request, reused)
                except _Closed:
                    continue  # a stale pooled connection: try the next one (or a new one)
                except BaseException:
                    conn[1].close()
                    raise
                if keep:
                    self._release(target, conn)
                else:
                    conn[1].close()
                return response

    async def _acquire(self, target: _Target) -> tuple[Conn, bool]:
        idle = self._idle.get((target.host, target.port))
        while idle:
            conn = idle.pop()
            if not conn[1].is_closing() and not conn[0].at_eof():
                return conn, True
            conn[1].close()
        reader, writer = await asyncio.open_connection(target.host, target.port)
        return (reader, writer), False

    def _release(self, target: _Target, conn: Conn) -> None:
        idle = self._idle.setdefault((target.host, target.port), [])
        if len(idle) < MAX_IDLE:
            idle.append(conn)
        else:
            conn[1].close()

    @staticmethod
    async def _exchange(conn: Conn, request: bytes, reused: bool) -> tuple[Response, bool]:
        reader, writer = conn
        try:
            writer.write(request)
            if writer.transport.get_write_buffer_size() > DRAIN_ABOVE:  # mostly sent at once: no await
                await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            writer.close()
            if reused and not getattr(exc, "partial", b""):
                raise _Closed from exc
            raise ConnectionError(f"connection closed before an answer: {exc!r}") from exc
        lines = head[:-4].split(b"\r\n")
        status_line = lines[0].split(b" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
            raise ConnectionError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        status = int(status_line[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        keep = headers.get("connection", "").lower() != "close" and status_line[0] != b"HTTP/1.0"
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _chunked(reader)
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = await reader.read()
            keep = False
        return Response(status, headers, body), keep

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        self._idle.clear()


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _clean(value: str) -> bytes:
    """A header value without CR/LF (they would split the request)."""
    return value.replace("\r", " ").replace("\n", " ").encode("utf-8")
