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


def test_a_cloudevent_function_gets_a_structured_event_and_its_reply_is_printed(tmp_path: Path) -> None:
    folder = tmp_path / "functions" / "echo"
    folder.mkdir(parents=True)
    (folder / "function.yaml").write_text("kind: cloudevent\ntarget: handle\n")
    (folder / "main.py").write_text(
        "from cloudevents.http import CloudEvent\n\n"
        "def handle(event):\n"
        "    return CloudEvent({'type': 'com.example.echoed', 'source': '/echo'}, {'got': event.get_data()})\n"
    )
    event = {"specversion": "1.0", "id": "1", "source": "/t", "type": "com.example.ping", "data": {"n": 1}}
    answer = invoke(tmp_path / "functions", "echo", "-", stdin=json.dumps(event))
    assert answer.returncode == 0, answer.stderr
    reply = json.loads(answer.stdout)
    assert reply["type"] == "com.example.echoed"
    assert reply["data"] == {"got": {"n": 1}}
    bad = invoke(tmp_path / "functions", "echo", "-", stdin='{"specversion": "1.0"}')
    assert bad.returncode == 2
    assert "missing required attribute" in bad.stderr


def test_kfaas_dev_refuses_a_lambda_image(tmp_path: Path) -> None:
    folder = tmp_path / "functions" / "priced"
    folder.mkdir(parents=True)
    (folder / "function.yaml").write_text("kind: lambda\nimage: registry.example.com/price:1\n")
    result = subprocess.run(
        [sys.executable, "-m", "kfaas", "dev", "--functions", str(tmp_path / "functions")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "priced: a Lambda container image needs a container engine" in result.stderr
