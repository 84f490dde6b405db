"""Opening aio-pika's robust connection without leaving a half-made one behind.

``aio_pika.connect_robust`` builds the connection object, then awaits its first connect. When that connect
fails (RabbitMQ refuses, the URL is wrong) or is cancelled (a readiness check's timeout), the object is
dropped unclosed: its ``__del__`` later calls ``asyncio.ensure_future(self.close())``, and when the cyclic
garbage collector runs it in a thread without an event loop (``asyncio.to_thread``, an SMTP thread), that
raises, the ``close()`` coroutine is never awaited and Python reports it. :func:`connect_robust` closes the
object itself on every failure, so nothing is left for the collector.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

__all__ = ["connect_robust"]


async def connect_robust(
    url: str, *, timeout: float | None = None, client_properties: dict[str, Any] | None = None
) -> AbstractRobustConnection:
    """A connected :class:`aio_pika.RobustConnection`; on any failure or cancellation it is closed first."""
    from aio_pika import RobustConnection
    from aio_pika.connection import make_url

    connection = RobustConnection(make_url(url), client_properties=client_properties)
    try:
        await connection.connect(timeout=timeout)
    except BaseException:
        await connection.close()
        raise
    return connection
