"""Helpers of the order functions' tests: load a function's module, build events and orders."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from cloudevents.http import CloudEvent

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


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


def valid_order(**overrides: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "id": f"o-{uuid.uuid4().hex[:10]}",
        "userId": "u-1",
        "items": [{"sku": "book", "qty": 2, "price": 12.5}, {"sku": "pen", "qty": 1, "price": 0.99}],
        "total": 25.99,
    }
    order.update(overrides)
    return order
