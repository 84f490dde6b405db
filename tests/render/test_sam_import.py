"""``kfaas import sam``: the seed's template and ten public SAM applications import, render and validate.

The templates are read at run time from ../shared/ (the seed's architecture notes and
../shared/conformance/sam/, from aws-samples/serverless-patterns); the tests skip, saying so, without it.
The conformance set holds the templates only, not the applications' code, so each case lays the code where
its ``CodeUri`` points, as the application's checkout would have it (a handler module per python function,
a zip holding ``bootstrap`` for the seed's Go functions); the importer copies it into the function folders.
Each import then renders to compose, k8s and the chart, validated as the hand-written functions are
(test_k8s.py, test_lambda_render.py), and each report is checked: what is mapped and, exactly, what is not.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import stat
import subprocess
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from _render_support import COMPOSE_SCHEMA, ROOT, SHARED, missing
from test_k8s import OVERLAYS, build, by_kind, validate

from kfaas.cli import main
from kfaas.render import render
from kfaas.render.chart import function_values
from kfaas.spec import load_app

SEED = SHARED / "seed" / "serverless-architecture.md"
CONFORMANCE = SHARED / "conformance" / "sam"
# the seed's saga runs on these functions of this repository (the template names them, defines none)
SAGA_FUNCTIONS = ["reserve-inventory", "process-payment", "release-inventory", "complete-order"]

# What each report must say: the (resource, what) pairs mapped (at least these) and not mapped (exactly).
CASES: dict[str, dict[str, Any]] = {
    "apigw-http-api-lambda-python": {
        "mapped": [
            ("ApiFunction", "function"),
            ("ApiFunction", "InlineCode"),
            ("ApiFunction", "Events (HttpApi ANY /)"),
        ],
        "unmapped": [],
    },
    "apigw-lambda-dynamodb": {
        "mapped": [
            ("LambdaFunction", "function"),
            ("LambdaFunction", "Events (Api POST /)"),
            ("LambdaFunction", "Policies (DynamoDB)"),
            ("DynamoDBTable", "table"),
        ],
        "unmapped": [],
    },
    "apigw-rest-api-lambda-python": {
        "mapped": [("HelloWorldFunction", "function"), ("HelloWorldFunction", "Events (Api GET /hello)")],
        "unmapped": [],
    },
    "eventbridge-scheduled-lambda": {
        "mapped": [
            ("ScheduledFunction", "function"),
            ("ScheduledFunction", "Events.scheduled-function (Schedule)"),
        ],
        "unmapped": [],
    },
    "fifo-sqs-redrive": {
        "mapped": [
            ("MyOriginalQueueFunction", "Events.sqs-event (SQS)"),
            ("ReProcessQueueFunction", "Events.sqs-event (SQS)"),
            ("MyOriginalQueue", "RedrivePolicy"),
            ("MyReProcessQueue", "RedrivePolicy"),
            ("MyDeadLetterQueue", "queue"),
        ],
        "unmapped": [
            ("MyOriginalQueue", "ContentBasedDeduplication, MessageRetentionPeriod, VisibilityTimeout"),
            ("MyReProcessQueue", "ContentBasedDeduplication, MessageRetentionPeriod, VisibilityTimeout"),
        ],
    },
    "kinesis-lambda-error-handling": {
        "mapped": [("KinesisDataStreamProcessor", "function"), ("KinesisDataStreamProcessor", "Environment")],
        "unmapped": [
            ("DataActivityKinesisStream", "resource"),
            ("EventMonitor", "resource"),
            ("KinesisDataStreamProcessor", "Events.data-activity-kinesis-event (Kinesis)"),
        ],
    },
    "lambda-s3-async-lambda": {
        "mapped": [("AsynchronousFunction", "function"), ("SendPayloadFunction", "function")],
        "unmapped": [
            ("AsynchronousFunction", "Events (s3:ObjectCreated:* on PayloadBucket)"),
            ("AsynchronousFunction", "Policies (s3)"),
            ("PayloadBucket", "resource"),
            ("SendPayloadFunction", "Environment.PayloadBucketName"),  # a parameter without a value
            ("SendPayloadFunction", "Policies (lambda)"),
            ("SendPayloadFunction", "Policies (s3)"),
        ],
    },
    "s3-event-sfn-lambda-ddb-sns": {
        "mapped": [
            ("LambdaFunction", "function"),
            ("LambdaFunction", "Policies (DynamoDB)"),
            ("DynamoDBTable", "table"),
        ],
        "unmapped": [
            ("IngestionBucket", "resource"),
            ("LambdaFunction", "Policies: AWSStepFunctionsFullAccess"),
            ("LambdaFunction", "Policies: AmazonS3FullAccess"),
            ("LambdaFunction", "Policies: CloudWatchLogsFullAccess"),
            ("MySnsTopic", "resource"),
            ("StateMachineExecutionRole", "resource"),
            ("UpdateTableStateMachine", "state machine"),  # Tasks through lambda:invoke and sns:publish
            ("UpdateTableStateMachineStateChange", "Targets"),
        ],
    },
    "s3-lambda-resizing-python": {
        "mapped": [("ResizerFunction", "function"), ("ResizerFunction", "Environment")],
        "unmapped": [
            ("DestinationBucket", "resource"),
            ("ResizerFunction", "Events (s3:ObjectCreated:* on SourceBucket)"),
            ("ResizerFunction", "Layers"),
            ("ResizerFunction", "Policies (s3)"),
            ("SourceBucket", "resource"),
        ],
    },
    "sqs-lambda-python-sam": {
        "mapped": [
            ("ProcessorFunction", "Events.my-sqs-event (SQS)"),
            ("ProcessingQueue", "RedrivePolicy"),
            ("ProcessingDLQ", "queue"),
        ],
        "unmapped": [("ProcessingQueue", "VisibilityTimeout")],
    },
}


def _need(path: Path) -> None:
    if not path.exists():
        missing(f"{path} (the SAM templates of these tests)")


def kfaas(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def _lay_code(template: Path) -> None:
    """Put each function's code where its CodeUri points, as the application's checkout holds it."""
    from samtranslator.yaml_helper import yaml_parse

    data = yaml_parse(template.read_text())
    for resource in data["Resources"].values():
        props = resource.get("Properties") or {}
        if resource["Type"] != "AWS::Serverless::Function" or not isinstance(props.get("CodeUri"), str):
            continue
        target = template.parent / props["CodeUri"]
        handler = str(props.get("Handler", "app.handler"))
        if target.suffix == ".zip":
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(target, "w") as archive:
                info = zipfile.ZipInfo("bootstrap")
                info.external_attr = (stat.S_IFREG | 0o755) << 16
                archive.writestr(info, "#!/bin/sh\n# stands for the built Go handler\n")
        else:
            target.mkdir(parents=True, exist_ok=True)
            module = handler.rpartition(".")[0]
            (target / f"{module}.py").write_text(
                f"def {handler.rpartition('.')[2]}(event, context):\n    return {{}}\n"
            )


def seed_templates(folder: Path) -> list[Path]:
    """The seed's template.yaml and its saga's step-functions.yaml, as the seed writes them."""
    _need(SEED)
    blocks = re.findall(r"```yaml\n(.*?)```", SEED.read_text(), re.S)
    files = []
    for name in ("template.yaml", "step-functions.yaml"):
        (block,) = [b for b in blocks if b.startswith(f"# {name}")]
        (folder / name).write_text(block)
        files.append(folder / name)
    return files


def imported(tmp: Path, case: str) -> tuple[Path, dict[str, Any], str]:
    """Import a case into tmp/app: (the functions folder, the report file's content, the printed report)."""
    src = tmp / "src"
    app = tmp / "app"
    (app / "functions").mkdir(parents=True)
    if case == "seed":
        src.mkdir()
        templates = seed_templates(src)
        for name in SAGA_FUNCTIONS:
            shutil.copytree(ROOT / "functions" / name, app / "functions" / name)
    else:
        _need(CONFORMANCE / case)
        shutil.copytree(CONFORMANCE / case, src)
        templates = [src / "template.yaml"]
    _lay_code(templates[0])
    code, out, err = kfaas("import", "sam", *map(str, templates), "--functions", str(app / "functions"))
    assert code == 0, err
    report = yaml.safe_load((app / "sam-import-report.yaml").read_text())
    return app / "functions", report, out


def pairs(report: dict[str, Any], status: str) -> list[tuple[str, str]]:
    return sorted((i["resource"], i["what"]) for i in report[status])


def check_renders(functions: Path, tmp: Path, require_tool: Any, overlays: list[str]) -> dict[str, Any]:
    """Render compose, k8s and the chart from the imported descriptions and validate each; the k8s docs."""
    app = load_app(functions)
    root = tmp / "tree"
    shutil.copytree(ROOT / "k8s", root / "k8s")
    files = render(app, root, ["compose", "k8s"])
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    if not COMPOSE_SCHEMA.is_file():
        missing(str(COMPOSE_SCHEMA))
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert not [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(compose)]
    for fn in app.functions:
        assert fn.name in compose["services"]
    docs: dict[str, Any] = {}
    for overlay in overlays:
        built = build(root, overlay)
        for obj in built:
            validate(obj)
        docs[overlay] = built
    helm = require_tool("helm")
    values = tmp / "values.yaml"
    values.write_text(yaml.safe_dump({"functions": {fn.name: function_values(fn) for fn in app.functions}}))
    chart = ROOT / "charts" / "kfaas"
    lint = subprocess.run(
        [helm, "lint", "--strict", str(chart), "-f", str(values)], capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = subprocess.run(
        [helm, "template", "rel", str(chart), "--namespace", "kfaas-test", "-f", str(values)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    chart_docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    for obj in chart_docs:
        validate(obj)
    indexed = [i for fn in app.functions if fn.database for i in fn.database.indexes]
    users_js = "".join(d["data"].get("users.js", "") for d in chart_docs if d["kind"] == "ConfigMap")
    for i in indexed:
        assert f"target.getCollection({json.dumps(i.collection)}).createIndex(" in users_js
    services = {
        d["metadata"]["name"] for d in chart_docs if d["kind"] == "Service" and "serving" in d["apiVersion"]
    }
    assert {fn.name for fn in app.functions} <= services
    return docs


def test_the_seeds_template_imports_as_it_is_and_renders(tmp_path: Path, require_tool: Any) -> None:
    functions, report, out = imported(tmp_path, "seed")
    assert pairs(report, "unmapped") == []
    mapped = pairs(report, "mapped")
    for item in [
        ("GetUserFunction", "function"),
        ("CreateUserFunction", "function"),
        ("GetUserFunction", "Events (Api GET /users/{id})"),
        ("CreateUserFunction", "Events (Api POST /users)"),
        ("GetUserFunction", "Policies (DynamoDB)"),
        ("CreateUserFunction", "Policies (DynamoDB)"),
        ("UsersTable", "table"),
        ("OrderProcessingSaga", "state machine"),
    ]:
        assert item in mapped
    assert ("ApiGateway", "Cors") in pairs(report, "noted")
    assert "Not mapped (unmapped): 0" in out

    app = load_app(functions)
    get_user, create_user = app.get("get-user"), app.get("create-user")
    # Globals (Runtime, Timeout, MemorySize, Environment) applied by the translator; the table is a collection
    assert (get_user.runtime, get_user.handler, get_user.timeout, get_user.memory) == (
        "provided.al2023",
        "bootstrap",
        30,
        "256Mi",
    )
    assert get_user.env == {"TABLE_NAME": "users"} == create_user.env
    assert [(r.path, r.methods, r.api) for r in get_user.routes] == [("/users/{id}", ["GET"], "rest")]
    assert [(r.path, r.methods) for r in create_user.routes] == [("/users", ["POST"])]
    assert get_user.lambda_.stage == "prod"
    # the seed's least privilege: DynamoDBReadPolicy → read, DynamoDBCrudPolicy → readWrite, on users only
    assert get_user.database is not None
    assert create_user.database is not None
    assert (get_user.database.role, get_user.database.collections) == ("read", ["users"])
    assert (create_user.database.role, create_user.database.collections) == ("readWrite", ["users"])
    # the table's key schema: a unique index on users.id, created with the database users
    assert [(i.collection, i.keys) for i in get_user.database.indexes] == [("users", ["id"])]
    assert [(i.collection, i.keys) for i in create_user.database.indexes] == [("users", ["id"])]
    bootstrap = functions / "get-user" / "bootstrap"  # CodeUri's zip, extracted with its executable bit
    assert bootstrap.is_file()
    assert bootstrap.stat().st_mode & 0o111
    (machine,) = app.statemachines
    assert machine.name == "order-processing-saga"
    assert machine.functions == sorted(SAGA_FUNCTIONS)
    assert machine.asl["States"]["ReserveInventory"]["Resource"] == "fn:reserve-inventory"
    written = yaml.safe_load(
        (functions.parent / "statemachines" / machine.name / "step-functions.yaml").read_text()
    )
    assert written["OrderProcessingSaga"]["Properties"]["Definition"]["States"]["ProcessPayment"][
        "Resource"
    ] == {"Fn::GetAtt": ["ProcessPaymentFunction", "Arn"]}  # the definition as the seed writes it

    docs = check_renders(functions, tmp_path, require_tool, OVERLAYS)
    kind = docs["kind"]
    assert {"get-user", "create-user", "kfaas-saga"} <= set(by_kind(kind, "Service"))
    ksvc = by_kind(kind, "Service")["get-user"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in ksvc["containers"][0]["env"]}
    assert env["FUNCTION_SIGNATURE_TYPE"] == "lambda"
    assert "tasks" in {t["metadata"]["name"].rsplit("-", 1)[-1] for t in by_kind(kind, "Trigger").values()}
    (users_js,) = [
        d["data"]["mongodb-users.js"]
        for d in kind
        if d["kind"] == "ConfigMap" and "mongodb-users.js" in d.get("data", {})
    ]
    index = (
        'target.getCollection("users").createIndex({"id": 1}, '
        '{ unique: true, partialFilterExpression: {"id": {"$exists": true}} });'
    )
    assert users_js.count(index) == 1  # once, though two functions declare it
    compose = yaml.safe_load((tmp_path / "tree" / "docker-compose.yml").read_text())
    assert index.replace("$", "$$") in compose["configs"]["mongodb-users"]["content"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_public_application_imports_renders_and_reports(
    case: str, tmp_path: Path, require_tool: Any
) -> None:
    functions, report, out = imported(tmp_path, case)
    expected = CASES[case]
    mapped = pairs(report, "mapped")
    for item in expected["mapped"]:
        assert item in mapped, item
    assert sorted(set(pairs(report, "unmapped"))) == sorted(set(expected["unmapped"]))
    for item in report["unmapped"]:
        assert item["detail"], item  # every item says why
    assert f"Not mapped (unmapped): {len(report['unmapped'])}" in out
    check_renders(functions, tmp_path, require_tool, ["kind"])


def test_sqs_events_become_queue_sources_with_batching_and_redrive(tmp_path: Path) -> None:
    functions, _, _ = imported(tmp_path, "sqs-lambda-python-sam")
    fn = load_app(functions).get("processor")
    (source,) = fn.sources
    assert source.queue == "processing-queue"
    assert (source.batch_size, source.report_batch_item_failures) == (10, True)
    assert source.delivery.retry == 2  # maxReceiveCount 3: the first delivery and two more
    assert source.delivery.dead_letter is True
    assert (fn.timeout, fn.memory, fn.runtime) == (3, "128Mi", "python3.14")
    assert (functions / "processor" / "app.py").is_file()  # CodeUri src/ copied


def test_schedules_http_apis_and_inline_code(tmp_path: Path) -> None:
    functions, _, _ = imported(tmp_path / "a", "eventbridge-scheduled-lambda")
    (ping,) = load_app(functions).get("scheduled").sources
    assert ping.kind == "ping"
    assert ping.schedule == "* * * * *"  # rate(1 minute)
    functions, _, _ = imported(tmp_path / "b", "apigw-http-api-lambda-python")
    fn = load_app(functions).get("api")
    assert [(r.path, r.api) for r in fn.routes] == [("/", "http")]
    assert "Hello World! This is the HTTP API" in (functions / "api" / "index.py").read_text()


def test_rate_and_cron_expressions() -> None:
    from kfaas.aws.sam._mapping import rate_to_cron

    assert rate_to_cron("rate(5 minutes)") == "*/5 * * * *"
    assert rate_to_cron("rate(1 hour)") == "0 * * * *"
    assert rate_to_cron("rate(2 days)") == "0 0 */2 * *"
    assert rate_to_cron("cron(0 12 ? * MON-FRI *)") == "0 12 * * MON-FRI"
    assert rate_to_cron("cron(15 10 ? * 2 *)") == "15 10 * * 1"  # EventBridge's Monday is 2
    assert rate_to_cron("cron(0 12 * * ? 2027)") is None  # a year cannot be kept
    assert rate_to_cron("cron(0 12 L * ? *)") is None


def test_strict_fails_on_unmapped_items_and_writes_nothing(tmp_path: Path) -> None:
    _need(CONFORMANCE)
    functions = tmp_path / "functions"
    code, out, err = kfaas(
        "import",
        "sam",
        str(CONFORMANCE / "s3-lambda-resizing-python" / "template.yaml"),
        "--functions",
        str(functions),
        "--strict",
    )
    assert code == 1
    assert "--strict: 6 item(s) not mapped" in err
    assert "Layers" in out
    assert not functions.exists()
    assert not (tmp_path / "sam-import-report.yaml").exists()
    code, _, err = kfaas(
        "import",
        "sam",
        str(CONFORMANCE / "apigw-rest-api-lambda-python" / "template.yaml"),
        "--functions",
        str(functions),
        "--strict",
    )
    assert code == 0, err  # nothing unmapped: strict passes


def test_bad_templates_get_clear_errors(tmp_path: Path) -> None:
    functions = str(tmp_path / "functions")
    code, _, err = kfaas("import", "sam", str(tmp_path / "nope.yaml"), "--functions", functions)
    assert (code, err) == (2, f"kfaas import sam: {tmp_path / 'nope.yaml'}: no such file\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("Resources:\n  A: [unclosed\n")
    code, _, err = kfaas("import", "sam", str(bad), "--functions", functions)
    assert code == 2
    assert "not valid YAML or JSON" in err
    bad.write_text("AWSTemplateFormatVersion: '2010-09-09'\n")
    code, _, err = kfaas("import", "sam", str(bad), "--functions", functions)
    assert code == 2
    assert "no Resources" in err
    bad.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n      Handler: app.handler\n      Runtime: python3.12\n      InlineCode: x\n"
        "      Events:\n        Get: {Type: Api, Properties: {Method: GET}}\n"
    )
    code, _, err = kfaas("import", "sam", str(bad), "--functions", functions)
    assert code == 2
    assert "not a valid SAM template" in err
    assert "Path" in err
    code, _, err = kfaas(
        "import",
        "sam",
        str(CONFORMANCE / "sqs-lambda-python-sam" / "template.yaml"),
        "--functions",
        functions,
        "--parameter",
        "Nope=1",
    )
    assert code == 2
    assert "not a parameter of the template" in err
    assert not Path(functions).exists()


def test_existing_folders_are_not_overwritten_without_force(tmp_path: Path) -> None:
    _need(CONFORMANCE)
    template = str(CONFORMANCE / "apigw-http-api-lambda-python" / "template.yaml")
    functions = tmp_path / "functions"
    assert kfaas("import", "sam", template, "--functions", str(functions))[0] == 0
    code, _, err = kfaas("import", "sam", template, "--functions", str(functions))
    assert code == 2
    assert "already there (pass --force" in err
    assert kfaas("import", "sam", template, "--functions", str(functions), "--force")[0] == 0


def test_parameters_fill_in_values(tmp_path: Path) -> None:
    _need(CONFORMANCE)
    functions = tmp_path / "functions"
    code, _, err = kfaas(
        "import",
        "sam",
        str(CONFORMANCE / "lambda-s3-async-lambda" / "template.yaml"),
        "--functions",
        str(functions),
        "--parameter",
        "PayloadBucketName=payloads",
    )
    assert code == 0, err
    env = yaml.safe_load((functions / "send-payload" / "function.yaml").read_text())["env"]
    assert env == {
        "PayloadBucketName": "payloads",
        "PayloadPrefix": "MyPayload_",
        "AsyncLambdaFunctionName": "MyAsynchronousFunction",
    }


def test_an_index_names_one_of_the_collections() -> None:
    from pydantic import ValidationError

    from kfaas.spec import DatabaseAccess

    access = DatabaseAccess.model_validate(
        {"collections": ["users"], "indexes": [{"collection": "users", "keys": ["id"]}]}
    )
    assert access.indexes[0].keys == ["id"]
    with pytest.raises(ValidationError, match="indexes on orders: not among the collections"):
        DatabaseAccess.model_validate(
            {"collections": ["users"], "indexes": [{"collection": "orders", "keys": ["id"]}]}
        )


def test_concurrency_async_settings_rules_and_images(tmp_path: Path, require_tool: Any) -> None:
    src = tmp_path / "src"
    shutil.copytree(Path(__file__).parent / "fixtures" / "sam" / "features", src)
    functions = tmp_path / "app" / "functions"
    code, out, err = kfaas("import", "sam", str(src / "template.yaml"), "--functions", str(functions))
    assert code == 0, err
    assert "Not mapped (unmapped): 0" in out
    app = load_app(functions)
    fn = app.get("my")
    assert (fn.scaling.min, fn.scaling.max) == (
        10,
        20,
    )  # ProvisionedConcurrencyConfig, ReservedConcurrentExecutions
    assert (functions / "my" / "app.py").is_file()  # Globals' CodeUri
    triggers = {t.name: t for t in fn.triggers}
    assert triggers["orders"].filter == {"source": "shop", "type": "OrderPlaced"}
    assert triggers["orders"].delivery.retry == 1  # EventInvokeConfig.MaximumRetryAttempts
    assert triggers["nightly"].delivery.retry == 1
    (ping,) = fn.sources
    assert (ping.schedule, ping.timezone) == ("0 2 * * *", "Europe/Paris")
    assert fn.lambda_.reply is not None
    assert fn.lambda_.reply.type == "Lambda Function Invocation Result - Success"
    assert fn.publishes is False  # the destination's PutEvents is kfaas's reply, not the handler's
    assert [(r.path, r.methods, r.api) for r in fn.routes] == [("/items/{id}", ["GET"], "http")]
    image = app.get("image")
    assert image.image == "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"
    assert image.routes[0].methods == ["GET", "POST", "PUT", "PATCH", "DELETE"]  # ANY
    assert image.lambda_.stage == "Prod"  # the implicit API's stage
    check_renders(functions, tmp_path, require_tool, ["kind"])
