"""schemathesis hooks for the API run (tests/system/test_api_schemathesis.py), loaded through SCHEMATHESIS_HOOKS.

``POST /orders`` refuses a ``total`` that differs from the sum of the items (400, naming ``total``), a rule
across fields that JSON Schema cannot state. A schema-valid body with a random ``total`` would be refused
and counted as "valid data rejected"; so, in the cases schemathesis means to be valid, the total is set to
the items' sum, the way a client computes it. Negative cases are left as generated.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode
from schemathesis.hooks import HookContext


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_valid_item(item: Any) -> bool:
    return isinstance(item, dict) and _number(item.get("qty")) and _number(item.get("price"))


@schemathesis.hook
def map_case(context: HookContext, case: Any) -> Any:
    operation = context.operation
    if operation is None or operation.method.upper() != "POST" or operation.path != "/orders":
        return case
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return case
    body = case.body
    if not isinstance(body, dict) or body.get("total") is None or not isinstance(body.get("items"), list):
        return case
    items = body["items"]
    if not all(_is_valid_item(item) for item in items):
        return case
    cents = sum(item["qty"] * round(item["price"] * 100) for item in items)
    case.body = {**body, "total": cents / 100}
    return case
