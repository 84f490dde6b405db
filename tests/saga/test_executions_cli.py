"""``kfaas executions``: start, list, show (and its graph), history, stop and redrive, against a running engine."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient
from sagatest import Stack, saga_stack

pytestmark = pytest.mark.integration

APP = Path(__file__).parent / "app"


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kfaas",
            "executions",
            *args,
            "--functions",
            str(stack.functions_dir),
            "--mongodb-url",
            stack.mongodb_url,
            "--database",
            stack.database,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_executions_command(tmp_path: Path, mongodb_url: str, amqp_url: str) -> None:
    async with saga_stack(
        tmp_path,
        mongodb_url,
        amqp_url,
        ["sleepy", "counter", "flaky"],
        statemachines=APP / "statemachines",
        functions_root=APP / "functions",
    ) as stack:
        started = cli(stack, "start", "redrive-test", "--name", "c-1", "--input", '{"a": 1}')
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == "started redrive-test:c-1"
        again = cli(stack, "start", "redrive-test", "--name", "c-1", "--input", '{"a": 1}')
        assert again.returncode == 0 and "redrive-test:c-1" in again.stdout  # noqa: PT018
        failed = await stack.wait_done("redrive-test:c-1", timeout=30)
        assert failed["status"] == "FAILED"

        listed = cli(stack, "list", "--status", "FAILED")
        assert "redrive-test:c-1" in listed.stdout and "NotReady" in listed.stdout  # noqa: PT018
        shown = cli(stack, "show", "redrive-test:c-1")
        assert shown.returncode == 0, shown.stderr
        assert "status      FAILED" in shown.stdout
        assert "path        Count -> Flaky" in shown.stdout
        assert "NotReady" in shown.stdout
        history = cli(stack, "history", "redrive-test:c-1")
        assert "TaskFailed" in history.stdout and "ExecutionFailed" in history.stdout  # noqa: PT018
        picture = tmp_path / "c-1.svg"
        drawn = cli(stack, "show", "redrive-test:c-1", "--graph", str(picture))
        assert drawn.returncode == 0, drawn.stderr
        text = picture.read_text()
        assert text.startswith("<svg") and "Flaky" in text and "#f8d7da" in text  # noqa: PT018
        mermaid = cli(stack, "show", "redrive-test:c-1", "--graph", "-")
        assert mermaid.stdout.startswith("stateDiagram-v2") and "class s1 failed" in mermaid.stdout  # noqa: PT018

        refused = cli(stack, "start", "redrive-test", "--input", "{oops")
        assert refused.returncode == 2 and "--input is not JSON" in refused.stderr  # noqa: PT018
        unknown = cli(stack, "show", "redrive-test:nope")
        assert unknown.returncode == 1 and "no execution 'redrive-test:nope'" in unknown.stderr  # noqa: PT018
        machine = cli(stack, "start", "no-such-machine")
        assert machine.returncode == 2 and "no state machine 'no-such-machine'" in machine.stderr  # noqa: PT018

        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(stack.mongodb_url)
        await client[stack.database].flags.insert_one({"_id": "fixed"})
        await client.close()
        redriven = cli(stack, "redrive", "redrive-test:c-1")
        assert redriven.returncode == 0, redriven.stderr
        done = await stack.wait_done("redrive-test:c-1", timeout=30)
        assert done["status"] == "SUCCEEDED"
        twice = cli(stack, "redrive", "redrive-test:c-1")
        assert twice.returncode == 1 and "only FAILED, TIMED_OUT or ABORTED" in twice.stderr  # noqa: PT018

        # the API's refusals name the problem; an event a state machine starts on starts it
        import httpx

        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            big = await http.post(
                f"{stack.api}/state-machines/redrive-test/executions", json={"input": {"x": "y" * 300_000}}
            )
            assert big.status_code == 400
            assert "maxPayloadBytes" in big.json()["error"]
            bad = await http.post(f"{stack.api}/state-machines/redrive-test/executions", json={"name": "a b"})
            assert bad.status_code == 400
            assert "execution name" in bad.json()["error"]
            clash = await http.post(
                f"{stack.api}/state-machines/redrive-test/executions", json={"name": "c-1", "input": {"a": 2}}
            )
            assert clash.status_code == 409
            assert "ExecutionAlreadyExists" in clash.json()["error"]
            poke = await http.post(
                stack.sink,
                headers={
                    "ce-specversion": "1.0",
                    "ce-id": "p-1",
                    "ce-source": "/tests",
                    "ce-type": "com.example.poke",
                    "ce-subject": "from-event",
                    "content-type": "application/json",
                },
                content=b'{"poked": true}',
            )
            assert poke.status_code == 202
        by_event = await stack.wait_done("redrive-test:from-event", timeout=30)
        assert by_event["input"] == {"poked": True}

        assert cli(stack, "start", "stop-test", "--name", "s-1").returncode == 0
        for _ in range(50):
            state = await stack.describe("stop-test:s-1")
            if state.get("owner"):
                break
            await asyncio.sleep(0.1)
        stopped = cli(stack, "stop", "stop-test:s-1", "--error", "Operator", "--cause", "not needed")
        assert stopped.returncode == 0, stopped.stderr
        aborted = await stack.wait_done("stop-test:s-1", timeout=30)
        assert aborted["status"] == "ABORTED"
        assert aborted["error"] == "Operator"
