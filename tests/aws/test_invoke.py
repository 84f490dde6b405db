"""``kfaas invoke``: one event through a function as it would arrive, AWS's sample events included."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from lambdatest import GO_EXAMPLE, build_go

HANDLER = Path(__file__).resolve().parents[1] / "test_functions" / "lambda_py"
SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "lambda-events"


def invoke(
    functions: Path, name: str, event: str | Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kfaas", "invoke", name, "--functions", str(functions), "--event", str(event)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    shutil.copytree(HANDLER, tmp_path / "functions" / "lambda-py")
    return tmp_path / "functions"


def _sample(name: str) -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"{SAMPLES} is not there (AWS's sample events live in ../shared/conformance)")
    return SAMPLES / name


def test_a_python_handler_gets_awss_sample_events(functions: Path) -> None:
    bridge = invoke(functions, "lambda-py", _sample("powertools/eventBridgeEvent.json"))
    assert bridge.returncode == 0, bridge.stderr
    assert json.loads(bridge.stdout) == {
        "seen": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail": {"instance_id": "i-1234567890abcdef0", "state": "terminated"},
    }
    sqs = invoke(functions, "lambda-py", _sample("powertools/sqsEvent.json"))
    assert sqs.returncode == 0
    assert json.loads(sqs.stdout) == {"batchItemFailures": []}
    api = invoke(functions, "lambda-py", _sample("powertools/apiGatewayProxyEvent.json"))
    answer = json.loads(api.stdout)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["event"]["path"] == "/my/path"


def test_a_failure_prints_lambdas_error_object_and_exits_1(functions: Path) -> None:
    failed = invoke(
        functions,
        "lambda-py",
        "-",
        stdin='{"detail-type": "x", "id": "1", "detail": {"fail": true, "sku": "s"}}',
    )
    assert failed.returncode == 1
    error = json.loads(failed.stdout)
    assert error["errorType"] == "InventoryError"
    assert error["errorMessage"] == "no stock for s"
    assert "app.py" in error["stackTrace"][0]


def test_bad_input_exits_2(functions: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    assert invoke(functions, "lambda-py", tmp_path / "bad.json").returncode == 2
    missing = invoke(functions, "nope", tmp_path / "bad.json")
    assert missing.returncode == 2
    assert "no function named 'nope'" in missing.stderr
    assert "no such event file" in invoke(functions, "lambda-py", tmp_path / "none.json").stderr


def test_the_seeds_go_handler_through_the_runtime_api(
    tmp_path: Path, require_tool: Callable[[str], str]
) -> None:
    binary = build_go(require_tool("go"), "get-user")
    functions = tmp_path / "functions"
    shutil.copytree(GO_EXAMPLE / "functions" / "get-user", functions / "get-user")
    shutil.copy2(binary, functions / "get-user" / "bootstrap")
    # aws-lambda-go's own sample has no {id} path parameter: the seed's GetUser answers its 400
    answer = invoke(functions, "get-user", _sample("aws-lambda-go/apigw-request.json"))
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["statusCode"] == 400
    assert json.loads(json.loads(answer.stdout)["body"]) == {"error": "Missing user ID"}
