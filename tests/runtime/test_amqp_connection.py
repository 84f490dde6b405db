"""A RabbitMQ connection attempt that fails or is cut short leaves no half-made aio-pika connection behind.

aio-pika's ``connect_robust`` drops the connection object of a failed first connect unclosed; its ``__del__``
then creates a ``close()`` coroutine that is never awaited when the garbage collector runs in a thread
without an event loop, and the suite (warnings are errors) failed now and then in whichever test the
collection happened to run. These tests provoke exactly that collection.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kfaas import Context, ServiceUnavailable, Settings
from kfaas.base.amqp import connect_robust

pytestmark = pytest.mark.integration


def _collect_in_a_thread() -> list[str]:
    """Run the cyclic garbage collector in a thread without an event loop; what it could not finalize."""
    caught: list[str] = []
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        caught.append(f"{unraisable.exc_type.__name__}: {unraisable.exc_value} in {unraisable.object!r}")

    sys.unraisablehook = hook
    try:
        worker = threading.Thread(target=gc.collect)
        worker.start()
        worker.join()
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return caught


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never says a word (a RabbitMQ that does not answer)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_refused_connection_leaves_nothing_to_finalize() -> None:
    ctx = Context(Settings(amqp_url="amqp://guest:guest@127.0.0.1:1/"))
    await ctx.start()
    with pytest.raises(ServiceUnavailable, match="RabbitMQ did not answer"):
        await ctx.amqp()
    await ctx.close()
    assert _collect_in_a_thread() == []


async def test_a_readiness_check_cut_short_leaves_nothing_to_finalize(silent_port: int) -> None:
    ctx = Context(Settings(amqp_url=f"amqp://guest:guest@127.0.0.1:{silent_port}/", ready_timeout=0.2))
    await ctx.start()
    assert (await ctx.check())["rabbitmq"] == "error: TimeoutError"
    await ctx.close()
    await asyncio.sleep(0)
    reconnecting = [t for t in asyncio.all_tasks() if "connection_factory" in repr(t.get_coro())]
    assert reconnecting == []  # the cut-short connection does not go on connecting in the background
    assert _collect_in_a_thread() == []


async def test_a_connection_that_is_made_is_robust_and_closes(amqp_url: str) -> None:
    connection = await connect_robust(amqp_url, client_properties={"connection_name": "kfaas-test"})
    try:
        assert connection.connected.is_set()
        channel = await connection.channel()
        assert not channel.is_closed
    finally:
        await connection.close()
    assert _collect_in_a_thread() == []
