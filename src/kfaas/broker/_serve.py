"""Serve the broker's ingress with granian's embedded server, in the running event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kfaas.base.server import PortClaim, serve_embedded

if TYPE_CHECKING:
    from kfaas.broker._broker import DevBroker

__all__ = ["serve_ingress"]


async def serve_ingress(
    broker: DevBroker, host: str = "127.0.0.1", port: int = 8080, *, claim: PortClaim | None = None
) -> None:
    """Serve ``broker.ingress`` on host:port until this coroutine is cancelled.

    The ingress must run in the broker's event loop (it publishes on the broker's connection), which is
    what granian's embedded server does. It is served through RSGI, granian's own interface, which costs
    less per request than ASGI's receive/send messages. A port in use raises ``PortInUse`` at once;
    ``claim`` is the port claimed earlier (``kfaas.base.server.PortClaim``), so that the caller can refuse
    a taken port before it connects to anything.
    """
    await serve_embedded(broker.ingress, host, port, rsgi=True, claim=claim)
