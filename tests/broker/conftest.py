"""Fixtures of the dev broker tests (helpers in brokertest.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from brokertest import Harness


@pytest.fixture(scope="session")
def rabbit(request: pytest.FixtureRequest) -> str:
    """The AMQP URL from the suite's ``amqp_url`` fixture, or from AMQP_URL while that is not there."""
    try:
        return str(request.getfixturevalue("amqp_url"))
    except pytest.FixtureLookupError:
        url = os.environ.get("AMQP_URL")
        if not url:
            pytest.skip("no RabbitMQ: set AMQP_URL")
        return url


@pytest.fixture
async def harness(rabbit: str) -> AsyncIterator[Harness]:
    h = Harness(rabbit)
    try:
        yield h
    finally:
        await h.close()
