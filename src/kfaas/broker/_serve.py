"""Serve the broker's ingress with granian's embedded server, in the running event loop."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kfaas.broker._broker import DevBroker

__all__ = ["serve_asgi", "serve_ingress"]


async def serve_ingress(broker: DevBroker, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve ``broker.ingress`` on host:port until this coroutine is cancelled.

    The ingress must run in the broker's event loop (it publishes on the broker's connection), which is
    what granian's embedded server does; its HTTP parsing stays in Rust. It is served through RSGI,
    granian's own interface, which costs less per request than ASGI's receive/send messages.
    """
    await _serve(broker.ingress, host, port, rsgi=True)


async def serve_asgi(app: Any, host: str, port: int) -> None:
    """Serve any ASGI app (without lifespan) on host:port until cancelled."""
    await _serve(app, host, port, rsgi=False)


async def _serve(app: Any, host: str, port: int, *, rsgi: bool) -> None:
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
