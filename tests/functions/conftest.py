"""Fixtures for the order functions' unit tests: each handler is called directly with a hand-built CloudEvent
(or, for the HTTP functions, through httpx's ASGI transport) against a real MongoDB, one database per test."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from kfaas import Context, Settings
from kfaas.dev.smtp import MailSink

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"

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


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/main.py under a module name of its own (every function's file is main.py)."""
    module_name = "kfaas_test_fn_" + name.replace("-", "_")
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, FUNCTIONS / name / "main.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def make_event(type_: str, data: Any, **attributes: str) -> CloudEvent:
    return CloudEvent({"type": type_, "source": "/tests", **attributes}, data)


@pytest.fixture
def event() -> Callable[..., CloudEvent]:
    return make_event


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


def valid_order(**overrides: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "id": f"o-{uuid.uuid4().hex[:10]}",
        "userId": "u-1",
        "items": [{"sku": "book", "qty": 2, "price": 12.5}, {"sku": "pen", "qty": 1, "price": 0.99}],
        "total": 25.99,
    }
    order.update(overrides)
    return order


@pytest.fixture
def order() -> Callable[..., dict[str, Any]]:
    return valid_order
