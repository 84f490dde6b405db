"""Serve an ASGI app with granian in this process, with Knative's shutdown contract.

granian (a Rust HTTP server) was chosen by measurement: see docs/benchmarks.md. It runs embedded in the
current event loop, so there is one process per container and no worker spawn at start-up.

On SIGTERM (or SIGINT): readiness turns 503, requests in flight get up to ``drain_seconds`` to finish, the
server stops accepting, clients are closed in the app's lifespan shutdown, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Protocol

log = logging.getLogger("kfaas.serve")

__all__ = ["DrainableApp", "run", "serve", "serve_embedded"]


class DrainableApp(Protocol):
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...

    async def drain(self, timeout: float) -> bool: ...

    async def shutdown(self) -> None: ...


async def serve(
    app: DrainableApp,
    host: str,
    port: int,
    *,
    drain_seconds: float = 20.0,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT or until ``stop`` is set, then drain and return."""
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    logging.getLogger("granian").setLevel(logging.ERROR)  # "embedded server is experimental" on every start
    server = Server(
        app,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,  # queue-proxy and the broker speak HTTP/1.1 to the container
        websockets=False,
        log_access=False,
        backlog=1024,
        log_enabled=False,  # our JSON logging (kfaas.base.log) is configured instead
    )
    # granian waits this long for open requests when it stops; past it, it gives up on them
    server.workers_kill_timeout = max(1, round(drain_seconds))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def watch() -> None:
        await stop.wait()
        log.info("stopping: no new connections; draining requests in flight (up to %ss)", drain_seconds)
        server.stop()  # type: ignore[no-untyped-call]  # granian closes the listener and lets open requests finish
        await app.drain(drain_seconds)

    serving = asyncio.create_task(server.serve())
    watcher = asyncio.create_task(watch())
    if ready is not None:
        ready.set()
    try:
        await serving
    except (TimeoutError, asyncio.CancelledError):
        log.warning("requests were still open after %ss; stopping anyway", drain_seconds)
        await app.shutdown()  # the lifespan shutdown did not run: close the clients here
    finally:
        watcher.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("stopped")


def run(app: DrainableApp, host: str, port: int, *, drain_seconds: float = 20.0) -> None:
    """Run :func:`serve` on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        asyncio.run(serve(app, host, port, drain_seconds=drain_seconds))
    else:
        uvloop.run(serve(app, host, port, drain_seconds=drain_seconds))


async def serve_embedded(app: Any, host: str, port: int, *, rsgi: bool = False) -> None:
    """Serve ``app`` (ASGI without lifespan, or RSGI) on host:port in the running loop until cancelled.

    For servers that live inside another process's loop (the broker ingress and the gateway of
    ``kfaas dev``): the app shares the caller's connections, and its HTTP parsing stays in Rust.
    """
    from granian.constants import Interfaces
    from granian.server.embed import Server

    logging.getLogger("_granian").setLevel(logging.WARNING)
    server = Server(
        app,
        address=host,
        port=port,
        interface=Interfaces.RSGI if rsgi else Interfaces.ASGINL,
        log_access=False,
        websockets=False,
    )
    task = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.stop()  # type: ignore[no-untyped-call]
        await task
        raise
