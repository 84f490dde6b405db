"""``kfaas dlq list|show|redrive`` against the dead letters of a real broker run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from brokertest import Harness
from cloudevents.http import CloudEvent

from kfaas.broker.dlq import peek
from kfaas.cli import main
from kfaas.spec import load_app

pytestmark = pytest.mark.integration

DESCRIPTION = """\
kind: cloudevent
triggers:
  - name: on-order
    filter: {type: com.example.order}
    delivery: {retry: 1, backoffPolicy: linear, backoffDelay: PT0.05S}
"""


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    folder = tmp_path / "functions" / "notify"
    folder.mkdir(parents=True)
    (folder / "function.yaml").write_text(DESCRIPTION)
    (folder / "main.py").write_text("def handle(event):\n    return None\n")
    return tmp_path / "functions"


async def kfaas(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_list_show_redrive_processes_once(
    harness: Harness, functions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = False

    def behaviour(_e: CloudEvent, _n: int) -> tuple[int, dict[str, str], bytes]:
        return (202, {}, b"") if healthy else (500, {}, b"smtp relay refused")

    sub = await harness.subscriber("notify", behaviour)
    app = load_app(functions)
    broker = await harness.broker(*app.functions)
    for i in range(3):
        await broker.publish(
            "default", CloudEvent({"type": "com.example.order", "source": "/t", "id": f"o-{i}"})
        )
    await sub.wait_for(6)  # 3 events x (1 attempt + 1 retry)
    (ref,) = broker.triggers
    for _ in range(100):
        if len(await peek(harness.amqp_url, ref)) == 3:
            break
        await asyncio.sleep(0.05)

    common = ["--functions", str(functions), "--amqp-url", harness.amqp_url, "--namespace", harness.namespace]
    code, out, _ = await kfaas(capsys, "dlq", *common, "list")
    assert code == 0
    assert "notify-on-order: 3 dead letter(s)" in out
    assert "o-1  com.example.order  code=500" in out

    code, out, _ = await kfaas(capsys, "dlq", *common, "list", "--json")
    report = json.loads(out)
    assert report[0]["count"] == 3
    assert {e["dest"] for e in report[0]["events"]} == {sub.url}

    code, out, _ = await kfaas(capsys, "dlq", *common, "show", "notify-on-order", "o-2")
    assert code == 0
    assert "event o-2" in out
    assert "type: com.example.order" in out
    assert "reason: smtp relay refused" in out
    assert "o-1" not in out

    healthy = True
    code, out, err = await kfaas(capsys, "dlq", *common, "redrive", "notify-on-order", "--id", "o-1")
    assert (code, out) == (0, "redrove 1 event(s) to notify-on-order\n"), err
    await sub.wait_for(7)
    assert sub.events[6]["id"] == "o-1"
    assert "knativeerrorcode" not in sub.events[6]  # the error extensions are gone

    code, out, _ = await kfaas(capsys, "dlq", *common, "redrive", "notify-on-order", "--all")
    assert (code, out) == (0, "redrove 2 event(s) to notify-on-order\n")
    await sub.wait_for(9)
    await asyncio.sleep(0.3)
    assert sorted(e["id"] for e in sub.events[6:]) == ["o-0", "o-1", "o-2"]  # each once
    assert await peek(harness.amqp_url, ref) == []


async def test_bad_input_is_a_clear_error(
    harness: Harness, functions: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--functions", str(functions), "--amqp-url", harness.amqp_url, "--namespace", harness.namespace]
    code, _, err = await kfaas(capsys, "dlq", *common, "show", "nope")
    assert code == 2
    assert "no trigger 'nope'" in err
    assert "notify-on-order" in err
    code, _, err = await kfaas(capsys, "dlq", "--functions", str(functions / "missing"), "list")
    assert code == 2
    assert "no such functions folder" in err
    with pytest.raises(SystemExit):  # argparse: --id or --all is required
        await asyncio.to_thread(main, ["dlq", *common, "redrive", "notify-on-order"])
    capsys.readouterr()
    code, _, err = await kfaas(capsys, "dlq", *common, "redrive", "notify-on-order", "--id", "ghost")
    assert code == 1
    assert "ghost" in err
