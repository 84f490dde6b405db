"""What the recorded cases do not cover: refusals of invalid definitions, the limits, redrive, Map/Parallel
details, the seed's SAM definition and Resource names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kfaas.saga import DefinitionError, Limits, Run, compile_definition, run_local
from kfaas.spec import function_name, load_statemachine

ROOT = Path(__file__).resolve().parents[2]


def test_an_invalid_definition_is_refused_with_every_problem() -> None:
    definition = {
        "States": {
            "A": {"Type": "Tusk", "Next": "B"},
            "B": {
                "Type": "Task",
                "Resource": "fn:x",
                "Next": "Nowhere",
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "A"}, {"ErrorEquals": ["X"], "Next": "A"}],
            },
            "C": {"Type": "Pass", "Parameters": {"x.$": "$.a[?(@.b =="}, "End": True},
        }
    }
    with pytest.raises(DefinitionError) as info:
        compile_definition(definition)
    text = "\n".join(info.value.problems)
    assert "StartAt" in text
    assert "'Tusk'" in text
    assert "'Nowhere'" in text
    assert "States.ALL" in text
    assert "C.Parameters" in text
    assert len(info.value.problems) >= 5


async def _run(definition: dict[str, Any], input_: Any, limits: Limits | None = None) -> Run:
    async def invoke(task: dict[str, Any], context: dict[str, Any]) -> Any:
        return task["payload"]

    run, _ = await run_local(compile_definition(definition), input_, invoke, limits=limits or Limits())
    return run


async def test_the_payload_limit_names_itself() -> None:
    definition = {"StartAt": "Big", "States": {"Big": {"Type": "Task", "Resource": "fn:echo", "End": True}}}
    run = await _run(definition, {"blob": "x" * 3000}, Limits(max_payload_bytes=2048))
    assert run.doc["status"] == "FAILED"
    assert run.doc["error"] == "States.DataLimitExceeded"
    assert "max_payload_bytes" in run.doc["cause"]


async def test_the_history_limit_names_itself() -> None:
    loop = {
        "StartAt": "A",
        "States": {
            "A": {"Type": "Pass", "Next": "Again"},
            "Again": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.stop", "IsPresent": False, "Next": "A"}],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }
    run = await _run(loop, {}, Limits(max_history_events=50))
    assert run.doc["status"] == "FAILED"
    assert run.doc["error"] == "States.Runtime"
    assert "limit of 50 events (max_history_events)" in run.doc["cause"]


async def test_the_execution_time_limit_times_out() -> None:
    wait = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 30, "End": True}}}
    run = await _run(wait, {}, Limits(max_execution_seconds=0.2))
    assert run.doc["status"] == "TIMED_OUT"
    assert run.doc["error"] == "States.Timeout"


def test_redrive_runs_the_failed_state_again_with_its_input() -> None:
    machine = compile_definition(
        {
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Next": "B"},
                "B": {"Type": "Task", "Resource": "fn:b", "End": True},
            },
        }
    )
    run = Run.start(machine, {"n": 1}, execution_id="m:e", name="e", state_machine="m", now=0.0)
    while run.runnable():
        run.step(run.runnable()[0], 0.0)
    (task,) = run.tasks()
    run.on_error(task["id"], "Broken", "it broke", 1.0)
    assert run.status == "FAILED"
    run.redrive(2.0)
    assert run.status == "RUNNING"
    run.step(run.runnable()[0], 2.0)
    (again,) = run.tasks()
    assert again["id"] != task["id"]
    assert again["payload"] == {"n": 1}
    run.on_result(again["id"], {"ok": True}, 3.0)
    assert run.status == "SUCCEEDED"
    assert run.doc["redriveCount"] == 1
    with pytest.raises(ValueError, match="only a failed"):
        run.redrive(4.0)


async def test_map_max_concurrency_and_parallel_results_in_order() -> None:
    running = {"now": 0, "max": 0}

    async def invoke(task: dict[str, Any], context: dict[str, Any]) -> Any:
        import asyncio

        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await asyncio.sleep(0.01)
        running["now"] -= 1
        return task["payload"] * 10

    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "MaxConcurrency": 2,
                "ItemProcessor": {
                    "StartAt": "T",
                    "States": {"T": {"Type": "Task", "Resource": "fn:t", "End": True}},
                },
                "End": True,
            }
        },
    }
    run, _ = await run_local(compile_definition(definition), [1, 2, 3, 4, 5], invoke)
    assert run.doc["output"] == [10, 20, 30, 40, 50]
    assert running["max"] == 2


def test_the_seed_definition_loads_unchanged_with_its_functions() -> None:
    spec = load_statemachine(ROOT / "statemachines" / "order-saga")
    assert spec.functions == ["complete-order", "process-payment", "release-inventory", "reserve-inventory"]
    assert spec.asl["States"]["ReserveInventory"]["Resource"] == "fn:reserve-inventory"
    compile_definition(spec.asl)
    seed = (ROOT / "statemachines" / "order-saga" / "step-functions.yaml").read_text()
    assert "Resource: !GetAtt ReserveInventoryFunction.Arn" in seed


@pytest.mark.parametrize(
    ("resource", "name"),
    [
        ({"Fn::GetAtt": ["ReserveInventoryFunction", "Arn"]}, "reserve-inventory"),
        ("fn:raise_exception", "raise-exception"),
        ("process-payment", "process-payment"),
        ("arn:aws:lambda:eu-west-1:123456789012:function:CompleteOrder", "completeorder"),
        ("arn:aws:states:::sqs:sendMessage", None),
    ],
)
def test_resource_names(resource: Any, name: str | None) -> None:
    assert function_name(resource) == name
