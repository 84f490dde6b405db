"""Fixtures of the dev broker tests (helpers in brokertest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from brokertest import Harness


@pytest.fixture(scope="session")
def rabbit(amqp_url: str) -> str:
    """The suite's RabbitMQ (tests/conftest.py: from AMQP_URL, testcontainers, or skip/fail)."""
    return amqp_url


@pytest.fixture
async def harness(rabbit: str) -> AsyncIterator[Harness]:
    h = Harness(rabbit)
    try:
        yield h
    finally:
        await h.close()
