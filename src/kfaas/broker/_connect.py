"""The broker's one RabbitMQ connection, opened once at start with an error that names the URL."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kfaas.base.amqp import connect_robust
from kfaas.base.urls import redact

if TYPE_CHECKING:
    from aio_pika.abc import AbstractRobustConnection

__all__ = ["CONNECT_TIMEOUT", "RabbitMQUnreachable", "connect", "describe_failure"]

CONNECT_TIMEOUT = 10.0  # seconds: a refused port fails at once, a host that drops packets within this


class RabbitMQUnreachable(ConnectionError):
    """The first connection failed; the message names the URL (password hidden) and why."""


def describe_failure(exc: BaseException) -> str:
    """Why a connection attempt failed, in words a user can act on."""
    import aiormq

    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g}s"
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return f"login refused: wrong user or password ({exc})"
    if isinstance(exc, aiormq.exceptions.ProtocolSyntaxError):
        # RabbitMQ answers Connection.Open with Connection.Close when the vhost does not exist or the user
        # may not use it; aiormq reports that as an unexpected frame
        return "the server closed the connection at open: does the vhost exist, and may this user use it?"
    return str(exc) or type(exc).__name__


async def connect(url: str, *, name: str, timeout: float = CONNECT_TIMEOUT) -> AbstractRobustConnection:
    """A robust connection (it reconnects by itself later), or :class:`RabbitMQUnreachable` at once."""
    import aio_pika

    properties: dict[str, Any] = {"connection_name": name}
    try:
        # a connect that fails or times out is closed by connect_robust: nothing is left unclosed
        return await asyncio.wait_for(connect_robust(url, client_properties=properties), timeout)
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPError, ValueError) as exc:
        raise RabbitMQUnreachable(
            f"RabbitMQ at {redact(url)} is not reachable: {describe_failure(exc)}"
        ) from exc
