"""The 40 executions recorded on AWS Step Functions, run by the interpreter in this process.

All cases run at once in one session fixture (a few wait on purpose: retry back-offs, a Wait, a timeout), so
the file takes as long as the slowest case; each test then checks one case against its recording.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import pytest_asyncio
from conformance import call_function, case_params, check, load_cases, top_level_path

from kfaas.saga import compile_definition, run_local


async def _run(case: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, int]]:
    machine = compile_definition(case["definition"])
    calls: Counter[str] = Counter()

    async def invoke(task: dict[str, Any], context: dict[str, Any]) -> Any:
        name = task["resource"].removeprefix("fn:")
        calls[name] += 1
        return await call_function(name, task["payload"])

    run, history = await run_local(machine, case["input"], invoke, name=case["name"])
    return run.doc, history, dict(calls)


@pytest_asyncio.fixture(scope="session")
async def outcomes() -> dict[str, Any]:
    cases = load_cases()
    results = await asyncio.gather(*(_run(c) for c in cases), return_exceptions=True)
    return {c["name"]: r for c, r in zip(cases, results, strict=True)}


@pytest.mark.parametrize("case", case_params())
def test_recorded_case(case: dict[str, Any], outcomes: dict[str, Any]) -> None:
    outcome = outcomes[case["name"]]
    if isinstance(outcome, BaseException):
        raise outcome
    doc, history, calls = outcome
    check(
        case,
        doc["status"],
        doc.get("output"),
        doc.get("error"),
        doc.get("cause"),
        top_level_path(history),
        calls,
    )
