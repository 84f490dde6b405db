"""Imported SAM applications run under ``kfaas dev`` as they ran on AWS (real RabbitMQ and MongoDB-wire server).

Two public applications of ../shared/conformance/sam/ are imported into one functions folder, with handler
code laid where their ``CodeUri`` points (the conformance set holds templates only): the REST API's
``GET /hello`` answers through the gateway, and the SQS application's queue hands its messages over as
batches of SQS records, a partial batch response retries only the failed record, and its redrive policy
(``maxReceiveCount: 3``) gives three attempts before the dead-letter queue.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import pytest
from lambdatest import LambdaDev, publish_plain

from kfaas.cli import main

pytestmark = pytest.mark.integration

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "sam"

HELLO = """\
import json


def lambda_handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"message": "hello world", "path": event["path"]})}
"""

PROCESSOR = """\
import json
import os


def lambda_handler(event, context):
    failures = []
    with open(os.environ["SAM_TEST_RECORD"], "a") as out:
        out.write(json.dumps([r["body"] for r in event["Records"]]) + "\\n")
    for record in event["Records"]:
        if record["body"].startswith("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""


def _import(template: Path, functions: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["import", "sam", str(template), "--functions", str(functions)])
    assert code == 0, err.getvalue()


async def test_imported_applications_run_under_kfaas_dev(
    lambda_dev: Callable[[Path], LambdaDev], tmp_path: Path, amqp_url: str
) -> None:
    if not CONFORMANCE.is_dir():
        pytest.skip(f"{CONFORMANCE} is absent (the SAM templates of this test)")
    functions = tmp_path / "app" / "functions"
    for case, folder, code in [
        ("apigw-rest-api-lambda-python", "hello_world", HELLO),
        ("sqs-lambda-python-sam", "src", PROCESSOR),
    ]:
        src = tmp_path / case
        src.mkdir()
        (src / "template.yaml").write_text((CONFORMANCE / case / "template.yaml").read_text())
        (src / folder).mkdir()
        (src / folder / "app.py").write_text(code)
        _import(src / "template.yaml", functions)

    run = lambda_dev(functions)
    queues = run.rename_queues()
    record = tmp_path / "record.jsonl"
    run.extra_env["SAM_TEST_RECORD"] = str(record)
    await run.start()

    async with httpx.AsyncClient(base_url=run.base_url, timeout=30) as http:
        answer = await http.get("/hello")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"message": "hello world", "path": "/hello"}

    await publish_plain(amqp_url, queues["processing-queue"], [b"ok-1", b"fail-2", b"ok-3"])

    async def dead_lettered() -> bool:
        shown = run.dlq("show", "processor-my-sqs-event")
        return shown.returncode == 0 and "fail-2" in shown.stdout

    await run.eventually(dead_lettered, 90, "the failed record in the dead-letter queue")
    seen: list[Any] = [b for line in record.read_text().splitlines() for b in json.loads(line)]
    assert seen.count("ok-1") == 1  # succeeded: never retried
    assert seen.count("ok-3") == 1
    assert seen.count("fail-2") == 3  # maxReceiveCount 3: three receives, then the dead-letter queue
    assert "ok-" not in run.dlq("show", "processor-my-sqs-event").stdout
