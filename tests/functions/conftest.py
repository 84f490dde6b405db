"""Fixtures for the order functions' unit tests: each handler is called directly with a hand-built CloudEvent
(or, for the HTTP functions, through httpx's ASGI transport) against a real MongoDB, one database per test.
Helpers the tests import live in ``order_functions.py``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kfaas import Context, Settings
from kfaas.dev.smtp import MailSink

# pymongo 4.20's async monitors leak the socket they are connecting when the client closes at that moment
# (the task is cancelled inside sock_connect); short tests close clients early enough to hit it now and then.
_PYMONGO_MONITOR_LEAK = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)


ORDER_FUNCTIONS = {
    "place-order",
    "get-order",
    "process-order",
    "notify-email",
    "order-analytics",
    "daily-report",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.parent.parent == here and item.path.parent.name in ORDER_FUNCTIONS:
            item.add_marker(_PYMONGO_MONITOR_LEAK)


@pytest.fixture
def mail_sink() -> Iterator[MailSink]:
    with MailSink() as sink:
        yield sink


@pytest.fixture
async def ctx(mongodb_url: str, mail_sink: MailSink) -> AsyncIterator[Context]:
    """A started Context on a database of its own (dropped afterwards) that mails to ``mail_sink``."""
    database = f"kfaas_test_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        function_name="test",
        mongodb_url=mongodb_url,
        mongodb_database=database,
        smtp_host=mail_sink.host,
        smtp_port=mail_sink.port,
        mail_from="orders@kfaas.test",
    )
    context = Context(settings)
    await context.start()
    try:
        yield context
    finally:
        await context.mongo.drop_database(database)
        await context.close()
