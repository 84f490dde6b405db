"""Fixtures of the system tests (``kfaas dev`` against real services); the helpers are in kfaas_system.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kfaas_system import DevRun, delete_rabbitmq_names

from kfaas.dev.smtp import MailSink


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here:
            item.add_marker(pytest.mark.system)


@pytest.fixture
async def dev(tmp_path: Path, mongodb_url: str, amqp_url: str, mail_sink: MailSink) -> AsyncIterator[DevRun]:
    """A not yet started kfaas dev run (edit its descriptions, then ``await dev.start()``)."""
    run = DevRun(tmp_path, mongodb_url, amqp_url, mail_sink)
    try:
        yield run
    finally:
        code = run.stop()
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            mongodb_url, serverSelectionTimeoutMS=5000
        )
        try:
            await client.drop_database(run.database)
        finally:
            await client.close()
        try:
            await delete_rabbitmq_names(amqp_url, run)
        except Exception as exc:  # cleanup must not hide the test's own result
            print(f"cleanup of RabbitMQ names failed: {exc!r}")
        assert code == 0, f"kfaas dev exited {code} on SIGINT:\n{run.output()}"


@pytest.fixture
async def db(dev: DevRun, mongodb_url: str) -> AsyncIterator[Any]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        yield client[dev.database]
    finally:
        await client.close()
