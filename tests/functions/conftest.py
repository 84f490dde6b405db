"""Fixtures for the order functions' unit tests: each handler is called directly with a hand-built CloudEvent
(or, for the HTTP functions, through httpx's ASGI transport) against a real MongoDB, one database per test.
Helpers the tests import live in ``order_functions.py``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from kfaas import Context, Settings
from kfaas.dev.smtp import MailSink


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
