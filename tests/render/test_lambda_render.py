"""Lambda functions in k8s/, docker-compose.yml and the chart: validated like every other function.

The app rendered is the render fixtures plus tests/render/fixtures/lambda/: a Python handler fed by an SQS
queue with batching (its own image, ``containerConcurrency`` left alone: it runs in kfaas's process) and an
existing Lambda container image behind an HTTP API route (a Knative multi-container Service: kfaas's
container serves the port and the Runtime API, the image runs unchanged beside it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import netpol
import pytest
import yaml
from _render_support import COMPOSE_SCHEMA, FIXTURE_FUNCTIONS, ROOT, missing
from test_k8s import OVERLAYS, build, by_kind, validate

from kfaas.render import render
from kfaas.render.chart import function_values
from kfaas.render.compose import render_compose
from kfaas.spec import FunctionSpec, load_app

LAMBDA_FIXTURES = Path(__file__).parent / "fixtures" / "lambda"
IMAGE = "registry.example.com/shop/get-price:1.4.0"


@pytest.fixture(scope="module")
def functions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lambda-app") / "functions"
    shutil.copytree(FIXTURE_FUNCTIONS, folder)
    for fixture in LAMBDA_FIXTURES.iterdir():
        shutil.copytree(fixture, folder / fixture.name)
    return folder


@pytest.fixture(scope="module")
def tree(functions: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lambda-tree")
    shutil.copytree(ROOT / "k8s", root / "k8s")
    for rel, content in render(load_app(functions), root, ["k8s"]).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    return root


def _ksvc(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    services = {
        n: d for n, d in by_kind(docs, "Service").items() if d["apiVersion"].startswith("serving.knative")
    }
    return services[name]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_and_every_pod_is_restricted(tree: Path, overlay: str) -> None:
    docs = build(tree, overlay)
    for obj in docs:
        validate(obj)
    for pod in netpol.pods(docs):
        for c in pod.spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, pod.name
            assert sc["readOnlyRootFilesystem"] is True, pod.name
            assert sc["allowPrivilegeEscalation"] is False, pod.name
            assert sc["capabilities"]["drop"] == ["ALL"], pod.name
            assert {"cpu", "memory"} <= set(c["resources"]["requests"])
            assert "memory" in c["resources"]["limits"]
        netpol.check_uid_and_probes(pod, netpol.IMAGE_USERS.get(pod.name))
    # Knative's multi-container rule: exactly one container of a Service takes traffic (has a port)
    for name, ksvc in by_kind(docs, "Service").items():
        if ksvc["apiVersion"].startswith("serving.knative"):
            containers = ksvc["spec"]["template"]["spec"]["containers"]
            assert len([c for c in containers if c.get("ports")]) == 1, name
            assert len({c["name"] for c in containers}) == len(containers), name


def test_a_lambda_image_runs_unchanged_beside_kfaas(tree: Path) -> None:
    spec = _ksvc(build(tree, "kind"), "lambda-image")["spec"]["template"]["spec"]
    kfaas, function = spec["containers"]
    assert kfaas["name"] == "kfaas"
    assert kfaas["image"] == "kfaas/platform:0.1.0"
    assert kfaas["args"] == ["serve"]
    assert kfaas["ports"] == [{"name": "http1", "containerPort": 8080}]
    kfaas_env = {e["name"]: e.get("value") for e in kfaas["env"]}
    assert kfaas_env["FUNCTION_SIGNATURE_TYPE"] == "lambda"
    assert (
        kfaas_env["KFAAS_DESCRIPTION"] == "/app/functions/lambda-image/function.yaml"
    )  # in the platform image
    assert "MONGODB_URL" not in kfaas_env  # the handler's credentials are the image's, not kfaas's
    assert function["image"] == IMAGE
    assert "ports" not in function
    assert function["args"] == ["app.handler"]  # SAM's ImageConfig.Command
    env = {e["name"]: e for e in function["env"]}
    assert env["AWS_LAMBDA_RUNTIME_API"]["value"] == "127.0.0.1:9001"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]["value"] == "512"
    assert env["MONGODB_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kfaas-lambda-image-mongodb"
    assert function["resources"]["limits"]["memory"] == "512Mi"
    assert spec["containerConcurrency"] == 1  # one runtime client: one invocation at a time


def test_a_python_handler_is_a_function_image_with_its_batching_trigger(tree: Path) -> None:
    docs = build(tree, "kind")
    spec = _ksvc(docs, "lambda-orders")["spec"]["template"]["spec"]
    assert "containerConcurrency" not in spec  # in kfaas's process: no runtime client limits it
    (container,) = spec["containers"]
    assert container["image"] == "kfaas/lambda-orders:0.1.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FUNCTION_SIGNATURE_TYPE"] == "lambda"
    trigger = by_kind(docs, "Trigger")["lambda-orders-jobs"]
    assert trigger["spec"]["filter"] == {"attributes": {"type": "dev.knative.rabbitmq.event"}}
    # a batch of 10 is made of deliveries in flight together
    assert trigger["metadata"]["annotations"]["rabbitmq.eventing.knative.dev/parallelism"] == "10"
    assert "lambda-orders-jobs" in by_kind(docs, "RabbitmqSource")


def test_compose(functions: Path) -> None:
    compose = yaml.safe_load(render_compose(load_app(functions))["docker-compose.yml"])
    if not COMPOSE_SCHEMA.is_file():
        missing(str(COMPOSE_SCHEMA))
    errors = [
        e.message
        for e in jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text())).iter_errors(compose)
    ]
    assert not errors
    services = compose["services"]
    kfaas, runtime = services["lambda-image"], services["lambda-image-runtime"]
    assert kfaas["image"] == "kfaas/platform:0.1.0"
    assert kfaas["command"] == ["serve"]
    assert kfaas["environment"]["KFAAS_DESCRIPTION"] == "/app/functions/lambda-image/function.yaml"
    assert "healthcheck" in kfaas
    assert runtime["image"] == IMAGE
    assert runtime["network_mode"] == "service:lambda-image"
    assert runtime["environment"]["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:9001"
    assert runtime["environment"]["AWS_LAMBDA_FUNCTION_VERSION"] == "$$LATEST"  # compose reads $$ as $
    assert runtime["read_only"] is True
    assert runtime["user"] == "10001:10001"
    assert services["gateway"]["depends_on"]["lambda-image"] == {"condition": "service_healthy"}
    assert services["lambda-orders"]["environment"]["FUNCTION_SIGNATURE_TYPE"] == "lambda"
    # the AWS API endpoints, and the handlers' SDKs pointed at them with the same access key
    aws = services["aws"]
    assert aws["command"] == ["aws-endpoints"]
    assert aws["environment"]["KFAAS_BROKER_URL"] == "http://broker:8080/default"
    assert aws["environment"]["KFAAS_AWS_ACCESS_KEY_ID"].startswith("${KFAAS_AWS_ACCESS_KEY_ID:?")
    for name in ("lambda-orders", "lambda-image-runtime"):
        env = services[name]["environment"]
        for sdk in ("EVENTBRIDGE", "SQS", "SES", "SESV2"):
            assert env[f"AWS_ENDPOINT_URL_{sdk}"] == "http://aws:8080", name
        assert env["AWS_ACCESS_KEY_ID"] == aws["environment"]["KFAAS_AWS_ACCESS_KEY_ID"]
        assert env["AWS_SECRET_ACCESS_KEY"] == aws["environment"]["KFAAS_AWS_SECRET_ACCESS_KEY"]
        assert services[name]["depends_on"]["aws"] == {"condition": "service_healthy"}


def test_chart_values_and_templates(functions: Path, tmp_path: Path, require_tool: Any) -> None:
    import kubernetes_validate

    helm = require_tool("helm")
    app = load_app(functions)
    values = {"functions": {fn.name: function_values(fn) for fn in app.functions}}
    for fn in values["functions"].values():  # the values still read as descriptions (less the chart's own)
        FunctionSpec.model_validate(
            {k: v for k, v in fn.items() if k not in ("image", "lambdaImage", "containerConcurrency")}
            | ({"image": fn["lambdaImage"]} if "lambdaImage" in fn else {})
        )
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    chart = ROOT / "charts" / "kfaas"
    lint = subprocess.run(
        [helm, "lint", "--strict", str(chart), "-f", str(file)], capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    out = subprocess.run(
        [helm, "template", "rel", str(chart), "--namespace", "kfaas-test", "-f", str(file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    version = kubernetes_validate.utils.latest_version()
    for obj in docs:
        if obj["apiVersion"].rpartition("/")[0].endswith(("knative.dev", "rabbitmq.com")):
            validate(obj)
        else:
            kubernetes_validate.validate(obj, version, strict=True)
    image = next(
        d
        for d in docs
        if d["kind"] == "Service" and d["metadata"]["name"] == "lambda-image" and "serving" in d["apiVersion"]
    )
    spec = image["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["kfaas", "function"]
    assert [bool(c.get("ports")) for c in spec["containers"]] == [True, False]
    assert spec["containers"][1]["image"] == IMAGE
    assert spec["containerConcurrency"] == 1
    env = {e["name"]: e for e in spec["containers"][1]["env"]}
    assert env["AWS_LAMBDA_RUNTIME_API"]["value"] == "127.0.0.1:9001"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]["value"] == "512"
    assert env["MONGODB_URL"]["valueFrom"]["secretKeyRef"]["name"] == "rel-lambda-image-mongodb"
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "lambda-image-env")
    assert config["data"]["KFAAS_DESCRIPTION"] == "/app/functions/lambda-image/function.yaml"
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
    # the AWS API endpoints run (a function is kind lambda) and the handlers' SDKs are pointed at them
    aws = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "rel-kfaas-aws")
    container = aws["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "aws-endpoints"
    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "rel-kfaas-aws")
    assert set(secret["stringData"]) == {"KFAAS_AWS_ACCESS_KEY_ID", "KFAAS_AWS_SECRET_ACCESS_KEY"}
    assert len(secret["stringData"]["KFAAS_AWS_SECRET_ACCESS_KEY"]) >= 24
    orders = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "lambda-orders-env"
    )
    assert orders["data"]["AWS_ENDPOINT_URL_SQS"] == "http://rel-kfaas-aws.kfaas-test.svc.cluster.local"
    assert orders["data"]["AWS_ENDPOINT_URL_EVENTBRIDGE"] == orders["data"]["AWS_ENDPOINT_URL_SES"]
    keys = {e["name"]: e for e in spec["containers"][1]["env"]}
    assert keys["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "rel-kfaas-aws"
    binding = next(
        d for d in docs if d["kind"] == "SinkBinding" and d["metadata"]["name"] == "rel-kfaas-aws-sink"
    )
    assert binding["spec"]["subject"]["name"] == "rel-kfaas-aws"


def test_the_aws_endpoints_serve_the_lambda_handlers_sdks(tree: Path) -> None:
    docs = build(tree, "kind")
    aws = _ksvc(docs, "kfaas-aws")
    container = aws["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["aws-endpoints"]
    assert container["image"] == "kfaas/platform:0.1.0"
    env = {e["name"]: e for e in container["env"]}
    for key in ("KFAAS_AWS_ACCESS_KEY_ID", "KFAAS_AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "kfaas-aws", "key": key}
    assert env["AMQP_URL"]["valueFrom"]["secretKeyRef"]["name"] == "kfaas-rabbitmq"
    labels = aws["spec"]["template"]["metadata"]["labels"]
    assert labels["kfaas.dev/rabbitmq"] == "client"
    assert labels["kfaas.dev/smtp"] == "client"
    assert labels["kfaas.dev/broker"] == "client"
    binding = by_kind(docs, "SinkBinding")["kfaas-aws-sink"]
    assert binding["spec"]["subject"]["name"] == "kfaas-aws"
    secret = by_kind(docs, "Secret")["kfaas-aws"]
    assert set(secret.get("data") or secret.get("stringData") or {}) == {
        "KFAAS_AWS_ACCESS_KEY_ID",
        "KFAAS_AWS_SECRET_ACCESS_KEY",
    }
    url = "http://kfaas-aws.kfaas.svc.cluster.local"
    python = _ksvc(docs, "lambda-orders")["spec"]["template"]["spec"]["containers"][0]
    image = _ksvc(docs, "lambda-image")["spec"]["template"]["spec"]["containers"][1]
    for container in (python, image):
        env = {e["name"]: e for e in container["env"]}
        for sdk in ("EVENTBRIDGE", "SQS", "SES", "SESV2"):
            assert env[f"AWS_ENDPOINT_URL_{sdk}"]["value"] == url
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
            "name": "kfaas-aws",
            "key": "KFAAS_AWS_ACCESS_KEY_ID",
        }
        assert env["AWS_REGION"]["value"]
    policy = by_kind(docs, "NetworkPolicy")["knative-services"]
    selected = policy["spec"]["podSelector"]["matchExpressions"][0]["values"]
    assert "kfaas-aws" in selected
