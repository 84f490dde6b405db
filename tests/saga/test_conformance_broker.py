"""The 40 recorded AWS executions again, durably: the engine process, the broker, ``kfaas serve`` functions.

Each case becomes a state machine of its own; all run at once (a few wait on purpose), then each test
checks one against its recording. Invocations are counted from what the functions recorded in MongoDB.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conformance import case_params, check, load_cases, top_level_path
from pymongo import AsyncMongoClient
from sagatest import saga_stack

pytestmark = pytest.mark.integration

APP = Path(__file__).parent / "conformance_app"
FUNCTIONS = ["echo1", "echo2", "identity", "raise-exception", "raise-custom", "sleep60"]


def _machine_name(index: int) -> str:
    return f"case-{index:02d}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def outcomes(
    tmp_path_factory: pytest.TempPathFactory, mongodb_url: str, amqp_url: str
) -> dict[str, Any]:
    cases = load_cases()
    if not cases:
        return {}
    tmp = tmp_path_factory.mktemp("asl")
    machines = tmp / "statemachines"
    for i, case in enumerate(cases):
        folder = machines / _machine_name(i)
        folder.mkdir(parents=True)
        (folder / "definition.json").write_text(json.dumps(case["definition"]))
        (folder / "statemachine.yaml").write_text(
            f"description: {case['name']}\ndefinition: definition.json\n"
        )
    async with saga_stack(
        tmp, mongodb_url, amqp_url, FUNCTIONS, statemachines=machines, functions_root=APP / "functions"
    ) as stack:
        await asyncio.gather(
            *(stack.start_execution(_machine_name(i), "run", c["input"]) for i, c in enumerate(cases))
        )
        summaries = await asyncio.gather(
            *(stack.wait_done(f"{_machine_name(i)}:run", timeout=90) for i in range(len(cases)))
        )
        histories = await asyncio.gather(
            *(stack.history(f"{_machine_name(i)}:run") for i in range(len(cases)))
        )
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_url)
        calls: dict[str, Counter[str]] = {}
        seen: set[str] = set()
        async for doc in client[stack.database].invocations.find({}):
            if doc["request"] in seen:  # the same attempt delivered again: not another invocation
                continue
            seen.add(doc["request"])
            calls.setdefault(doc["e"], Counter())[doc["fn"]] += 1
        await client.close()
    return {
        c["name"]: (summaries[i], histories[i], dict(calls.get(f"{_machine_name(i)}:run", Counter())))
        for i, c in enumerate(cases)
    }


@pytest.mark.parametrize("case", case_params())
def test_recorded_case_through_the_broker(case: dict[str, Any], outcomes: dict[str, Any]) -> None:
    summary, history, calls = outcomes[case["name"]]
    # the functions are kfaas functions: fn:raise_exception is the function raise-exception
    recorded = {k.replace("_", "-"): v for k, v in case["expect"].get("invocations", {}).items()}
    case = {**case, "expect": {**case["expect"], "invocations": recorded}} if recorded else case
    check(
        case,
        summary["status"],
        summary.get("output"),
        summary.get("error"),
        summary.get("cause"),
        top_level_path(history),
        calls,
    )
